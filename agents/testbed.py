"""The tiny CPU testbed end to end: SFT (cached), RL with a process reward, held-out eval before
and after. ``make demo`` runs it (``reasonenv testbed``); docs/learning.md has the study behind
its defaults.

* :func:`heldout_eval` evaluates a model through ``MathSteps-v0`` on a fixed held-out set of the
  testbed task (seed 0 = test, 1 = validation; SFT removed both from its data) and returns the
  per-problem success counts: what the learning study and the demo compare.
* :func:`run_testbed` prepares the SFT checkpoint, evaluates it, trains it with a trainer
  config for some updates, evaluates again and reports the paired held-out improvement with a
  bootstrap interval over problems.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HELDOUT = {"test": 0, "validation": 1}
EVAL_SPLIT = "\n\n"


def task_of(cfg: Any) -> str:
    """The trainer config's problem spec without a seed (the held-out seed is added to it)."""
    spec = str(cfg.env.problems)
    base, _, query = spec.partition("?")
    keep = [kv for kv in query.split("&") if kv and not kv.startswith("seed=")]
    return base + ("?" + "&".join(keep) if keep else "")


def heldout_spec(cfg: Any, split: str = "test") -> str:
    """The problem spec of a held-out set: the task with seed 0 (test) or 1 (validation).

    Example:
        >>> from types import SimpleNamespace as NS
        >>> heldout_spec(NS(env=NS(problems="procedural:chained_sums?difficulty=2&seed=7")), "validation")
        'procedural:chained_sums?difficulty=2&seed=1'
    """
    if split not in HELDOUT:
        raise ValueError(f"split must be one of {sorted(HELDOUT)}, got {split!r}")
    task = task_of(cfg)
    return f"{task}{'&' if '?' in task else '?'}seed={HELDOUT[split]}"


def heldout_eval(model: Any, tok: Any, cfg: Any, *, split: str = "test", limit: int = 64, n: int = 4,
                 seed: int = 0) -> dict[str, Any]:
    """Sample ``n`` responses (temperature 1) per held-out problem through the env.

    Returns:
        ``{"problems": ids, "correct": counts per problem, "n": n, "avg": avg@n, "seconds": s}``
        with problems sorted by id, so two calls on the same set line up for paired statistics.
    """
    import torch

    from reasonenv.agents.hf import HFPolicy, HFPolicyConfig
    from reasonenv.evaluation.evaluate import evaluate

    spec = heldout_spec(cfg, split)
    # Evaluation cuts steps at blank lines whatever split the RL run's shapers use (PRL's
    # fixed-size chunks): the sampled text is the same, only the env's step count differs.
    pol = HFPolicy(model, tok, HFPolicyConfig(temperature=1.0, max_step_tokens=cfg.rollout.max_step_tokens,
                                              split=EVAL_SPLIT, seed=seed))
    prompt: dict[str, Any] = {"chat": bool(cfg.env.chat)}
    if cfg.env.template:
        prompt["template"] = cfg.env.template
    env_kwargs = {"tokenizer": tok, "prompt": prompt, "max_tokens": cfg.env.max_tokens,
                  "max_steps": cfg.env.max_steps, "split": EVAL_SPLIT,
                  "last_number_fallback": cfg.env.last_number_fallback}
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            res = evaluate(pol, benchmarks=[spec], n=n, limit=limit, batch_problems=8, env_kwargs=env_kwargs, progress=False,
                           resume=False, seed=seed, n_resamples=200)
    finally:
        if was_training:
            model.train()
    counts: dict[str, int] = {}
    for rec in res.samples:
        counts[rec["problem_id"]] = counts.get(rec["problem_id"], 0) + int(rec["correct"])
    ids = sorted(counts)
    return {"problems": ids, "correct": [counts[i] for i in ids], "n": n,
            "avg": float(np.mean([counts[i] for i in ids]) / n), "seconds": time.perf_counter() - t0}


@dataclass
class TestbedResult:
    """Held-out results before and after RL, and the paired difference (avg@n)."""

    before: dict[str, Any]
    after: dict[str, Any]
    diff: Any  # reasonenv.evaluation.bootstrap.Estimate of after - before
    sft_seconds: float
    train_seconds: float
    history: list[dict[str, Any]]


