"""Run outputs: JSONL metrics, TensorBoard, the learning-curve plot, and the file writes they
share (atomic, with errors that name the file and the cause).

Checkpoints are in :mod:`reasonenv.agents.checkpoints`.
"""

from __future__ import annotations

import errno as errno_codes
import json
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


class RunWriteError(OSError):
    """A run file could not be written; ``str()`` is one line naming the file and the cause.

    Example:
        >>> str(RunWriteError("runs/x/metrics.jsonl", OSError(28, "No space left on device")))
        'cannot write runs/x/metrics.jsonl: No space left on device (errno 28 ENOSPC)'
    """

    def __init__(self, path: str | Path, cause: OSError, note: str = "") -> None:
        code = cause.errno
        name = errno_codes.errorcode.get(code, "") if code is not None else ""
        why = cause.strerror or str(cause) or type(cause).__name__
        tag = f" (errno {code} {name})" if code is not None else ""
        super().__init__(code, f"cannot write {path}: {why}{tag}{note}")
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.args[1])


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: str | Path, chunks: Iterable[bytes | memoryview], *, note: str = "") -> Path:
    """Write ``chunks`` to ``path`` through a temporary file and a rename: readers see the old
    file or the complete new one, never a part (also after a crash or kill -9).

    Raises:
        RunWriteError: the folder or file cannot be written (disk full, permissions, ...); the
            temporary file is removed and an existing ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = -1
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for chunk in chunks:
            _write_all(fd, chunk)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except OSError as e:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise RunWriteError(path, e, note) from e
    try:  # make the rename itself durable; not every filesystem lets a folder be fsynced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def append_line(path: str | Path, line: str) -> None:
    """Append one line (a newline is added) to ``path``.

    Raises:
        RunWriteError: naming the file and the cause.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _write_all(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise RunWriteError(path, e) from e


class RunLogger:
    """Writes one JSON line per update to ``out_dir/metrics.jsonl`` (and TensorBoard scalars).

    Args:
        out_dir: The run folder.
        tensorboard: Also write ``out_dir/tensorboard`` event files.
        append: Keep existing lines (resume) up to ``start_step`` and append after them.
        start_step: The step the run resumes from: lines of later steps (logged after that
            checkpoint by an interrupted run) are dropped.
    """

    def __init__(self, out_dir: str | Path, *, tensorboard: bool = True, append: bool = False,
                 start_step: int = 0) -> None:
        self.dir = Path(out_dir)
        self.path = self.dir / "metrics.jsonl"
        kept: list[str] = []
        if append and self.path.exists():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    step = json.loads(line).get("step", -1)
                except ValueError:  # a line cut short by a kill during its write
                    warnings.warn(f"{self.path}: line {n} is not JSON (an interrupted write); "
                                  "dropped", RuntimeWarning, stacklevel=2)
                    continue
                if step <= start_step:
                    kept.append(line)
        write_atomic(self.path, ["".join(line + "\n" for line in kept).encode()])
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.dir / "tensorboard"), purge_step=start_step + 1)
            except ImportError:  # tensorboard not installed: JSONL only
                self._tb = None

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        row = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        append_line(self.path, json.dumps(row))
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _plain(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return v.item()
    return v


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl``."""
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def plot_curves(metrics_path: str | Path, out_png: str | Path,
                keys: tuple[str, ...] = ("accuracy", "reward", "loss", "kl", "entropy", "clip_frac")) -> Path:
    """Plot the learning curves of a run (one panel per metric present) to ``out_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    present = [k for k in keys if any(k in r for r in rows)]
    term_keys = sorted({k for r in rows for k in r if k.startswith("term/")})
    panels = present + term_keys
    n = max(1, len(panels))
    cols = 3
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4 * cols, 3 * ((n + cols - 1) // cols)),
                             squeeze=False)
    for ax, key in zip(axes.flat, panels):
        xs = [r["step"] for r in rows if key in r]
        ys = [r[key] for r in rows if key in r]
        ax.plot(xs, ys, marker="o", markersize=3)
        ax.set_title(key)
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    out = Path(out_png)
    try:
        fig.savefig(out, dpi=100)
    except OSError as e:
        raise RunWriteError(out, e) from e
    finally:
        plt.close(fig)
    return out
