"""Resumable checkpoints that never unpickle: one safetensors file per saved step.

``checkpoints/step_N.safetensors`` holds every tensor of the trainer's state (model weights,
optimiser moments, RNG byte states) as safetensors entries named by where they sit
(``model/lm_head.weight``, ``optimizer/state/0/exp_avg``, ``rng/torch``), and everything else
(step, scheduler, data-order and Python/numpy RNG states, the config) as JSON in the header's
metadata under ``"state"``. Loading runs the safetensors parser and ``json.loads`` only, so a
crafted file can fail to load but cannot run code. Files are written atomically (a temporary
file, fsync, rename); safetensors checks that the header covers the file exactly, so a truncated,
empty or garbage file is refused and resume falls back to the newest readable one.

Example:
    >>> import torch, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "checkpoints" / "step_3.safetensors"
    >>> _ = save_checkpoint(path, {"step": 3, "w": torch.ones(2), "betas": (0.9, 0.99)})
    >>> load_checkpoint(path)
    {'step': 3, 'w': tensor([1., 1.]), 'betas': (0.9, 0.99)}
"""

from __future__ import annotations

import json
import random
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from reasonenv.agents.runlog import write_atomic

FORMAT = "reasonenv-checkpoint-v1"
SUFFIX = ".safetensors"
_NAME = re.compile(r"^step_(\d+)\.safetensors$")
# safetensors dtype codes (the format's spec)
_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
           "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
           "bool": "BOOL", "uint16": "U16", "uint32": "U32", "uint64": "U64"}


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the file and the cause."""


class CheckpointWarning(UserWarning):
    """A checkpoint file was skipped (unreadable, or not named ``step_<N>.safetensors``)."""


def checkpoint_path(out_dir: str | Path, step: int) -> Path:
    """Where the checkpoint of ``step`` goes: ``out_dir/checkpoints/step_<step>.safetensors``."""
    return Path(out_dir, "checkpoints", f"step_{step}{SUFFIX}")


# ------------------------------------------------------------------ encoding
class _Encoder:
    """Splits a nested state into tensors (stored once each) and a JSON skeleton."""

    def __init__(self) -> None:
        self.tensors: dict[str, Any] = {}
        self._seen: dict[tuple[Any, ...], str] = {}

    def tensor(self, t: Any, where: str) -> dict[str, str]:
        if str(t.dtype).removeprefix("torch.") not in _DTYPES:
            raise TypeError(f"checkpoint entry {where}: dtype {t.dtype} cannot be stored")
        # Tied weights (lm_head = embed_tokens) share storage: store them once, point twice.
        ident = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
                 t.stride(), t.dtype)
        if t.numel() and ident in self._seen:
            return {"__tensor__": self._seen[ident]}
        key = where if where not in self.tensors else f"{where}#{len(self.tensors)}"
        self.tensors[key] = t.detach().cpu().contiguous()
        self._seen[ident] = key
        return {"__tensor__": key}

    def encode(self, x: Any, where: str) -> Any:
        import torch

        if isinstance(x, torch.Tensor):
            return self.tensor(x, where)
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, np.ndarray):
            return {"__ndarray__": x.tolist(), "dtype": x.dtype.str, "shape": list(x.shape)}
        if isinstance(x, np.generic):
            return {"__npscalar__": x.item(), "dtype": x.dtype.str}
        if isinstance(x, tuple):
            return {"__tuple__": [self.encode(v, f"{where}/{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [self.encode(v, f"{where}/{i}") for i, v in enumerate(x)]
        if isinstance(x, dict):
            items = [(k, self.encode(v, f"{where}/{k}" if where else str(k))) for k, v in x.items()]
            if all(isinstance(k, str) and not k.startswith("__") for k, _ in items):
                return dict(items)
            return {"__items__": [[self.encode(k, where), v] for k, v in items]}
        raise TypeError(f"checkpoint entry {where or 'state'}: a {type(x).__name__} cannot be "
                        "stored (tensors, arrays, numbers, strings, lists, tuples and dicts can)")


def _decode(x: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(x, list):
        return [_decode(v, tensors) for v in x]
    if not isinstance(x, dict):
        return x
    if "__tensor__" in x:
        return tensors[x["__tensor__"]]
    if "__ndarray__" in x:
        return np.array(x["__ndarray__"], dtype=np.dtype(x["dtype"])).reshape(x["shape"])
    if "__npscalar__" in x:
        return np.dtype(x["dtype"]).type(x["__npscalar__"])
    if "__tuple__" in x:
        return tuple(_decode(v, tensors) for v in x["__tuple__"])
    if "__items__" in x:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in x["__items__"]}
    return {k: _decode(v, tensors) for k, v in x.items()}


def _safetensors_chunks(tensors: dict[str, Any], metadata: dict[str, str]) -> Iterator[bytes | memoryview]:
    """The bytes of a safetensors file, streamed tensor by tensor (no copy of the whole state)."""
    import torch

    # Widest dtypes first keeps every tensor aligned to its element size, as safetensors does.
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for k in order:
        t = tensors[k]
        size = t.numel() * t.element_size()
        header[k] = {"dtype": _DTYPES[str(t.dtype).removeprefix("torch.")], "shape": list(t.shape),
                     "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    yield len(raw).to_bytes(8, "little") + raw
    for k in order:
        t = tensors[k].reshape(-1)
        if t.numel():
            yield memoryview(t.view(torch.uint8).numpy())


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (nested dicts/lists/tuples of tensors, arrays and plain values).

    Raises:
        TypeError: a value of another type (nothing is pickled).
        RunWriteError: the file cannot be written (disk full, permissions); earlier
            checkpoints are left as they were.
    """
    enc = _Encoder()
    skeleton = enc.encode(state, "")
    metadata = {"format": FORMAT, "state": json.dumps(skeleton)}
    return write_atomic(path, _safetensors_chunks(enc.tensors, metadata),
                        note="; earlier checkpoints are kept")


