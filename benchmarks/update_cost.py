"""Seconds per GRPO update (of the tiny testbed model, or ``--model``) as G, B and response
length double, split into phases, and the per-update cost of each built-in shaper as a ratio to
plain GRPO.

Every update is the trainer's own loop body (``rollout`` -> ``make_batch`` -> ``update``), timed
by phase through thin wrappers around the trainer's parts (no library code changes):

* generation: ``HFPolicy.act``;
* env: ``GroupVectorEnv.reset`` / ``step`` minus the shaper services called inside them
  (segmentation, grading, outcome and shaper terms, info records);
* reference pass / PRM pass / prover: the shaper services (``RefLogprobScorer.logprobs``,
  ``PRMScorer.score``, ``ProverService.q_values``) and the trainer's own reference scoring;
* forward-backward: ``Trainer.update`` minus the optimiser step;
* other: the rest (advantage composition, collation, the optimiser step, weight sync).

The response length is controlled exactly: the policy and env see the tokenizer without its EOS
id, and the model is the testbed's shape with random weights (``--model random-tiny``, default;
a trained model writes its answer and stops early, which would change the lengths, not the cost
per token), so every response is ``env.max_tokens`` tokens long. Each configuration gets its own
trainer; the configurations take turns, one update each per round, the order reversed every
other round, after one warm-up update each; medians (min-max) over the rounds.

    .venv/bin/python benchmarks/update_cost.py --parts scaling --rounds 5
    .venv/bin/python benchmarks/update_cost.py --parts shapers --rounds 5
    .venv/bin/python benchmarks/update_cost.py --model smollm2-135m-instruct --parts scaling \
        --B 1 --G 2 --L 16 --step-tokens 16 --rounds 3   # its own section
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from typing import Any

from _bench import ROOT, NoEosTokenizer, load_lm, machine_note, med, paired, peak_rss_mb
from _docs import replace_section  # benchmarks/ is on sys.path when run as a script

PHASES = ("generation", "env", "reference pass", "PRM pass", "prover", "forward-backward", "other")


class Clock:
    """Seconds per named phase, with nesting: time in an inner phase is not the outer's."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self.stack: list[str] = []

    def wrap(self, fn: Any, phase: str) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            self.stack.append(phase)
            try:
                return fn(*a, **kw)
            finally:
                self.stack.pop()
                dt = time.perf_counter() - t0
                self.t[phase] = self.t.get(phase, 0.0) + dt
                if self.stack:  # an outer phase does not count this time twice
                    outer = self.stack[-1]
                    self.t[outer] = self.t.get(outer, 0.0) - dt
        return wrapper


