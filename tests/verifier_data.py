"""Shared data of the verifier tests: a learnable synthetic collection (tests/ is on sys.path)."""

from __future__ import annotations

import random

TEMPLATE = "Q: {question}\nA:\n"
GOOD, BAD = "good\n\n", "bad\n\n"


def synthetic_records(n: int, seed: int = 0, m: int = 8) -> list[dict]:
    """A learnable task: after a "good" step 7 of 8 continuations succeed, after "bad" 1 of 8;
    the response is correct iff its last worked step is good."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = f"What is {i}?"
        steps = [rng.choice([GOOD, BAD]) for _ in range(rng.randint(1, 3))]
        outcome = int(steps[-1] == GOOD)
        c = [4] + [7 if s == GOOD else 1 for s in steps] + [m * outcome]
        out.append({"problem_id": f"p{i}", "sample": 0, "benchmark": "syn", "question": q,
                    "answer": "1", "prompt": TEMPLATE.format(question=q),
                    "steps": [*steps, "so \\boxed{1}."], "outcome": outcome, "m": m, "c": c})
    return out
