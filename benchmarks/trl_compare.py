"""Seconds per optimiser step and peak RSS: our GRPO trainer against TRL's GRPOTrainer.

Both sides train the same model folder on the same prompts (the tiny testbed's task and prompt
format), B problems x G samples per step, completions of at most L tokens, temperature 1, no
top-k / top-p, PPO clip 0.2, TRL ``loss_type="dapo"`` = our ``token_mean``, ``beta=0`` / no KL,
one optimiser step per generation batch (one inner epoch, one micro-batch), AdamW at a constant
rate, gradient clipping at 1, one torch thread. TRL runs in its own venv (``--trl-python``,
default ``/work/.venv-trl/bin/python``: torch 2.13.0, trl 1.16.0, transformers 5.19); its reward
is an exact match of ``\\boxed{answer}`` (ours: the env's grader, part of our step time).

Each side runs in its own process: load, one warm-up step, ``--steps`` timed steps; the driver
starts the processes alternately, ours, TRL, ours, TRL, ... ``--rounds`` of each. A process
reports its median step and its phases; the table gives the median (min-max) over processes.
Phases: generation (ours ``HFPolicy.act``, TRL ``_generate_single_turn``), log-prob passes before
the loss (TRL's old/ref log-probs when it computes them; our reference pass), forward-backward
(ours ``Trainer.update`` minus the optimiser step; TRL ``training_step`` minus its input
preparation), other (the rest of the step: env / reward, advantages, collation, optimiser).

    .venv/bin/python benchmarks/trl_compare.py --model runs/tiny/sft
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PHASES = ("generation", "log-prob passes", "forward-backward", "other")


class Clock:
    """Seconds per named phase; time spent in a nested phase is not counted in the outer one."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self.stack: list[str] = []

    def wrap(self, fn: Any, phase: str | Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            name = phase(self.stack) if callable(phase) else phase
            if name is None:
                return fn(*a, **kw)
            t0 = time.perf_counter()
            self.stack.append(name)
            try:
                return fn(*a, **kw)
            finally:
                self.stack.pop()
                dt = time.perf_counter() - t0
                self.t[name] = self.t.get(name, 0.0) + dt
                if self.stack:
                    self.t[self.stack[-1]] = self.t.get(self.stack[-1], 0.0) - dt
        return wrapper

    def take(self, total: float) -> dict[str, float]:
        res = {p: self.t.get(p, 0.0) for p in PHASES if p != "other"}
        res["other"] = total - sum(res.values())
        res["total"] = total
        self.t.clear()
        return res


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------- our side
def run_ours(a: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonenv.agents.config import load_config
    from reasonenv.agents.trainer import Trainer

    torch.set_num_threads(1)
    B, G, L = a["B"], a["G"], a["L"]
    # The env ends a response at the first step that reaches max_tokens, keeping that whole step:
    # steps of a size dividing L keep responses within L tokens, as TRL's are.
    S = 32 if L % 32 == 0 else L
    over = [f"run.out_dir={a['scratch']}", "run.progress=false", "run.tensorboard=false",
            f"rollout.num_problems={B}", f"rollout.group_size={G}", f"env.max_tokens={L}",
            f"rollout.max_step_tokens={S}", f"env.max_steps={max(8, L // S)}",
            f"algo.micro_batch={B * G}", "algo.loss_agg=token_mean", "algo.kl_coef=0.0",
            "rollout.temperature=1.0", "rollout.top_p=1.0", f"optim.lr={a['lr']}",
            f"model.name={a['model']}"]
    cfg = load_config(str(HERE.parent / "configs" / "tiny" / "grpo.yaml"), over)
    tok = AutoTokenizer.from_pretrained(a["model"])
    model = AutoModelForCausalLM.from_pretrained(a["model"], dtype=torch.float32)
    tr = Trainer(cfg, model, tok)
    rss_built = peak_rss_mb()
    clock = Clock()
    tr.policy.act = clock.wrap(tr.policy.act, "generation")
    tr.update = clock.wrap(tr.update, "forward-backward")
    tr.optimizer.step = clock.wrap(tr.optimizer.step, "other")
    if hasattr(tr.policy, "sync_weights"):
        tr.policy.sync_weights = clock.wrap(tr.policy.sync_weights, "other")
    steps, tokens = [], []
    rss_rollout = 0.0
    for i in range(1 + a["steps"]):
        t0 = time.perf_counter()
        groups, _ = tr.rollout()
        rss_rollout = rss_rollout or peak_rss_mb()
        batch = tr.make_batch(groups)
        tr.update(batch)
        res = clock.take(time.perf_counter() - t0)
        if i:
            steps.append(res)
            tokens.append(sum(len(s.response_ids) for s in batch))
    return {"steps": steps, "tokens": tokens, "peak_rss_mb": peak_rss_mb(), "rss_built_mb": rss_built,
            "rss_first_rollout_mb": rss_rollout}


# ---------------------------------------------------------------------------------- TRL side
def run_trl(a: dict[str, Any]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(1)
    B, G, L = a["B"], a["G"], a["L"]
    tok = AutoTokenizer.from_pretrained(a["model"])
    model = AutoModelForCausalLM.from_pretrained(a["model"], dtype=torch.float32)
    data = Dataset.from_list([{"prompt": p, "answer": ans} for p, ans in a["problems"]])

    def boxed_match(completions: list[str], answer: list[str], **kw: Any) -> list[float]:
        return [float(f"\\boxed{{{x}}}" in c) for c, x in zip(completions, answer)]

    args = GRPOConfig(
        output_dir=a["scratch"], per_device_train_batch_size=B * G, num_generations=G,
        gradient_accumulation_steps=1, max_completion_length=L, temperature=1.0, top_p=1.0,
        top_k=0, loss_type="dapo", beta=0.0, epsilon=0.2, num_iterations=1,
        learning_rate=a["lr"], lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=1.0, max_steps=1 + a["steps"], use_cpu=True, bf16=False,
        logging_steps=1, report_to=[], save_strategy="no", dataloader_num_workers=0,
        disable_tqdm=True, seed=0, shuffle_dataset=True, log_completions=False)
    trainer = GRPOTrainer(model=model, reward_funcs=boxed_match, args=args, train_dataset=data,
                          processing_class=tok)
    rss_built = peak_rss_mb()
    clock = Clock()
    trainer._generate_single_turn = clock.wrap(trainer._generate_single_turn, "generation")
    trainer._get_per_token_logps_and_entropies = clock.wrap(
        trainer._get_per_token_logps_and_entropies,
        lambda stack: "log-prob passes" if stack and stack[-1] == "other" else None)
    trainer._prepare_inputs = clock.wrap(trainer._prepare_inputs, "other")
    trainer.training_step = clock.wrap(trainer.training_step, "forward-backward")
    steps: list[dict[str, float]] = []
    tokens: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()
            clock.t.clear()

        def on_step_end(self, args, state, control, **kw):
            res = clock.take(time.perf_counter() - self.t0)
            if state.global_step > 1:
                steps.append(res)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs and state.global_step > 1:
                tokens.append(logs["completions/mean_length"] * B * G)

    trainer.add_callback(Timer())
    gen = trainer._generate_single_turn
    first: list[float] = []

    def generate_and_note_rss(*a: Any, **kw: Any) -> Any:
        out = gen(*a, **kw)
        first.append(first[0] if first else peak_rss_mb())
        return out

    trainer._generate_single_turn = generate_and_note_rss
    trainer.train()
    return {"steps": steps, "tokens": tokens, "peak_rss_mb": peak_rss_mb(), "rss_built_mb": rss_built,
            "rss_first_rollout_mb": first[0] if first else 0.0}


# ---------------------------------------------------------------------------------- driver
def side_main(side: str, spec: str) -> None:
    a = json.loads(Path(spec).read_text())
    res = run_ours(a) if side == "ours" else run_trl(a)
    Path(a["result"]).write_text(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/tiny/sft", help="a model folder, or random-tiny")
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--G", type=int, default=8)
    ap.add_argument("--L", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per process (after one warm-up)")
    ap.add_argument("--rounds", type=int, default=3, help="processes per side")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--trl-python", default="/work/.venv-trl/bin/python")
    ap.add_argument("--side", choices=["ours", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    if args.side:
        side_main(args.side, args.spec)
        return

    sys.path.insert(0, str(HERE))
    import numpy as np
    from _bench import machine_note, med, paired
    from _docs import replace_section

    from reasonenv.problems import make_source

    work = Path(tempfile.mkdtemp(prefix="trl_compare_"))
    model = args.model
    if model == "random-tiny":  # both sides load the same saved weights
        from _bench import load_lm

        m, tok, _ = load_lm("random-tiny")
        model = str(work / "model")
        m.save_pretrained(model)
        tok.save_pretrained(model)
    if not Path(model).is_dir():  # a packaged name such as smollm2-135m-instruct
        from reasonenv.models.assets import resolve_model

        model = str(resolve_model(model))
    model = str(Path(model).resolve())
    src = make_source("procedural:chained_sums?difficulty=2")
    rng = np.random.default_rng(0)
    probs = [src.sample(rng) for _ in range(512)]
    problems = [(f"Q: {p.question}\nA:\n", p.answer) for p in probs]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "trl": []}
    for r in range(args.rounds):
        for side in ("ours", "trl") if r % 2 == 0 else ("trl", "ours"):
            spec = work / f"{side}_{r}.json"
            result = work / f"{side}_{r}_result.json"
            scratch = work / f"{side}_{r}_out"
            spec.write_text(json.dumps({"B": args.B, "G": args.G, "L": args.L, "steps": args.steps,
                                        "lr": args.lr, "model": model, "problems": problems,
                                        "scratch": str(scratch), "result": str(result)}))
            py = sys.executable if side == "ours" else args.trl_python
            t0 = time.perf_counter()
            cwd = HERE.parent if side == "ours" else work  # TRL's process never sees reasonenv
            subprocess.run([py, str(HERE / "trl_compare.py"), "--side", side, "--spec", str(spec)],
                           check=True, env=env, cwd=cwd)
            res = json.loads(result.read_text())
            runs[side].append(res)
            step = statistics.median(s["total"] for s in res["steps"])
            print(f"round {r + 1} {side}: {time.perf_counter() - t0:.0f} s process, median step "
                  f"{step:.3f} s, peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)

    def per_process(side: str, key: str) -> list[float]:
        return [statistics.median(s[key] for s in res["steps"]) for res in runs[side]]

    trl_ver = subprocess.run([args.trl_python, "-c", "import trl, transformers, torch; print("
                              "trl.__version__, transformers.__version__, torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.split()
    ours_tot, trl_tot = per_process("ours", "total"), per_process("trl", "total")
    lines = [
        f"Model `{args.model}`, B={args.B} x G={args.G}, completions of at most {args.L} tokens, "
        f"{args.steps} timed steps per process after one warm-up, {args.rounds} processes per side "
        f"started alternately. TRL {trl_ver[0]} (transformers {trl_ver[1]}, torch {trl_ver[2]}) in "
        f"its own venv. {machine_note()}.", "",
        "| | ours | TRL GRPOTrainer |",
        "|---|---|---|",
        f"| seconds per optimiser step | {med(ours_tot)} | {med(trl_tot)} |",
    ]
    for p in PHASES:
        lines.append(f"| {p}, s | {med(per_process('ours', p))} | {med(per_process('trl', p))} |")
    tok_o = [statistics.median(r["tokens"]) for r in runs["ours"] if r["tokens"]]
    tok_t = [statistics.median(r["tokens"]) for r in runs["trl"] if r["tokens"]]
    per_k = {side: [statistics.median(s["total"] / t * 1000 for s, t in zip(r["steps"], r["tokens"]))
                    for r in runs[side]] for side in runs}
    lines += [
        f"| seconds per 1,000 completion tokens | {med(per_k['ours'])} | {med(per_k['trl'])} |",
        f"| completion tokens per step | {med(tok_o, '{:.0f}') if tok_o else '-'} | "
        f"{med(tok_t, '{:.0f}') if tok_t else '-'} |",
        *[f"| {label}, MB | {med([r[key] for r in runs['ours']], '{:.0f}')} | "
          f"{med([r[key] for r in runs['trl']], '{:.0f}')} |"
          for label, key in (("peak RSS after imports, model and trainer built", "rss_built_mb"),
                             ("peak RSS after the first generation", "rss_first_rollout_mb"),
                             ("**peak RSS**", "peak_rss_mb"))],
        f"| **TRL step / our step** (pairs of processes in start order) | "
        f"**{paired(trl_tot, ours_tot, '{:.2f}')}x** | |",
        "",
    ]
    cmd = " ".join([".venv/bin/python benchmarks/trl_compare.py", *sys.argv[1:]])
    lines.append(f"Reproduce: `{cmd}` (after `python3 -m venv /work/.venv-trl && "
                 "/work/.venv-trl/bin/pip install torch==2.13.0 trl==1.16.0 'transformers==5.19.*' "
                 "datasets`)")
    text = "\n".join(lines)
    print(text)
    if not args.no_docs:
        tiny = args.model in ("runs/tiny/sft", "random-tiny")
        name = "" if tiny else f", {args.model}"
        replace_section(f"## GRPO step vs TRL{name} (`benchmarks/trl_compare.py`)", text)


if __name__ == "__main__":
    main()
