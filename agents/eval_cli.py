"""``reasonenv eval``: evaluate any policy on benchmarks through the env.

Arguments are checked (benchmarks, shapers, numbers, the policy spec's shape) before a model is
loaded; a bad value exits 2 with one line naming it. Presets in ``configs/eval/`` (``--preset``)
set the papers' protocols; explicit flags override them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "eval"
PRESET_KEYS = {"benchmarks", "n", "temperature", "max_tokens", "limit", "prompt", "chat", "ks",
               "last_number_fallback", "top_p", "split"}


def _fail(msg: str) -> int:
    print(f"reasonenv eval: {msg}", file=sys.stderr)
    return 2


def _preset(name: str | None) -> dict[str, Any]:
    if not name:
        return {}
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ValueError(f"--preset {name!r}: no such preset; valid: {valid} or a .yaml path")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(data) - PRESET_KEYS)
    if unknown:
        raise ValueError(f"preset {str(path)!r}: unknown key(s) {unknown}; valid: {sorted(PRESET_KEYS)}")
    return data


def resolve_args(args: argparse.Namespace) -> dict[str, Any]:
    """Preset + flags -> checked settings (no model loaded).

    Raises:
        ValueError: Naming the flag and the value.
    """
    from reasonenv.agents.policy_specs import parse_spec
    from reasonenv.problems import make_source
    from reasonenv.shaping import make_shaper

    cfg: dict[str, Any] = {"n": 8, "temperature": 1.0, "top_p": 1.0, "max_tokens": 1024, "limit": None,
                           "benchmarks": ["math500"], "prompt": None, "chat": "auto", "ks": None,
                           "last_number_fallback": False, "split": "\n\n"}
    cfg.update(_preset(args.preset))
    for key in ("n", "temperature", "top_p", "max_tokens", "limit", "chat", "last_number_fallback", "split"):
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    if args.benchmarks:
        cfg["benchmarks"] = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    if isinstance(cfg["benchmarks"], str):
        cfg["benchmarks"] = [cfg["benchmarks"]]
    for key in ("n", "max_tokens", "batch"):
        v = cfg.get(key, getattr(args, key, None))
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be a positive int, got {v!r}")
    if cfg["limit"] is not None and (not isinstance(cfg["limit"], int) or cfg["limit"] < 1):
        raise ValueError(f"--limit must be a positive int, got {cfg['limit']!r}")
    t = cfg["temperature"]
    if not isinstance(t, (int, float)) or not 0 <= t < float("inf"):
        raise ValueError(f"--temperature must be a finite number >= 0, got {t!r}")
    for b in cfg["benchmarks"]:
        make_source(b)  # an unknown name or split lists the valid ones
    parse_spec(args.policy)
    shapers = yaml.safe_load(args.shapers) if args.shapers else []
    if isinstance(shapers, (str, dict)):
        shapers = [shapers]
    if not isinstance(shapers, list):
        raise ValueError(f"--shapers must be a name or a YAML list, got {args.shapers!r}")
    for spec in shapers:
        make_shaper(spec)  # an unknown name or option lists the valid ones
    services = yaml.safe_load(args.services) if args.services else None
    if services is not None and not isinstance(services, dict):
        raise ValueError(f"--services must be a YAML mapping, got {args.services!r}")
    cfg.update(shapers=shapers, services=services, batch=args.batch, seed=args.seed, policy=args.policy)
    return cfg


def run_eval_command(args: argparse.Namespace) -> int:
    """``reasonenv eval``; returns the exit code."""
    import json

    from reasonenv.agents.policy_specs import PolicySettings, build_policy
    from reasonenv.evaluation.evaluate import benchmark_problems, evaluate

    try:
        cfg = resolve_args(args)
    except (ValueError, TypeError) as e:
        return _fail(str(e))
    settings = PolicySettings(temperature=cfg["temperature"], top_p=cfg["top_p"],
                              max_step_tokens=cfg["max_tokens"], split=cfg["split"], seed=cfg["seed"],
                              dtype=args.dtype, openai_mode=args.openai_mode)
    problems = [p for b in cfg["benchmarks"] for p in benchmark_problems(b, cfg["limit"], seed=cfg["seed"])]
    try:
        policy, tokenizer = build_policy(cfg["policy"], settings, problems=problems)
    except ValueError as e:
        return _fail(str(e))
    env_kwargs: dict[str, Any] = {"max_tokens": cfg["max_tokens"], "split": cfg["split"],
                                  "last_number_fallback": cfg["last_number_fallback"],
                                  "max_steps": max(16, cfg["max_tokens"] // 16)}
    if tokenizer is not None:
        env_kwargs["tokenizer"] = tokenizer
    chat = cfg["chat"]
    use_chat = chat in ("on", True) or (chat == "auto" and getattr(tokenizer, "chat_template", None))
    prompt: dict[str, Any] = {"chat": bool(use_chat and tokenizer is not None)}
    if cfg["prompt"]:
        prompt["template"] = cfg["prompt"]
    env_kwargs["prompt"] = prompt
    try:
        result = evaluate(policy, benchmarks=cfg["benchmarks"], n=cfg["n"], limit=cfg["limit"],
                          batch_problems=cfg["batch"], ks=cfg["ks"], shapers=cfg["shapers"],
                          services=cfg["services"], env_kwargs=env_kwargs, out_dir=args.out,
                          resume=args.resume, progress=args.progress, seed=cfg["seed"],
                          run_config={"policy": cfg["policy"], "temperature": cfg["temperature"],
                                      "max_tokens": cfg["max_tokens"], "split": cfg["split"]})
    except (ValueError, TypeError, NotADirectoryError) as e:
        return _fail(str(e))
    finally:
        close = getattr(policy, "close", None)
        if callable(close):
            close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.table())
        print(f"{result.new_samples} new samples in {result.seconds:.1f} s "
              f"({result.samples_per_second:.2f} samples/s)")
        if args.out:
            print(f"results: {Path(args.out) / 'results.json'}  samples: {Path(args.out) / 'samples.jsonl'}  "
                  f"plot: {Path(args.out) / 'passk.png'}")
    return 0
