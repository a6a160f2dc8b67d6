"""Peak memory of the trainer's log-prob pass with and without ``logits_to_keep`` (docs/benchmarks.md).

One forward + backward of :func:`reasonenv.agents.grpo.token_logprobs` on a batch of N rows of a
P-token prompt and an L-token response, in a fresh subprocess per variant (peak RSS is
per-process): ``first=0`` builds (N, P+L, V) logits, ``first=P-1`` only (N, L+1, V). Usage::

    python benchmarks/logits_memory.py --model smollm2-135m-instruct --rows 8 --prompt 64 --response 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def child(args: argparse.Namespace) -> None:
    import resource
    import time

    import torch

    from reasonenv.agents.grpo import token_logprobs
    from reasonenv.models.hf_utils import load_model

    torch.set_num_threads(1)
    model, _ = load_model(args.model, None, kind="causal", dtype="float32")
    model.train()
    g = torch.Generator().manual_seed(0)
    V = model.config.vocab_size
    ids = torch.randint(10, V, (args.rows, args.prompt + args.response), generator=g)
    attn = torch.ones_like(ids)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    logp, _ = token_logprobs(model, ids, attn, 1.0, first=args.first)
    logp[:, args.prompt - 1:].sum().backward()
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"first": args.first, "peak_mb": peak / 1024, "growth_mb": (peak - base) / 1024,
                      "seconds": dt}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--response", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--first", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for flag in ("rows", "prompt", "response", "repeats"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.first is not None:
        child(args)
        return 0
    rows = []
    for _ in range(args.repeats):  # interleaved: A B A B
        for first in (0, args.prompt - 1):
            out = subprocess.run([sys.executable, __file__, "--model", args.model, "--rows", str(args.rows),
                                  "--prompt", str(args.prompt), "--response", str(args.response),
                                  "--first", str(first)], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