def build(model: Any, tok: Any, out_dir: str, B: int, G: int, L: int, step_tokens: int,
          shaper: str, pav: dict[str, Any]) -> tuple[Any, Clock]:
    """A trainer on the tiny config with the given sizes and shaper, its phases clocked."""
    from reasonenv.agents.config import load_config
    from reasonenv.agents.trainer import Trainer

    over = [f"run.out_dir={out_dir}", "run.progress=false", "run.tensorboard=false",
            f"rollout.num_problems={B}", f"rollout.group_size={G}", f"env.max_tokens={L}",
            f"env.max_steps={-(-L // step_tokens)}", f"rollout.max_step_tokens={step_tokens}",
            f"algo.micro_batch={B * G}"]
    cfg = load_config(str(ROOT / "configs" / "tiny" / "grpo.yaml"), over)
    services: dict[str, Any] = {}
    if shaper == "prl":  # configs/prl.yaml's options, split in steps of the policy's size
        cfg.shaping.shapers = [{"name": "prl", "eta": 200, "mode": "orm", "split": f"fixed:{step_tokens}"}]
        services["ref_model"] = "reference"
    elif shaper == "progrs":  # configs/progrs.yaml's options with a learned (quantile) PRM
        from reasonenv.models.prm import QuantileHeadPRM

        cfg.shaping.shapers = [{"name": "progrs", "lam": 0.1, "gamma": 0.5, "agg": "mean",
                                "inject": "advantage"}]
        # a PRM of the policy's own size: the testbed shape with a quantile head
        services["prm"] = QuantileHeadPRM(copy.deepcopy(model), tok)
    elif shaper == "pav":  # configs/pav.yaml's options; the prover is the frozen initial policy
        from reasonenv.models.sampler import HFSampler
        from reasonenv.shaping.prover import MCProver

        cfg.shaping.shapers = [{"name": "pav", "alpha": 3.0, "K": pav["K"], "m": pav["m"],
                                "split": "\n\n"}]
        services["prover"] = MCProver(HFSampler(copy.deepcopy(model), tok, temperature=1.0,
                                                max_new_tokens=pav["new_tokens"]), seed=0)
    elif shaper == "pav_value":  # configs/tiny/pav_value.yaml's options: a learned value head
        from reasonenv.models.value_head import ValueHeadProver

        cfg.shaping.shapers = [{"name": "pav", "alpha": 3.0, "K": pav["K"], "m": pav["m"],
                                "split": "\n\n"}]
        # of the policy's size, untrained: its cost does not depend on its weights
        services["prover"] = ValueHeadProver(copy.deepcopy(model), tok, K=pav["K"], seed=0)
    cfg.shaping.services = services
    tr = Trainer(cfg, copy.deepcopy(model), NoEosTokenizer(tok))
    clock = Clock()
    tr.policy.act = clock.wrap(tr.policy.act, "generation")
    tr.venv.reset = clock.wrap(tr.venv.reset, "env")
    tr.venv.step = clock.wrap(tr.venv.step, "env")
    svc = tr.pipeline.services
    if svc.ref_logprobs is not None and hasattr(svc.ref_logprobs, "logprobs"):
        svc.ref_logprobs.logprobs = clock.wrap(svc.ref_logprobs.logprobs, "reference pass")
    if svc.prm is not None:
        svc.prm.score = clock.wrap(svc.prm.score, "PRM pass")
    if svc.prover is not None:
        svc.prover.q_values = clock.wrap(svc.prover.q_values, "prover")
    score = tr._score

    def scored(m: Any, samples: Any) -> Any:  # the trainer's own reference / rescoring passes
        if m is tr.ref:
            return clock.wrap(score, "reference pass")(m, samples)
        return score(m, samples)

    tr._score = scored
    tr.unclocked_score = score
    tr.update = clock.wrap(tr.update, "forward-backward")
    tr.optimizer.step = clock.wrap(tr.optimizer.step, "other")
    if hasattr(tr.policy, "sync_weights"):
        tr.policy.sync_weights = clock.wrap(tr.policy.sync_weights, "other")
    return tr, clock


def one_update(tr: Any, clock: Clock) -> dict[str, float]:
    """One update of the trainer's loop body; seconds per phase."""
    clock.t.clear()
    c0, t0 = time.process_time(), time.perf_counter()
    groups, _ = tr.rollout()
    batch = tr.make_batch(groups)
    tr.update(batch)
    total = time.perf_counter() - t0
    cpu = time.process_time() - c0
    res = {p: clock.t.get(p, 0.0) for p in PHASES}
    res["other"] += total - sum(res.values())
    res["total"], res["cpu"] = total, cpu
    res["tokens"] = float(sum(len(s.response_ids) for s in batch))
    if tr.ref is not None:  # for comparison, not in the total: one batched reference forward
        t1 = time.perf_counter()
        tr.unclocked_score(tr.ref, batch)
        res["one_ref_forward"] = time.perf_counter() - t1
    if hasattr(tr.pipeline.services.prover, "stats"):  # MCProver's prefix cache
        st = tr.pipeline.services.prover.stats()
        res["hits"], res["misses"] = st["cache_hits"], st["cache_misses"]
    return res


