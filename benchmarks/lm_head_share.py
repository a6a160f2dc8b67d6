"""How much of a GRPO loss forward-backward is the LM head and its log-softmax.

Times, interleaved in one process, a forward + backward of the same (rows x length) batch:

* ``token_logprobs`` as the trainer calls it (logits from position ``--first`` on, the
  logged entropy included),
* the backbone alone (``model.model``, the hidden states' sum as the loss),

so the difference is what a chunked, fused LM-head log-prob could save at most. Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lm_head_share.py --model smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--length", type=int, default=110, help="padded positions per row")
    p.add_argument("--first", type=int, default=44, help="first position given logits")
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args(argv)
    import torch
    from transformers import AutoModelForCausalLM

    from reasonenv.agents.grpo import token_logprobs
    from reasonenv.models.assets import resolve_model

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(str(resolve_model(args.model)), dtype=torch.float32)
    model.train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (args.rows, args.length), generator=g)
    attn = torch.ones_like(ids)
    first = args.first

    def full() -> None:
        logp, _ = token_logprobs(model, ids, attn, 1.0, first=first)
        logp[:, first:].sum().backward()

    def backbone() -> None:
        hidden = model.model(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
        hidden[:, first:].sum().backward()

    times: dict[str, list[float]] = {"token_logprobs": [], "backbone only": []}
    for r in range(args.rounds + 1):  # round 0 warms up
        for name, fn in (("token_logprobs", full), ("backbone only", backbone)):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            fn()
            if r:
                times[name].append(time.perf_counter() - t0)
    f, b = times["token_logprobs"], times["backbone only"]
    share = [(x - y) / x for x, y in zip(f, b)]
    print(f"{args.model}, {args.rows} x {args.length} positions, logits from {first}, "
          f"{args.rounds} interleaved rounds")
    for name, xs in times.items():
        print(f"  {name}: {statistics.median(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f})")
    print(f"  LM head + log-softmax share of forward-backward: {100 * statistics.median(share):.0f} % "
          f"({100 * min(share):.0f}-{100 * max(share):.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
