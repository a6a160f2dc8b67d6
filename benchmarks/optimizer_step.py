"""Seconds per AdamW step on a model's parameters: torch's for-loop, foreach and fused kernels.

The trainer's optimiser (``optim.fused``, on by default) is torch's fused AdamW, the default of
transformers' Trainer and so of TRL. All three optimisers step the same parameters, with the
same random gradients, in interleaved rounds (``_bench.interleave``: the order reversed every
other round) after one warm-up step each, which allocates the moments; medians (min-max).

    .venv/bin/python benchmarks/optimizer_step.py --model smollm2-135m-instruct --rounds 7
"""

from __future__ import annotations

import argparse
import sys

from _bench import interleave, load_lm, machine_note, med, paired
from _docs import replace_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    if args.rounds < 1:
        sys.exit(f"--rounds must be >= 1, got {args.rounds}")
    if args.threads < 1:
        sys.exit(f"--threads must be >= 1, got {args.threads}")

    import torch

    torch.set_num_threads(args.threads)
    model, _, label = load_lm(args.model)
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = 1e-3 * torch.randn(p.shape, generator=gen)
    kinds = {"for-loop (`foreach=False`)": {"foreach": False},
             "foreach (`foreach=True`)": {"foreach": True},
             "fused (`fused=True`, the trainer's default)": {"fused": True}}
    opts = {k: torch.optim.AdamW(params, lr=1e-8, weight_decay=0.0, **kw) for k, kw in kinds.items()}
    # interleave's warm-up call is each optimiser's first step, which allocates its moments
    res = interleave({k: lambda o=o: o.step() or {} for k, o in opts.items()}, args.rounds)
    names = list(opts)
    walls = {k: [x["wall"] for x in res[k]] for k in names}
    base = walls[names[0]]
    lines = [f"Model: {label}, {sum(p.numel() for p in params) / 1e6:.1f}M trainable parameters, "
             f"float32, {args.threads} torch thread(s); {args.rounds} interleaved rounds after one "
             f"warm-up step each. {machine_note()}.", "",
             "| AdamW | seconds per step | for-loop / this (paired) |", "|---|---|---|"]
    for k in names:
        lines.append(f"| {k} | {med(walls[k], '{:.3f}')} | {paired(base, walls[k], '{:.2f}')}x |")
    cmd = " ".join([".venv/bin/python benchmarks/optimizer_step.py", *sys.argv[1:]])
    text = "\n".join([*lines, "", f"Reproduce: `{cmd}`"])
    print(text)
    if not args.no_docs:
        replace_section("## AdamW step: for-loop, foreach, fused (`benchmarks/optimizer_step.py`)", text)


if __name__ == "__main__":
    main()
