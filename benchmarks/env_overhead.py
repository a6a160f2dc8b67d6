"""The env's own cost and the HF policy's, measured against bare ``model.generate``.

Three measurements, each a set of contenders run in one process with one torch thread, in
interleaved rounds (A B C, then C B A, ...) after one warm-up call each; medians (min-max):

1. *rollout*: the trainer's own rollout (``Trainer.rollout`` on the config's MathSteps-v0 group
   env: B x G sub-envs, segmentation, grading, outcome shaper, info records, HF policy) with the
   time inside the env (``reset`` + ``step``) as a share of the rollout; and bare
   ``model.generate`` of the same number of tokens (same B x G prompts, every row
   ``total tokens / (B x G)`` new tokens) right next to it.
2. *policy vs generate*: N rows x L sampled tokens, EOS never stopping a row (the policy's
   tokenizer has no EOS id, generate gets ``min_new_tokens=L``): HFPolicy in one step of L
   tokens and in K steps (KV cache kept across steps) against ``model.generate``.
3. *cache*: S steps x L tokens per row, HFPolicy with its KV cache kept against the context
   re-encoded every step (``HFPolicyConfig(cache=False)``).

Writes its section of docs/benchmarks.md (one per model).

    .venv/bin/python benchmarks/env_overhead.py --model runs/tiny/sft
    .venv/bin/python benchmarks/env_overhead.py --model smollm2-135m-instruct --config configs/grpo.yaml \
        --rows 8 --tokens 64 --cache-rows 4 --cache-step-tokens 64 --rounds 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from typing import Any

from _bench import (
    ROOT,
    NoEosTokenizer,
    interleave,
    load_lm,
    machine_note,
    measure,
    med,
    paired,
    peak_rss_mb,
)
from _docs import replace_section  # benchmarks/ is on sys.path when run as a script


def left_pad(ids: list[list[int]], pad: int) -> tuple[Any, Any]:
    import torch

    width = max(len(x) for x in ids)
    inp = torch.full((len(ids), width), pad, dtype=torch.long)
    attn = torch.zeros_like(inp)
    for i, x in enumerate(ids):
        inp[i, width - len(x):] = torch.tensor(x)
        attn[i, width - len(x):] = 1
    return inp, attn


def bare_generate(model: Any, tok: Any, prompts: list[str], new_tokens: int, seed: int) -> int:
    """``model.generate`` of ``new_tokens`` sampled tokens per prompt (EOS not stopping a row)."""
    import torch

    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    inp, attn = left_pad([tok.encode(p, add_special_tokens=False) for p in prompts], pad)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(input_ids=inp, attention_mask=attn, do_sample=True, temperature=1.0,
                             top_k=0, top_p=1.0, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, pad_token_id=pad)
    return int((out.shape[1] - inp.shape[1]) * out.shape[0])


def policy_episodes(model: Any, tok: Any, prompts: list[str], steps: int, step_tokens: int,
                    cache: bool, seed: int) -> int:
    """HFPolicy: ``steps`` steps of exactly ``step_tokens`` tokens per prompt; tokens sampled."""
    from reasonenv.agents.hf import HFPolicy, HFPolicyConfig

    pol = HFPolicy(model, NoEosTokenizer(tok), HFPolicyConfig(
        temperature=1.0, max_step_tokens=step_tokens, split=f"fixed:{step_tokens}", seed=seed,
        cache=cache))
    slots = list(range(len(prompts)))
    n = 0
    for _ in range(steps):
        n += sum(len(a["token_ids"]) for a in pol.act(prompts, slots))
    return n


def per_token_check(tokenizer: Any, previous_ids: Any, token_ids: Any, text: str) -> None:
    """The env's token/text check as it was before it took two ``decode`` calls per step: every
    token decoded incrementally (two ``decode`` calls per token). The benchmark patches it in
    for its comparison row; the library uses the two-decode check."""
    from reasonenv.segmentation import IncrementalDecoder

    d = IncrementalDecoder(tokenizer).extend(list(previous_ids)[-6:])
    base = len(d.text)
    derived = d.extend(list(token_ids)).text[base:]
    if derived != text and "\ufffd" not in derived and "\ufffd" not in text:
        raise ValueError(f"token_ids decode to {derived[:60]!r}, not {text[:60]!r}")


def timed(fn: Any, acc: dict[str, float], key: str) -> Any:
    def wrapper(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            acc[key] = acc.get(key, 0.0) + time.perf_counter() - t0
    return wrapper


def rollout_bench(model: Any, tok: Any, config: str, rounds: int, out_dir: str) -> tuple[list[str], dict]:
    from reasonenv.agents.config import load_config
    from reasonenv.agents.trainer import Trainer

    cfg = load_config(str(ROOT / config), [f"run.out_dir={out_dir}", "run.progress=false",
                                           "run.tensorboard=false"])
    tr = Trainer(cfg, model, tok)
    acc: dict[str, float] = {}
    prompts: list[str] = []
    reset = tr.venv.reset

    def reset_and_keep_prompts(*a: Any, **kw: Any) -> Any:
        obs, info = reset(*a, **kw)
        prompts[:] = [o if isinstance(o, str) else o["text"] for o in obs]
        return obs, info

    tr.venv.reset = timed(reset_and_keep_prompts, acc, "env")
    tr.venv.step = timed(tr.venv.step, acc, "env")
    tr.policy.act = timed(tr.policy.act, acc, "policy")
    last: dict[str, Any] = {}

    def env_rollout() -> dict[str, float]:
        acc.clear()
        t0 = time.perf_counter()
        groups, st = tr.rollout()
        dt = time.perf_counter() - t0
        tokens = st["tokens_per_s"] * st["rollout_time"]
        last["tokens"], last["prompts"] = int(round(tokens)), list(prompts)
        last["longest"] = max(sum(ep.step_lengths) for g in groups for ep in g.episodes)
        acc_rate = statistics.mean(float(x) for g in groups for x in g.outcomes)
        return {"tokens": tokens, "env_s": acc["env"], "policy_s": acc["policy"],
                "rollout_s": dt, "accuracy": acc_rate}

    import reasonenv.envs.math_steps as math_steps

    library_check = math_steps.check_token_text

    def what_if_rollout() -> dict[str, float]:
        math_steps.check_token_text = per_token_check
        try:
            return env_rollout()
        finally:
            math_steps.check_token_text = library_check

    def generate_same_tokens() -> dict[str, float]:
        n = len(last["prompts"])
        per_row = max(1, math.ceil(last["tokens"] / n))
        return {"tokens": bare_generate(model, tok, last["prompts"], per_row, seed=len(prompts))}

    def generate_longest() -> dict[str, float]:
        # generate runs a batch until its longest row ends (finished rows ride along as padding):
        # this is what it pays for the rollout's responses; their useful tokens are the rollout's
        bare_generate(model, tok, last["prompts"], last["longest"], seed=len(prompts))
        return {"tokens": float(last["tokens"]), "longest": float(last["longest"])}

    # generate takes the prompts and token count of the latest rollout, so the order can
    # alternate: R G, G R, R G, ... (a G after a G R pair reuses that pair's rollout)
    env_rollout()
    generate_same_tokens()  # warm-ups
    e: list[dict[str, float]] = []
    g: list[dict[str, float]] = []
    g2: list[dict[str, float]] = []
    w: list[dict[str, float]] = []
    for r in range(rounds):
        # each generate follows a rollout and uses that rollout's prompts and lengths
        quad = [(e, env_rollout, "rollout"), (g, generate_same_tokens, "generate"),
                (g2, generate_longest, "generate to the longest"),
                (w, what_if_rollout, "rollout, per-token check (before)")]
        order = quad if r % 2 == 0 else [quad[3], quad[1], quad[2], quad[0]]
        for xs, fn, name in order:
            xs.append(measure(fn, f"round {r + 1} {name}"))
    share = [x["env_s"] / x["wall"] * 100 for x in e]
    what_if = [x["env_s"] / x["wall"] * 100 for x in w]
    pol_share = [x["policy_s"] / x["wall"] * 100 for x in e]
    other = [100 - a - b for a, b in zip(share, pol_share)]
    B, G = cfg.rollout.num_problems, cfg.rollout.group_size
    lines = [
        f"Workload: `{config}` (B={B} x G={G}, max {cfg.env.max_steps} steps / {cfg.env.max_tokens} "
        f"tokens, steps of at most {cfg.rollout.max_step_tokens} tokens, temperature "
        f"{cfg.rollout.temperature}, outcome shaper only); {rounds} rounds, each a trainer rollout "
        "and right after it bare generate of the same token count on the same prompts. "
        f"Tokens per rollout {med([x['tokens'] for x in e], '{:.0f}')}; accuracy "
        f"{med([x['accuracy'] for x in e])}.",
        "",
        "| measure | median (min-max) |",
        "|---|---|",
        f"| **env share of the rollout** (time in `reset` + `step`: segmentation, grading, outcome "
        f"shaper, info records) | **{med(share)} %** |",
        f"| env share with the earlier token/text check, two `decode` calls per token instead of "
        f"two per step (patched in by the benchmark, interleaved with the row above) | "
        f"{med(what_if)} % |",
        f"| policy share (`HFPolicy.act`) | {med(pol_share)} % |",
        f"| trainer loop around them | {med(other)} % |",
        f"| rollout seconds | {med([x['wall'] for x in e])} |",
        f"| bare generate seconds, same tokens | {med([x['wall'] for x in g])} |",
        f"| rollout tokens/s / bare generate tokens/s (paired per round) | "
        f"{paired([x['tokens'] / x['wall'] for x in e], [x['tokens'] / x['wall'] for x in g])} |",
        f"| bare generate seconds, the same prompts run to the rollout's longest response "
        f"({med([x['longest'] for x in g2], '{:.0f}')} tokens): what generate pays for these "
        f"responses | {med([x['wall'] for x in g2])} |",
        f"| rollout seconds / that generate's seconds (paired per round) | "
        f"{paired([x['wall'] for x in e], [x['wall'] for x in g2])} |",
    ]
    return lines, {"env_share": statistics.median(share), "what_if": statistics.median(what_if)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/tiny/sft",
                    help="a folder, a packaged name, or random-tiny (testbed shape, random init)")
    ap.add_argument("--config", default="configs/tiny/grpo.yaml", help="the rollout's trainer config")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=64, help="N rows of part 2 (the config's B x G)")
    ap.add_argument("--tokens", type=int, default=128, help="L tokens per row in part 2")
    ap.add_argument("--steps", type=int, default=4, help="K steps of the multi-step policy row")
    ap.add_argument("--cache-rows", type=int, default=16)
    ap.add_argument("--cache-steps", type=int, default=8)
    ap.add_argument("--cache-step-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--parts", default="1,2,3")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model, tok, label = load_lm(args.model)
    parts = {int(p) for p in args.parts.split(",")}
    prompt_src = "procedural:chained_sums?difficulty=2"
    import numpy as np

    from reasonenv.problems import make_source

    rng = np.random.default_rng(0)
    src = make_source(prompt_src)
    template = "Q: {question}\nA:\n"
    if getattr(tok, "chat_template", None) and "tiny" not in args.model:
        def fmt(q: str) -> str:
            return tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                           add_generation_prompt=True)
    else:
        def fmt(q: str) -> str:
            return template.format(question=q)
    prompts = [fmt(src.sample(rng).question) for _ in range(max(args.rows, args.cache_rows))]

    sections: list[str] = []
    summary: dict[str, Any] = {}
    if 1 in parts:
        print("part 1: rollout vs bare generate", flush=True)
        with tempfile.TemporaryDirectory() as d:
            lines, s = rollout_bench(model, tok, args.config, args.rounds, d)
        summary.update(s)
        sections += ["### 1. The env's share of a rollout (goal: under 2 %)", "", *lines, ""]
    if 2 in parts:
        print("part 2: HF policy vs bare generate", flush=True)
        N, L, K = args.rows, args.tokens, args.steps
        p = prompts[:N]
        res = interleave({
            "generate": lambda: {"tokens": bare_generate(model, tok, p, L, 0)},
            "policy 1 step": lambda: {"tokens": policy_episodes(model, tok, p, 1, L, True, 0)},
            f"policy {K} steps": lambda: {"tokens": policy_episodes(model, tok, p, K, L // K, True, 0)},
        }, args.rounds)
        base = [x["tokens"] / x["wall"] for x in res["generate"]]
        base_cpu = [x["tokens"] / x["cpu"] for x in res["generate"]]
        sections += [
            "### 2. HF policy tokens/s vs bare `model.generate` (goal: >= 95 %)", "",
            f"{N} rows x {L} sampled tokens (temperature 1, no top-k/top-p), EOS never stops a row; "
            f"{args.rounds} interleaved rounds. The K-step row samples {K} steps of {L // K} tokens "
            "(`split=fixed:...`), keeping the KV cache across steps as in an env rollout.", "",
            "| contender | tokens/s (wall) | vs generate, wall (paired) | vs generate, CPU time (paired) |",
            "|---|---|---|---|",
        ]
        for name, xs in res.items():
            tps = [x["tokens"] / x["wall"] for x in xs]
            tps_cpu = [x["tokens"] / x["cpu"] for x in xs]
            sections.append(f"| {'bare `model.generate`' if name == 'generate' else 'HFPolicy, ' + name} "
                            f"| {med(tps, '{:.0f}')} | {paired(tps, base)} | {paired(tps_cpu, base_cpu)} |")
        summary["policy_vs_generate"] = statistics.median(
            [a["tokens"] / a["wall"] / (b["tokens"] / b["wall"])
             for a, b in zip(res["policy 1 step"], res["generate"])])
        sections.append("")
    if 3 in parts:
        print("part 3: KV cache kept vs re-encoded", flush=True)
        N, S, L = args.cache_rows, args.cache_steps, args.cache_step_tokens
        p = prompts[:N]
        res = interleave({
            "kept": lambda: {"tokens": policy_episodes(model, tok, p, S, L, True, 0)},
            "re-encoded": lambda: {"tokens": policy_episodes(model, tok, p, S, L, False, 0)},
        }, args.rounds)
        base = [x["tokens"] / x["wall"] for x in res["kept"]]
        sections += [
            f"### 3. KV cache kept vs context re-encoded each step ({S} steps x {L} tokens)", "",
            f"{N} rows, {S} steps of exactly {L} tokens each (responses of {S * L} tokens), "
            f"{args.rounds} interleaved rounds.", "",
            "| HFPolicy | tokens/s (wall) | vs kept cache (paired) |",
            "|---|---|---|",
        ]
        for name, xs in res.items():
            tps = [x["tokens"] / x["wall"] for x in xs]
            sections.append(f"| KV cache {name} (`cache={name == 'kept'}`) | {med(tps, '{:.0f}')} | "
                            f"{paired(tps, base)} |")
        sections.append("")
    cmd = " ".join([".venv/bin/python benchmarks/env_overhead.py", *sys.argv[1:]])
    out = [f"Model: {label}. {machine_note()}. Peak RSS of the process {peak_rss_mb():.0f} MB.", "",
           *sections, f"Reproduce: `{cmd}`"]
    text = "\n".join(out)
    print(text)
    print(summary)
    if not args.no_docs:
        short = "tiny char Llama" if "tiny" in args.model else args.model
        replace_section(f"## Env and policy overhead, {short} (`benchmarks/env_overhead.py`)", text)

if __name__ == "__main__":
    main()
