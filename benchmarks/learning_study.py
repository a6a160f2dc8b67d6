"""The learning study: GRPO vs PRL vs PROGRS vs PAV on the tiny CPU testbed, with seeds and CIs.

Every method is one trainer config, ``configs/tiny/<method>.yaml``, started from the same SFT
checkpoint (``make tiny-sft``) with the same rollout budget (B problems x G samples per update,
the same number of updates). Every ``--eval-every`` updates the policy is evaluated through the
env (:func:`reasonenv.evaluate`) on a fixed held-out problem set: the validation set (seed 1)
while tuning, the test set (seed 0) for the reported runs; the training problems come from
another seed (``env.problems`` of the configs) and SFT removed both sets from its data.

Per run it writes ``OUT/<method>/seed<k>/`` (the trainer's metrics.jsonl, and evals.jsonl: one
line per evaluation with the per-problem success counts, the rollouts and tokens spent so
far, and the verifier's compute where there is one). ``--report`` pools the runs into
``OUT/results.json``, ``docs/learning_curves.png`` and the study table in docs/learning.md
(between the ``<!-- study -->`` markers): held-out avg@n and pass@n after the last update
with 95 % intervals from a two-level bootstrap (seeds, then problems), the rollouts needed to
reach GRPO's final accuracy, and the wall time per update.

Usage (each method's curve is one command; runs already finished are kept)::

    .venv/bin/python benchmarks/learning_study.py --methods grpo,prl,prl_prm --seeds 0,1,2
    .venv/bin/python benchmarks/learning_study.py --report
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MARK_BEGIN, MARK_END = "<!-- study -->", "<!-- /study -->"


def run_one(method: str, seed: int, args: argparse.Namespace) -> Path:
    """Train ``method`` with ``seed``, evaluating every ``args.eval_every`` updates."""
    from reasonenv.agents.config import load_config
    from reasonenv.agents.testbed import heldout_eval
    from reasonenv.agents.trainer import Trainer

    out = Path(args.out) / method / f"seed{seed}"
    if (out / "evals.jsonl").exists() and (out / "done").exists():
        print(f"{method} seed {seed}: done already ({out})")
        return out
    out.mkdir(parents=True, exist_ok=True)
    overrides = [f"run.seed={seed}", f"run.out_dir={out}", f"run.steps={args.updates}",
                 "run.progress=false", "run.plot=false", "run.tensorboard=false", "run.checkpoint_every=0",
                 *args.set]
    cfg = load_config(Path(args.configs) / f"{method}.yaml", overrides)
    trainer = Trainer(cfg)
    evals = out / "evals.jsonl"
    evals.write_text("")
    spent = {"rollouts": 0, "tokens": 0.0, "prover_samples": 0.0, "prover_tokens": 0.0,
             "verifier_tokens": verifier_tokens(cfg)}
    B, G = cfg.rollout.num_problems, cfg.rollout.group_size

    def log_eval(step: int, record: dict[str, Any] | None) -> None:
        ev = heldout_eval(trainer.model, trainer.tok, cfg, split=args.split, limit=args.eval_limit,
                            n=args.eval_n, seed=10_000 + step)
        row = {"step": step, **spent, "split": args.split, **ev}
        with evals.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if record is not None:
            record["heldout/avg"] = ev["avg"]
        print(f"{method} seed {seed} update {step:>3}: held-out avg@{args.eval_n} {ev['avg']:.3f} "
              f"(train acc {record['accuracy'] if record else float('nan'):.3f}, {ev['seconds']:.0f} s eval)",
              flush=True)

    def callback(tr: Any, record: dict[str, Any]) -> None:
        spent["rollouts"] += B * G
        spent["tokens"] += record["response_tokens"] * B * G
        # the MC prover's counters are cumulative over the run
        spent["prover_samples"] = float(record.get("stats/prover/samples_drawn", 0.0))
        spent["prover_tokens"] = float(record.get("stats/prover/sampler_tokens", 0.0))
        if record["step"] % args.eval_every == 0 or record["step"] == args.updates:
            log_eval(record["step"], record)

    log_eval(0, None)
    t0 = time.perf_counter()
    trainer.train(callbacks=[callback])
    (out / "done").write_text(json.dumps({"seconds": time.perf_counter() - t0}))
    return out


def verifier_tokens(cfg: Any) -> float:
    """Tokens generated to train the run's learned verifier (the MC collection's policy and
    continuation tokens, from the ``metrics.json`` that ``reasonenv verifier train`` writes), or 0."""
    services = dict(cfg.shaping.services or {})
    folders = []
    prm = services.get("prm")
    if isinstance(prm, dict) and prm.get("model"):
        folders.append(prm["model"])
    prover = services.get("prover")
    if isinstance(prover, dict) and prover.get("value_head"):
        folders.append(prover["value_head"])
    total = 0.0
    for folder in folders:
        path = Path(folder) / "metrics.json"
        if not path.is_absolute():
            path = ROOT / path
        if path.is_file():
            col = json.loads(path.read_text()).get("collection") or {}
            total += float(col.get("policy_tokens", 0)) + float(col.get("continuation_tokens", 0))
    return total


# ---------------------------------------------------------------------------------------- report
def _load(out: Path) -> dict[str, dict[int, list[dict[str, Any]]]]:
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for path in sorted(out.glob("*/seed*/evals.jsonl")):
        if not (path.parent / "done").exists():
            continue
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        runs.setdefault(path.parent.parent.name, {})[int(path.parent.name[4:])] = rows
    return runs


def compute_tokens(row: dict[str, Any]) -> float:
    """Every token generated up to an evaluation row: the policy's training responses, the
    MC prover's continuations and the verifier's training data (a fixed cost paid up front)."""
    return float(row["tokens"]) + float(row.get("prover_tokens", 0.0)) + float(row.get("verifier_tokens", 0.0))


def two_level_ci(per_seed: list[np.ndarray], reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds of the mean over problems, and a 95 % interval resampling seeds, then
    problems within each drawn seed."""
    rng = np.random.default_rng(seed)
    point = float(np.mean([x.mean() for x in per_seed]))
    means = np.empty(reps)
    for r in range(reps):
        picks = rng.integers(len(per_seed), size=len(per_seed))
        means[r] = np.mean([per_seed[i][rng.integers(len(per_seed[i]), size=len(per_seed[i]))].mean()
                            for i in picks])
    lo, hi = np.percentile(means, [2.5, 97.5])
    return point, float(lo), float(hi)