def run_testbed(sft_config: str | Path, train_config: str | Path, *, sft_overrides: list[str] = (),
                overrides: list[str] = (), eval_limit: int = 128, eval_n: int = 4, log=print) -> TestbedResult:
    """SFT (cached), eval, RL, eval; see the module docstring."""
    import torch

    from reasonenv.agents.config import load_config
    from reasonenv.agents.sft import load_sft_config, run_sft
    from reasonenv.agents.trainer import Trainer
    from reasonenv.evaluation.bootstrap import paired_difference_ci

    for name, value in (("eval_limit", eval_limit), ("eval_n", eval_n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    scfg = load_sft_config(sft_config, list(sft_overrides))
    from reasonenv.agents.preflight import check_config

    cfg = load_config(train_config, [f"model.name={scfg.run.out_dir}", *overrides])
    check_config(cfg, check_model=False)  # every value but the model, which SFT is about to write
    t0 = time.perf_counter()
    log(f"[1/4] SFT checkpoint {scfg.run.out_dir} ({scfg.train.steps} steps; cached after the first run)")
    sft = run_sft(scfg)
    sft_seconds = time.perf_counter() - t0
    log(f"      {'found, same config hash' if sft.skipped else f'trained in {sft_seconds:.0f} s'}")
    trainer = Trainer(cfg)
    log(f"[2/4] held-out test set before RL: {eval_limit} problems x {eval_n} samples")
    before = heldout_eval(trainer.model, trainer.tok, cfg, limit=eval_limit, n=eval_n, seed=1)
    log(f"      avg@{eval_n} {before['avg']:.3f}")
    shapers = ", ".join(s["name"] if isinstance(s, dict) else str(s) for s in cfg.shaping.shapers) or "outcome"
    log(f"[3/4] RL: {cfg.run.steps} updates of {cfg.rollout.num_problems} x {cfg.rollout.group_size} "
        f"samples, shapers: {shapers}; metrics in {cfg.run.out_dir}/metrics.jsonl")
    t1 = time.perf_counter()
    torch.manual_seed(cfg.run.seed)
    history = trainer.train()
    train_seconds = time.perf_counter() - t1
    log(f"      {train_seconds:.0f} s; training accuracy first 5 updates "
        f"{np.mean([h['accuracy'] for h in history[:5]]):.3f}, last 5 {np.mean([h['accuracy'] for h in history[-5:]]):.3f}")
    log("[4/4] held-out test set after RL (same problems, same sampling seed)")
    after = heldout_eval(trainer.model, trainer.tok, cfg, limit=eval_limit, n=eval_n, seed=1)
    assert after["problems"] == before["problems"]
    diff = paired_difference_ci(
        {p: c / eval_n for p, c in zip(after["problems"], after["correct"])},
        {p: c / eval_n for p, c in zip(before["problems"], before["correct"])}, n_resamples=2000, seed=0)
    return TestbedResult(before, after, diff, sft_seconds, train_seconds, history)


def run_testbed_command(args: Any) -> int:
    """``reasonenv testbed``: print the before/after table; exit 2 on a bad config value."""
    from reasonenv.agents.config import ConfigError

    try:
        res = run_testbed(args.sft_config, args.config, sft_overrides=args.sft_overrides,
                          overrides=args.overrides, eval_limit=args.eval_limit, eval_n=args.eval_n)
    except (ConfigError, ValueError) as e:
        print(f"reasonenv testbed: {e}", file=sys.stderr)
        return 2
    n = res.before["n"]
    d = res.diff
    print(f"\nheld-out avg@{n} on {len(res.before['problems'])} test problems: "
          f"before {res.before['avg']:.3f} -> after {res.after['avg']:.3f}; "
          f"paired difference {d.value:+.3f} (95 % CI {d.low:+.3f} to {d.high:+.3f})")
    print(f"time: SFT {res.sft_seconds:.0f} s, RL {res.train_seconds:.0f} s; "
          "the study across methods and seeds: docs/learning.md")
    return 0
