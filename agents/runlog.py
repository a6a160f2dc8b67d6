"""Run outputs: JSONL metrics, TensorBoard, the learning-curve plot, resumable checkpoints."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np


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
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "metrics.jsonl"
        kept: list[str] = []
        if append and self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip() and json.loads(line).get("step", -1) <= start_step:
                    kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept))
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.dir / "tensorboard"), purge_step=start_step + 1)
            except ImportError:  # tensorboard not installed: JSONL only
                self._tb = None

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        row = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
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
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def capture_rng() -> dict[str, Any]:
    """The global RNG states (python, numpy's legacy global, torch CPU)."""
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write a checkpoint (``torch.save`` of plain state dicts and RNG states)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest ``checkpoints/step_*.pt`` of a run, if any."""
    ckpts = sorted(Path(out_dir, "checkpoints").glob("step_*.pt"),
                   key=lambda p: int(p.stem.split("_")[1]))
    return ckpts[-1] if ckpts else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)
