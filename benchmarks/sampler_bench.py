"""Sampling one token per row: ``torch.multinomial`` against the inverse-CDF sampler.

Both take the same (N, V) probabilities (a softmax of random logits) and draw one token per row
with a seeded generator, as ``HFPolicy`` does at every generated token. The vocabularies are the
testbed's char tokenizer and SmolLM2's (49,152); rows as in the trainer configs (64 = 8 x 8 on
the tiny model, 8 = 2 x 4 on SmolLM2). Interleaved rounds, medians (min-max) of microseconds
per call, and the per-round ratio.

    .venv/bin/python benchmarks/sampler_bench.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import interleave, machine_note, med, paired  # noqa: E402
from _docs import replace_section  # noqa: E402

HEADING = "## Sampling one token (`benchmarks/sampler_bench.py`)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=200, help="calls per contender per round")
    ap.add_argument("--no-docs", action="store_true")
    a = ap.parse_args()
    for flag, v in (("--rounds", a.rounds), ("--calls", a.calls)):
        if v < 1:
            ap.error(f"{flag} must be >= 1, got {v}")
    import torch

    from reasonenv.models.sampler import sample_categorical
    from reasonenv.tokenizers import char_tokenizer

    torch.set_num_threads(1)
    shapes = [("tiny char vocabulary", 64, len(char_tokenizer())), ("SmolLM2 vocabulary", 8, 49152)]
    rows_out = []
    for label, n, v in shapes:
        probs = torch.softmax(torch.randn(n, v, generator=torch.Generator().manual_seed(0)), -1)
        g = torch.Generator().manual_seed(1)

        def run(fn, probs=probs, g=g):
            t0 = time.perf_counter()
            for _ in range(a.calls):
                fn(probs, g)
            return {"us": (time.perf_counter() - t0) / a.calls * 1e6}

        res = interleave({
            "multinomial": lambda: run(lambda p, gen: torch.multinomial(p, 1, generator=gen)),
            "inverse CDF": lambda: run(sample_categorical),
        }, a.rounds)
        m = [r["us"] for r in res["multinomial"]]
        c = [r["us"] for r in res["inverse CDF"]]
        rows_out.append(f"| {label} | {n} x {v} | {med(m, '{:.0f}')} | {med(c, '{:.0f}')} | "
                        f"{paired(m, c, '{:.2f}')}x |")
    body = "\n".join([
        f"One token per row from (N, V) probabilities, a seeded generator, {a.calls} calls per "
        f"contender per round, {a.rounds} interleaved rounds. {machine_note()}.",
        "",
        "| vocabulary | N x V | `torch.multinomial`, us per call | `sample_categorical` "
        "(inverse CDF), us per call | multinomial / inverse CDF (paired) |",
        "|---|---|---|---|---|",
        *rows_out,
        "",
        "On CPU `torch.multinomial(p, 1)` draws V exponential variates per row and takes the "
        "arg-max of p / E (the exponential race), so its cost is V random numbers per row. "
        "`reasonenv.models.sampler.sample_categorical` draws one uniform per row and "
        "binary-searches the float64 running sum; tests/test_sampling.py checks that its "
        "frequencies follow the target distribution (chi-square, 1e-6 level), that "
        "zero-weight tokens are never drawn even at the extreme uniforms, and that it agrees "
        "with `torch.multinomial`. `HFPolicy` and `HFSampler` use it.",
        "",
        "Reproduce: `.venv/bin/python benchmarks/sampler_bench.py`",
    ])
    print(body)
    if not a.no_docs:
        replace_section(HEADING, body)


if __name__ == "__main__":
    main()
