"""``reasonenv compare RUN_A RUN_B``: two eval runs side by side, with the PAIRED difference of
every metric on the problems both runs scored and its bootstrap confidence interval.

Example:
    >>> a = [{"benchmark": "b", "problem_id": "p", "sample": 0, "correct": True}]
    >>> b = [{"benchmark": "b", "problem_id": "p", "sample": 0, "correct": False}]
    >>> compare_samples(a, b, n_resamples=10)["avg@n"]["difference"]["value"]
    1.0
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

from reasonenv.evaluation.bootstrap import paired_difference_ci
from reasonenv.evaluation.evaluate import _records
from reasonenv.evaluation.metrics import summarize
from reasonenv.evaluation.report import fmt
from reasonenv.evaluation.samples import read_samples


def compare_samples(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], *,
                    confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per metric: run A, run B (each over its own problems) and the paired ``A - B`` on the
    shared problems. ``pass@k`` / ``pass^k`` use the k both runs can report."""
    ra, rb = _records(a, prefix=True), _records(b, prefix=True)
    na = min((sum(1 for r in ra if r.problem_id == p) for p in {r.problem_id for r in ra}), default=0)
    nb = min((sum(1 for r in rb if r.problem_id == p) for p in {r.problem_id for r in rb}), default=0)
    ks = tuple(range(1, min(na, nb) + 1))
    sa = summarize(ra, ks, confidence=confidence, n_resamples=n_resamples, seed=seed)
    sb = summarize(rb, ks, confidence=confidence, n_resamples=n_resamples, seed=seed)
    out: dict[str, Any] = {}
    for name in sa.metrics:
        if name not in sb.metrics:
            continue
        shared = [p for p in sa.per_problem[name] if p in sb.per_problem[name]]
        entry = {"a": sa.metrics[name].to_dict(), "b": sb.metrics[name].to_dict(), "shared_problems": len(shared)}
        if shared:
            entry["difference"] = paired_difference_ci(
                sa.per_problem[name], sb.per_problem[name], confidence=confidence,
                n_resamples=n_resamples, seed=seed).to_dict()
        out[name] = entry
    return out


def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``reasonenv compare``."""
    p.add_argument("run_a", help="eval run folder (or its samples.jsonl)")
    p.add_argument("run_b", help="eval run folder (or its samples.jsonl)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")


def run_compare(args: argparse.Namespace) -> int:
    """``reasonenv compare``: exit 0, or 2 with one line naming a missing folder."""
    import sys

    from reasonenv.evaluation.bootstrap import MetricEstimate

    try:
        a, b = read_samples(args.run_a), read_samples(args.run_b)
    except FileNotFoundError as e:
        print(f"reasonenv compare: {e}", file=sys.stderr)
        return 2
    res = compare_samples(a, b, n_resamples=args.resamples)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    rows = [["metric", f"A: {args.run_a}", f"B: {args.run_b}", "A - B (paired, 95 % CI)", "shared"]]
    for name, e in res.items():
        diff = fmt(MetricEstimate(**e["difference"])) if "difference" in e else "-"
        rows.append([name, fmt(MetricEstimate(**e["a"])), fmt(MetricEstimate(**e["b"])), diff,
                     str(e["shared_problems"])])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows))
    return 0