def _open_error(path: Path, e: Exception) -> CheckpointError:
    cause = " ".join(str(e).split()) or type(e).__name__
    return CheckpointError(f"checkpoint {path} is unreadable: {cause}")


def load_checkpoint_header(path: str | Path) -> Any:
    """The JSON part of a checkpoint (tensors are not read); safetensors checks on opening that
    the header covers the file exactly, so truncated files fail here too.

    Raises:
        CheckpointError: as :func:`load_checkpoint`.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"checkpoint {path}: not a {FORMAT} file (format {meta.get('format')!r})")
        return json.loads(meta["state"])
    except CheckpointError:
        raise
    except Exception as e:  # safetensors' parser, JSON, a missing entry: all "unreadable"
        raise _open_error(path, e) from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (never unpickles).

    Raises:
        CheckpointError: the file is missing, truncated, empty, not a safetensors file, or not
            a reasonenv checkpoint; the message names the file and the cause.
    """
    from safetensors import safe_open

    path = Path(path)
    skeleton = load_checkpoint_header(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        state = _decode(skeleton, tensors)
    except Exception as e:
        raise _open_error(path, e) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: its state is a {type(state).__name__}, not a dict")
    return state


def list_checkpoints(out_dir: str | Path, *, warn: bool = True) -> list[Path]:
    """The ``step_<N>.safetensors`` files of a run, newest (largest N) first.

    Anything else in ``checkpoints/`` (``step_x.pt``, an interrupted save's ``.tmp``, pickles of
    older versions) is ignored, with a :class:`CheckpointWarning` when ``warn``.
    """
    folder = Path(out_dir, "checkpoints")
    if not folder.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    for p in sorted(folder.iterdir()):
        m = _NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
        elif warn:
            why = ("an interrupted save" if p.name.endswith(".tmp") else
                   "a pickle checkpoint; not loaded, as unpickling can run code" if p.suffix == ".pt"
                   else "not named step_<N>.safetensors")
            warnings.warn(f"ignoring {p}: {why}", CheckpointWarning, stacklevel=2)
    return [p for _, p in sorted(found, key=lambda x: x[0], reverse=True)]


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest ``checkpoints/step_<N>.safetensors`` of a run, if any (not opened)."""
    ckpts = list_checkpoints(out_dir, warn=False)
    return ckpts[0] if ckpts else None


def load_latest(out_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint of a run and its state; None when there is none at all.

    An unreadable file is skipped with a :class:`CheckpointWarning` naming it and the cause, and
    the next older one is tried.

    Raises:
        CheckpointError: checkpoints exist but none is readable (starting over would overwrite
            the run's metrics, so the caller must decide).
    """
    ckpts = list_checkpoints(out_dir)
    failures = []
    for p in ckpts:
        try:
            return p, load_checkpoint(p)
        except CheckpointError as e:
            failures.append(str(e))
            warnings.warn(f"{e}; trying the previous checkpoint", CheckpointWarning, stacklevel=2)
    if failures:
        raise CheckpointError(f"no readable checkpoint in {Path(out_dir, 'checkpoints')} "
                              f"({len(failures)} unreadable, newest: {ckpts[0].name}); move them "
                              "away or set run.resume=false")
    return None


# ------------------------------------------------------------------ RNG states
def capture_rng() -> dict[str, Any]:
    """The global RNG states (python, numpy's legacy global, torch CPU)."""
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng` captured."""
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