def diff_ci(a: list[np.ndarray], b: list[np.ndarray], reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of method ``a`` minus mean of method ``b`` (each a list of per-seed, per-problem
    scores on the same problems), with a 95 % interval: each rep draws one set of problems,
    shared by both methods (they were evaluated on the same ones), and each method's seeds
    independently."""
    rng = np.random.default_rng(seed)
    point = float(np.mean([x.mean() for x in a]) - np.mean([x.mean() for x in b]))
    n = len(a[0])
    out = np.empty(reps)
    for r in range(reps):
        idx = rng.integers(n, size=n)
        ma = np.mean([a[i][idx].mean() for i in rng.integers(len(a), size=len(a))])
        mb = np.mean([b[i][idx].mean() for i in rng.integers(len(b), size=len(b))])
        out[r] = ma - mb
    lo, hi = np.percentile(out, [2.5, 97.5])
    return point, float(lo), float(hi)


def report(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    runs = _load(out)
    if not runs:
        raise SystemExit(f"no finished runs under {out}")
    order = [m for m in ("grpo", "prl", "prl_prm", "progrs", "pav", "pav_value") if m in runs]
    order += sorted(set(runs) - set(order))
    table, results = [], {}
    grpo_final = None
    if "grpo" in runs:
        grpo_final = float(np.mean([rows[-1]["avg"] for rows in runs["grpo"].values()]))
    fig, (ax, ax_tok) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for method in order:
        seeds = runs[method]
        steps = [r["step"] for r in next(iter(seeds.values()))]
        curves = np.array([[r["avg"] for r in rows] for rows in seeds.values()])
        xs = np.array([r["rollouts"] for r in next(iter(seeds.values()))])
        mean = curves.mean(0)
        band = [two_level_ci([np.array(rows[j]["correct"]) / rows[j]["n"] for rows in seeds.values()])
                for j in range(len(steps))]
        ax.plot(xs, mean, marker="o", ms=3, label=method)
        ax.fill_between(xs, [b[1] for b in band], [b[2] for b in band], alpha=0.15)
        # compute-matched: every generated token (policy, prover continuations, verifier data)
        toks = np.mean([[compute_tokens(r) for r in rows] for rows in seeds.values()], axis=0)
        ax_tok.plot(toks, mean, marker="o", ms=3, label=method)
        ax_tok.fill_between(toks, [b[1] for b in band], [b[2] for b in band], alpha=0.15)
        finals = [np.array(rows[-1]["correct"]) for rows in seeds.values()]
        n = next(iter(seeds.values()))[-1]["n"]
        avg = two_level_ci([c / n for c in finals])
        passn = two_level_ci([(c > 0).astype(float) for c in finals])
        start = two_level_ci([np.array(rows[0]["correct"]) / n for rows in seeds.values()])
        gain = two_level_ci([(np.array(rows[-1]["correct"]) - np.array(rows[0]["correct"])) / n
                             for rows in seeds.values()])
        vs_grpo = None
        if "grpo" in runs and method != "grpo":
            vs_grpo = diff_ci([c / n for c in finals],
                              [np.array(rows[-1]["correct"]) / rows[-1]["n"] for rows in runs["grpo"].values()])
        reach: int | str | None = None
        if grpo_final is not None:
            if grpo_final <= mean[0]:
                reach = "n/a: GRPO ended below the start"
            else:
                hit = [x for x, m in zip(xs[1:], mean[1:]) if m >= grpo_final]
                reach = int(hit[0]) if hit else None
        secs = []
        for s in seeds:
            mfile = out / method / f"seed{s}" / "metrics.jsonl"
            secs += [json.loads(x)["step_time"] for x in mfile.read_text().splitlines() if x.strip()]
        last = next(iter(seeds.values()))[-1]
        results[method] = {"seeds": sorted(seeds), "start": start, "final_avg": avg, "final_pass": passn,
                           "gain": gain, "vs_grpo": vs_grpo, "rollouts_to_grpo_final": reach,
                           "seconds_per_update": float(np.median(secs)),
                           "tokens": float(np.mean([rows[-1]["tokens"] for rows in seeds.values()])),
                           "prover_samples": float(np.mean([rows[-1]["prover_samples"] for rows in seeds.values()])),
                           "prover_tokens": float(np.mean([rows[-1].get("prover_tokens", 0.0) for rows in seeds.values()])),
                           "verifier_tokens": float(np.mean([rows[-1].get("verifier_tokens", 0.0) for rows in seeds.values()])),
                           "generated_tokens": float(np.mean([compute_tokens(rows[-1]) for rows in seeds.values()])),
                           "curve": {"rollouts": xs.tolist(), "mean": mean.tolist()}}
        table.append((method, len(seeds), start, avg, gain, vs_grpo, passn, reach, float(np.median(secs)),
                      results[method]["tokens"], results[method]["prover_samples"], last["rollouts"],
                      results[method]["generated_tokens"]))
    ax.set_xlabel("policy rollouts (responses sampled for training)")
    ax.set_ylabel(f"held-out avg@{n} ({next(iter(runs[order[0]].values()))[0]['split']} set)")
    ax_tok.set_xlabel("generated tokens: policy + prover continuations + verifier training data")
    for a in (ax, ax_tok):
        a.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = ROOT / "docs" / ("learning_curves.png" if args.section == "study" else f"learning_curves_{args.section}.png")
    fig.savefig(png, dpi=120)
    (out / "results.json").write_text(json.dumps(results, indent=2))

    def ci(t: tuple[float, float, float]) -> str:
        return f"{t[0]:+.3f} ({t[1]:+.3f} to {t[2]:+.3f})" if t[1] < 0 or t[0] < 0 else f"{t[0]:.3f} ({t[1]:.3f} to {t[2]:.3f})"

    begin, end = f"<!-- {args.section} -->", f"<!-- /{args.section} -->"
    lines = [begin, "",
             "| method | seeds | held-out avg@n before | after | gain (paired) | after minus GRPO's after | pass@n after | "
             "rollouts to GRPO's final | s / update (median) | response tokens | prover samples | "
             "all generated tokens |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (m, k, start, avg, gain, vs, passn, reach, sec, tokens, prover, total, gen) in table:
        lines.append(f"| {m} | {k} | {ci(start)} | {ci(avg)} | {ci(gain)} | {ci(vs) if vs else '-'} | {ci(passn)} | "
                     f"{reach if reach is not None else f'not reached in {total}'} | {sec:.2f} | "
                     f"{tokens:,.0f} | {prover:,.0f} | {gen:,.0f} |")
    lines += ["", f"Produced by `{args.command}` on {time.strftime('%Y-%m-%d')} "
              f"({os.cpu_count()} cores, shared machine).", "", end]
    doc = ROOT / "docs" / "learning.md"
    text = doc.read_text() if doc.exists() else f"# Learning study\n\n{begin}\n{end}\n"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: "\n".join(lines), text, flags=re.S)
    else:
        text += "\n" + "\n".join(lines) + "\n"
    doc.write_text(text)
    print("\n".join(lines[2:-3]))
    print(f"wrote {doc}, {png}, {out / 'results.json'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="grpo,prl,prl_prm", help="<configs>/<method>.yaml, comma-separated")
    p.add_argument("--configs", default=str(ROOT / "configs" / "tiny"),
                   help="folder of the methods' trainer configs (configs/smollm2 for the LLM path)")
    p.add_argument("--section", default="study",
                   help="--report: the docs/learning.md markers <!-- SECTION --> and the plot's name")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--updates", type=int, default=60)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--eval-limit", type=int, default=96, help="held-out problems")
    p.add_argument("--eval-n", type=int, default=4, help="samples per held-out problem")
    p.add_argument("--split", choices=["test", "validation"], default="test")
    p.add_argument("--out", default="runs/study")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="trainer override")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report", action="store_true", help="pool the finished runs into docs/learning.md")
    args = p.parse_args(argv)
    args.command = "python benchmarks/learning_study.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if not re.fullmatch(r"[a-z0-9_]+", args.section):
        p.error(f"--section must be lower-case letters, digits or _ (it names a marker and a file), got {args.section!r}")
    if args.report:
        report(args)
        return 0
    for flag in ("updates", "eval_every", "eval_limit", "eval_n", "threads"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if not (Path(args.configs) / f"{m}.yaml").is_file():
            p.error(f"--methods: no {Path(args.configs) / m}.yaml")
    import torch

    torch.set_num_threads(args.threads)
    for seed in [int(s) for s in args.seeds.split(",")]:  # seed-major: every method gets seed 0 first
        for m in methods:
            run_one(m, seed, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
