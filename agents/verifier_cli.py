"""``reasonenv verifier collect`` / ``reasonenv verifier train``: MC targets, then a verifier.

* ``collect --policy FOLDER --problems SPEC --n N --m M --out DIR``: N responses per problem
  from the base policy through the env, m continuations per step prefix, one JSONL line per
  response (:func:`reasonenv.agents.verifiers.collect`); prints the compute spent.
* ``train --data DIR --kind prm|value --out MODEL_DIR``: a quantile PRM (PROGRS) or a value
  head (PAV) on the training problems; prints its quality on the held-out problems and writes
  ``metrics.json`` and ``verifier.json`` into the model folder, which the services config loads
  by path: ``{"prm": {"model": MODEL_DIR, "kind": "quantile"}}`` or
  ``{"prover": {"value_head": MODEL_DIR}}``.

Arguments are checked before a model is loaded; a bad value exits 2 with one line naming it.
This module does not import torch at import time (``reasonenv --help`` stays light).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

_SPLITS = {"\n": "\n", "\n\n": "\n\n", "\\n": "\n", "\\n\\n": "\n\n", "newline": "\n",
           "double_newline": "\n\n"}


class _OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr (exit 2), without the usage."""

    def error(self, message: str) -> Any:  # argparse's hook; never returns
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def add_verifier_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``reasonenv verifier collect`` and ``reasonenv verifier train``."""
    sub = p.add_subparsers(dest="verifier_command", required=True, parser_class=_OneLineParser)
    c = sub.add_parser("collect", help="sample responses and MC continuations from every step prefix")
    c.add_argument("--policy", required=True, help="base policy: a causal LM folder or name")
    c.add_argument("--problems", default="procedural:arithmetic?difficulty=1", help="problem source spec")
    c.add_argument("--limit", type=int, default=16, help="problems (default 16)")
    c.add_argument("--n", type=int, default=4, help="responses per problem (default 4)")
    c.add_argument("--m", type=int, default=8, help="continuations per prefix (default 8; PAV's K <= m)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--temperature", type=float, default=1.0)
    c.add_argument("--top-p", dest="top_p", type=float, default=1.0)
    c.add_argument("--max-tokens", dest="max_tokens", type=int, default=128, help="response budget")
    c.add_argument("--max-step-tokens", dest="max_step_tokens", type=int, default=64)
    c.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=None,
                   help="continuation budget (default: --max-tokens)")
    c.add_argument("--split", default="\\n\\n", help="step delimiter: \\n\\n (default) or \\n")
    c.add_argument("--prompt", default=None, help="prompt template with {question} (default: the env's)")
    c.add_argument("--chat", choices=("auto", "on", "off"), default="auto",
                   help="chat template (auto: when the tokenizer has one)")
    c.add_argument("--last-number-fallback", dest="last_number_fallback", action="store_true",
                   help="grade the last number when no final answer is marked")
    c.add_argument("--batch-problems", dest="batch_problems", type=int, default=4,
                   help="problems per env batch and per batched prover call (default 4)")
    c.add_argument("--sampler-batch", dest="sampler_batch", type=int, default=64,
                   help="continuation rows per generate() call (default 64; speed only)")
    c.add_argument("--out", required=True, help="collect folder (resumable)")
    c.add_argument("--no-resume", dest="resume", action="store_false", help="start over in --out")
    c.add_argument("--progress", action="store_true", help="progress bar of the rollouts")
    c.add_argument("--json", action="store_true", help="print stats.json instead of the summary")

    t = sub.add_parser("train", help="train a quantile PRM or a PAV value head on collected targets")
    t.add_argument("--data", required=True, help="a `reasonenv verifier collect` folder")
    t.add_argument("--kind", required=True, choices=("prm", "value"))
    t.add_argument("--out", required=True, help="model folder to write")
    t.add_argument("--base", default=None, help="base model (default: the collect policy)")
    t.add_argument("--K", type=int, default=4, help="Best-of-K of the value targets (= pav's K)")
    t.add_argument("--quantiles", default="0.1,0.5,0.9", help="PRM quantile levels")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--lr", type=float, default=1e-2)
    t.add_argument("--train-base", dest="train_base", action="store_true",
                   help="fine-tune the base model too (default: frozen)")
    t.add_argument("--val-frac", dest="val_frac", type=float, default=0.25,
                   help="fraction of PROBLEMS held out (default 0.25)")
    t.add_argument("--split-seed", dest="split_seed", type=int, default=0)
    t.add_argument("--batch-size", dest="batch_size", type=int, default=8)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", action="store_true", help="print metrics.json instead of the table")


def _fail(msg: str) -> int:
    print(f"reasonenv verifier: {msg}", file=sys.stderr)
    return 2


def run_verifier_command(args: argparse.Namespace) -> int:
    """``reasonenv verifier ...``; returns the exit code."""
    try:
        if args.verifier_command == "collect":
            return _collect(args)
        return _train(args)
    except (ValueError, FileNotFoundError) as e:
        return _fail(str(e))


def _flag_error(flag: str, value: Any, why: str) -> ValueError:
    return ValueError(" ".join(f"{flag} {value!r}: {why}".split()))


def _check_ints(args: argparse.Namespace, flags: dict[str, int]) -> None:
    """Each ``dest -> lowest allowed`` int of ``flags``; the message names ``--dest``."""
    for dest, low in flags.items():
        v = getattr(args, dest)
        if v is not None and v < low:
            raise _flag_error("--" + dest.replace("_", "-"), v, f"must be an int >= {low}")


def _check_model(flag: str, name: Any) -> None:
    """A model folder (with config.json), a packaged model or a reachable hub id; no load."""
    from reasonenv.agents.preflight import check_model_name

    try:
        check_model_name(flag, name)
    except ValueError as e:  # ConfigError "flag='x': why" -> "flag 'x': why"
        raise ValueError(str(e).replace(f"{flag}=", f"{flag} ", 1)) from None


def collect_config(args: argparse.Namespace) -> Any:
    """The checked :class:`~reasonenv.agents.verifiers.CollectConfig` of ``collect`` flags.

    Raises:
        ValueError: One line naming the first bad flag and its value (no model is loaded).
    """
    from reasonenv.agents.verifiers import CollectConfig
    from reasonenv.problems import make_source

    _check_ints(args, {"limit": 1, "n": 1, "m": 1, "max_tokens": 1, "max_step_tokens": 1,
                       "max_new_tokens": 1, "batch_problems": 1, "sampler_batch": 1, "seed": 0})
    for flag, v, ok, what in (("--temperature", args.temperature, args.temperature >= 0, ">= 0"),
                              ("--top-p", args.top_p, 0 < args.top_p <= 1, "in (0, 1]")):
        if not ok:  # nan fails every comparison
            raise _flag_error(flag, v, f"must be {what}")
    if args.split not in _SPLITS:
        raise _flag_error("--split", args.split, "valid: \\n\\n, \\n, newline, double_newline")
    if args.prompt is not None and "{question}" not in args.prompt:
        raise _flag_error("--prompt", args.prompt, "must contain {question}")
    try:
        make_source(args.problems)  # an unknown spec lists the valid ones
    except (ValueError, OSError, ImportError) as e:
        raise _flag_error("--problems", args.problems, str(e)) from None
    _check_model("--policy", args.policy)
    fields = ("policy", "problems", "limit", "n", "m", "seed", "temperature", "top_p", "max_tokens",
              "max_step_tokens", "max_new_tokens", "prompt", "chat", "last_number_fallback",
              "batch_problems", "sampler_batch")
    return CollectConfig(**{f: getattr(args, f) for f in fields}, split=_SPLITS[args.split])


def _collect(args: argparse.Namespace) -> int:
    from reasonenv.agents.verifiers import collect

    cfg = collect_config(args)
    stats = collect(cfg, args.out, resume=args.resume, progress=args.progress)
    if args.json:
        print(json.dumps(asdict(stats), indent=2))
        return 0
    print(collect_summary(asdict(stats), cfg.m))
    print(f"data: {Path(args.out) / 'mc_targets.jsonl'}")
    return 0


def collect_summary(stats: dict[str, Any], m: int) -> str:
    """The compute a collection spent, in a few lines."""
    s = stats
    per = s["continuation_tokens"] / max(s["policy_tokens"], 1)
    return "\n".join([
        f"responses {s['responses']} (accuracy {s['accuracy']:.3f}), {s['policy_tokens']} policy tokens, "
        f"{s['rollout_seconds']:.1f} s",
        f"prefixes {s['prefixes']} ({s['prefixes_sampled']} distinct sampled x m={m}): "
        f"{s['continuations']} continuations, {s['continuation_tokens']} tokens, {s['mc_seconds']:.1f} s",
        f"continuation tokens per policy token: {per:.1f}",
    ])


def train_settings(args: argparse.Namespace) -> Any:
    """The checked :class:`~reasonenv.agents.verifiers.TrainSettings` of ``train`` flags.

    Raises:
        ValueError: One line naming the first bad flag and its value (no model is loaded).
    """
    from reasonenv.agents.verifiers import TrainSettings

    _check_ints(args, {"K": 1, "epochs": 1, "batch_size": 1})
    if not args.lr > 0:
        raise _flag_error("--lr", args.lr, "must be > 0")
    if not 0 <= args.val_frac < 1:
        raise _flag_error("--val-frac", args.val_frac, "must be in [0, 1)")
    try:
        qs = tuple(float(q) for q in args.quantiles.split(",") if q.strip())
    except ValueError:
        raise _flag_error("--quantiles", args.quantiles, "must be comma-separated numbers") from None
    if not qs or any(not 0 < q < 1 for q in qs) or list(qs) != sorted(set(qs)):
        raise _flag_error("--quantiles", args.quantiles, "must be ascending distinct levels in (0, 1)")
    return TrainSettings(kind=args.kind, K=args.K, quantiles=qs, epochs=args.epochs, lr=args.lr,
                         train_base=args.train_base, val_frac=args.val_frac,
                         split_seed=args.split_seed, batch_size=args.batch_size, seed=args.seed)


def _train(args: argparse.Namespace) -> int:
    from reasonenv.agents import verifier_metrics as vm
    from reasonenv.agents import verifiers as V
    from reasonenv.evaluation.evaluate import benchmark_problems

    settings = train_settings(args)
    try:
        records = V.read_records(args.data)
        cfg = V.read_collect_config(args.data)
    except FileNotFoundError as e:
        raise _flag_error("--data", args.data, str(e)) from None
    if settings.kind == "value" and records and min(int(r["m"]) for r in records) < settings.K:
        raise _flag_error("--K", settings.K, f"needs m >= K continuations per prefix; {args.data!r} "
                          f"has m={min(int(r['m']) for r in records)}")
    V.check_data(records, settings)
    try:
        V.split_problems([r["problem_id"] for r in records], settings.val_frac, settings.split_seed)
    except ValueError as e:
        raise _flag_error("--val-frac", settings.val_frac, str(e)) from None
    base = args.base or cfg.get("policy")
    if not base:
        raise _flag_error("--base", base, f"is needed: {args.data!r} does not name its policy")
    _check_model("--base" if args.base else "--base (the collect policy)", base)
    prompts = {r["problem_id"]: r["prompt"] for r in records}
    problems = benchmark_problems(cfg["problems"], cfg["limit"], seed=cfg["seed"])
    solutions = vm.corrupted_solutions(problems, prompts, cfg["split"])
    verifier, metrics = V.train_verifier(records, base, None, settings, corrupted=solutions,
                                         log=lambda line: print(line, file=sys.stderr))
    out = Path(args.out)
    verifier.save_pretrained(str(out))
    stats_path = Path(args.data) / V.STATS_FILE
    metrics["data"] = str(args.data)
    metrics["collection"] = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.is_file() else None
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    service = ({"prm": {"model": str(out), "kind": "quantile"}} if settings.kind == "prm"
               else {"prover": {"value_head": str(out)}})
    (out / "verifier.json").write_text(json.dumps({"settings": asdict(settings), "data": str(args.data),
                                                   "base": base, "collect_config": cfg,
                                                   "services": service}, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(vm.metrics_table(metrics))
        print(f"model: {out}  metrics: {out / 'metrics.json'}  services: {json.dumps(service)}")
    return 0