def run(configs: dict[str, dict[str, Any]], model: Any, tok: Any, rounds: int,
        pav: dict[str, Any]) -> dict[str, list[dict[str, float]]]:
    """Build every configuration's trainer, one warm-up update each, then interleaved rounds."""
    trainers = {}
    for name, c in configs.items():
        d = tempfile.mkdtemp(prefix="update_cost_")
        trainers[name] = build(model, tok, d, c["B"], c["G"], c["L"], c["step_tokens"],
                               c.get("shaper", "grpo"), pav)
        print(f"warm-up {name}", flush=True)
        one_update(*trainers[name])
    names = list(configs)
    out: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            tr, clock = trainers[name]
            prover = tr.pipeline.services.prover
            before = prover.stats() if hasattr(prover, "stats") else None
            res = one_update(tr, clock)
            if before is not None:  # this update's hits and misses
                res["hits"] -= before["cache_hits"]
                res["misses"] -= before["cache_misses"]
            out[name].append(res)
            print(f"  round {r + 1} {name}: " + ", ".join(f"{k}={v:.3g}" for k, v in res.items()),
                  flush=True)
    return out


def phase_table(res: dict[str, list[dict[str, float]]], first_col: str,
                base: str | None = None) -> list[str]:
    cols = [p for p in PHASES if any(x[p] > 0.005 for xs in res.values() for x in xs)]
    head = f"| {first_col} | tokens | seconds per update | " + " | ".join(
        f"{p} s (%)" for p in cols) + (
        " | vs plain GRPO, wall (paired) | vs plain GRPO, CPU time (paired) |" if base else " |")
    lines = [head, "|" + "---|" * (3 + len(cols) + (2 if base else 0))]
    for name, xs in res.items():
        tot = [x["total"] for x in xs]
        cells = [f"{statistics.median([x[p] for x in xs]):.2f} "
                 f"({statistics.median([x[p] / x['total'] * 100 for x in xs]):.0f} %)" for p in cols]
        row = f"| {name} | {statistics.median([x['tokens'] for x in xs]):.0f} | {med(tot)} | " + \
            " | ".join(cells) + " |"
        if base:
            row += (f" {paired(tot, [x['total'] for x in res[base]], '{:.2f}')}x | "
                    f"{paired([x['cpu'] for x in xs], [x['cpu'] for x in res[base]], '{:.2f}')}x |")
        lines.append(row)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="random-tiny")
    ap.add_argument("--parts", default="scaling,shapers")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--G", type=int, default=4)
    ap.add_argument("--L", type=int, default=64, help="response tokens at the base point")
    ap.add_argument("--step-tokens", type=int, default=32, help="tokens per env step")
    ap.add_argument("--pav-m", type=int, default=4)
    ap.add_argument("--pav-K", type=int, default=2)
    ap.add_argument("--pav-new-tokens", type=int, default=64, help="prover continuation cap")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model, tok, label = load_lm(args.model)
    parts = set(args.parts.split(","))
    # the testbed model's sections keep their names; another model's get their own
    suffix = "" if args.model == "random-tiny" else f", {args.model}"
    scaling_title = f"## GRPO update cost as G, B and L double{suffix} (`benchmarks/update_cost.py`)"
    B, G, L, S = args.B, args.G, args.L, args.step_tokens
    pav = {"K": args.pav_K, "m": args.pav_m, "new_tokens": args.pav_new_tokens}
    sections: dict[str, list[str]] = {}
    if "scaling" in parts:
        configs = {}
        for k in (1, 2, 4):
            configs[f"G={G * k}"] = {"B": B, "G": G * k, "L": L, "step_tokens": S}
        for k in (2, 4):
            configs[f"B={B * k}"] = {"B": B * k, "G": G, "L": L, "step_tokens": S}
        for k in (2, 4):
            configs[f"L={L * k}"] = {"B": B, "G": G, "L": L * k, "step_tokens": S}
        res = run(configs, model, tok, args.rounds, pav)
        base = res[f"G={G}"]
        show = {f"B={B}, G={G}, L={L} (base)": base}
        show.update({f"{n} (others as base)": xs for n, xs in res.items() if n != f"G={G}"})
        sections[scaling_title] = [
            f"Base point B={B} problems x G={G} samples, responses of L={L} tokens in steps of "
            f"{S} tokens, outcome reward only (plain GRPO), one micro-batch for the whole batch, "
            f"one inner epoch; {args.rounds} rounds. Phase columns are medians of seconds "
            "(and of the phase's share of the update).", "",
            *phase_table(show, "configuration"), "",
        ]
        growth = []
        for axis, names in (("G", [f"G={G * k}" for k in (1, 2, 4)]),
                            ("B", [f"G={G}", f"B={B * 2}", f"B={B * 4}"]),
                            ("L", [f"G={G}", f"L={L * 2}", f"L={L * 4}"])):
            for phase in ("total", "cpu", "generation", "forward-backward", "env"):
                vals = [statistics.median([x[phase] for x in res[n]]) for n in names]
                if vals[0] > 0:
                    growth.append(f"{axis} x2 / x4, {'CPU time' if phase == 'cpu' else phase}: {vals[1] / vals[0]:.2f}x / "
                                  f"{vals[2] / vals[0]:.2f}x")
        sections[scaling_title] += [
            "Growth of the medians against the base point (x2 and x4 on one axis):", "",
            *[f"* {g}" for g in growth], ""]
    if "shapers" in parts:
        configs = {
            "plain GRPO (outcome)": {"B": B, "G": G, "L": L, "step_tokens": S},
            "PRL (reference pass)": {"B": B, "G": G, "L": L, "step_tokens": S, "shaper": "prl"},
            "PROGRS (quantile PRM pass)": {"B": B, "G": G, "L": L, "step_tokens": S, "shaper": "progrs"},
            f"PAV online (K={pav['K']}, m={pav['m']} continuations of <= {pav['new_tokens']} "
            "tokens)": {"B": B, "G": G, "L": L, "step_tokens": S, "shaper": "pav"},
            f"PAV, learned value head (K={pav['K']}; one forward per new prefix)":
                {"B": B, "G": G, "L": L, "step_tokens": S, "shaper": "pav_value"},
        }
        res = run(configs, model, tok, args.rounds, pav)
        pav_name = list(configs)[-2]
        hits = [x["hits"] / max(1.0, x["hits"] + x["misses"]) * 100 for x in res[pav_name]]
        prl = res["PRL (reference pass)"]
        sections[f"## Shaper cost per update{suffix} (`benchmarks/update_cost.py`)"] = [
            f"B={B} x G={G}, responses of {L} tokens in steps of {S} tokens, {args.rounds} rounds. "
            "PRL: configs/prl.yaml's options (eta 200, orm, split every step), reference = the "
            "frozen initial weights. PROGRS: configs/progrs.yaml's options with a learned PRM of "
            "the policy's size (the testbed Llama with a quantile head, `QuantileHeadPRM`). PAV: "
            "configs/pav.yaml's options; the prover is the frozen initial policy sampling m "
            "continuations per new prefix, with the prover's prefix cache. PAV with a learned "
            "verifier: configs/tiny/pav_value.yaml's options; the prover is a `ValueHeadProver` "
            "(the policy's architecture with a value head, untrained here: its cost does not "
            "depend on its weights), one batched forward per new prefix; its time is in the "
            "prover column.", "",
            *phase_table(res, "shaper", base="plain GRPO (outcome)"), "",
            f"PAV prefix-cache hit rate per update: {med(hits, '{:.0f}')} % (hits / prover "
            "requests; every group's empty prefix after the first request, and prefixes seen in "
            "earlier updates, are hits).", "",
            f"PRL's reference pass took {med([x['reference pass'] for x in prl])} s per update; one "
            "batched forward of the reference model over the same batch (the trainer's own "
            f"`_score`, timed after each PRL update, not in its total) took "
            f"{med([x['one_ref_forward'] for x in prl])} s: ratio "
            f"{paired([x['reference pass'] for x in prl], [x['one_ref_forward'] for x in prl], '{:.2f}')}x.",
            "",
        ]
    cmd = " ".join([".venv/bin/python benchmarks/update_cost.py", *sys.argv[1:]])
    for heading, body in sections.items():
        text = "\n".join([f"Model: {label}. {machine_note()}. Peak RSS of the process "
                          f"{peak_rss_mb():.0f} MB (every configuration's trainer in one process).",
                          "", *body, f"Reproduce: `{cmd}`"])
        print(heading, text, sep="\n\n")
        if not args.no_docs:
            replace_section(heading, text)


if __name__ == "__main__":
    main()
