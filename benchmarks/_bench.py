"""Shared helpers of the benchmarks: interleaved rounds, medians with min-max, model loading."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class NoEosTokenizer:
    """The tokenizer without an EOS token: the policy never stops a row on EOS, so every response
    runs to its token budget (``env.max_tokens``, or the benchmark's row length)."""

    eos_token_id = None
    eos_token = None

    def __init__(self, tok: Any) -> None:
        self._tok = tok

    def __getattr__(self, name: str) -> Any:
        if name == "_tok":  # not set yet (copy / pickle make the object without __init__)
            raise AttributeError(name)
        return getattr(self._tok, name)

    def __call__(self, *a: Any, **kw: Any) -> Any:
        return self._tok(*a, **kw)

    def __len__(self) -> int:
        return len(self._tok)


def interleave(contenders: dict[str, Callable[[], dict[str, float]]], rounds: int,
               warmup: bool = True) -> dict[str, list[dict[str, float]]]:
    """Run each contender once per round, the order reversed every other round (A B C, C B A).

    A contender returns a dict of measurements; ``wall`` and ``cpu`` (this process's CPU
    seconds) are added around the call. One warm-up call each is run first and dropped.
    """
    names = list(contenders)
    if warmup:
        for name in names:
            contenders[name]()
    out: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            out[name].append(measure(contenders[name], f"round {r + 1} {name}"))
    return out


def measure(fn: Callable[[], dict[str, float]], label: str) -> dict[str, float]:
    """``fn()``'s measurements plus its ``wall`` and ``cpu`` seconds (printed under ``label``)."""
    c0, t0 = time.process_time(), time.perf_counter()
    res = fn()
    res = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, **res}
    print(f"  {label}: " + ", ".join(f"{k}={v:.4g}" for k, v in res.items()), flush=True)
    return res


def med(xs: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``median (min-max)`` of ``xs``."""
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def paired(a: Sequence[float], b: Sequence[float], fmt: str = "{:.3f}") -> str:
    """``median (min-max)`` of the per-round ratios ``a[i] / b[i]``."""
    return med([x / y for x, y in zip(a, b)], fmt)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_note() -> str:
    """Architecture, cores, load average: what the reader needs to read the numbers."""
    load = os.getloadavg()
    return (f"{platform.machine()}, {os.cpu_count()} cores, one torch thread per process, shared "
            f"with other heavy jobs (load average {load[0]:.1f} at the end): read the ratios, "
            "measured side by side, not the absolute figures")


def load_lm(name: str, seed: int = 0) -> tuple[Any, Any, str]:
    """(model, tokenizer, label) of ``name``: a folder, a packaged model name, or ``random-tiny``
    (the testbed's shape, configs/tiny/sft.yaml, randomly initialised in-process)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == "random-tiny":
        from reasonenv.agents.sft import build_model, load_sft_config
        from reasonenv.tokenizers import char_tokenizer

        tok = char_tokenizer()
        cfg = load_sft_config(ROOT / "configs" / "tiny" / "sft.yaml")
        return build_model(cfg.model, tok, seed).eval(), tok, "tiny char Llama (random init)"
    from reasonenv.models.assets import resolve_model

    path = resolve_model(name)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    n = sum(p.numel() for p in model.parameters())
    return model, tok, f"{name} ({n / 1e6:.2f}M params)"
