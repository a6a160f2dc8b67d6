"""The envs' cost grows linearly with the response (issue 10, "Bounded time").

Each timing test runs the same call on a text and on 4x that text, best of a few interleaved
runs (CPU time), and asserts the ratio stays far below the 16x a quadratic path costs. No
wall-clock bounds. The last test checks that the fast path bounds each step by
``max_step_chars`` exactly as stepping does.
"""

from __future__ import annotations

import gymnasium as gym
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reasonenv  # noqa: F401  (registers the envs)
from reasonenv.problems import Problem
from reasonenv.testing import growth_ratio
from tests.conftest import step_segments

PROBLEM = Problem(id="t/0", question="What is 2 + 3?", answer="5", source="test")
LIMIT = 8  # linear is ~4x; quadratic 16x; the margin absorbs a shared machine's noise


def no_delimiter(n: int) -> str:
    return ("Adding the numbers one by one gives the total. " * n)[:n]


def short_steps(n: int) -> str:
    return ("Step: 2 + 3 = 5.\n\n" * n)[:n]


def open_box(n: int) -> str:
    return ("So \\boxed{x + {y} - \\{z " * n)[:n]  # the first box never closes


@pytest.mark.parametrize("make", [no_delimiter, short_steps, open_box], ids=lambda f: f.__name__)
def test_score_response_time_is_linear(make):
    """Default limits: the first max_steps steps are scored, a too-long step is cut, and the
    rest of the response costs only the segmenting and final-answer scan."""
    env = gym.make("reasonenv/MathSteps-v0").unwrapped
    small, big = make(20_000), make(80_000)
    ratio = growth_ratio(lambda: env.score_response(small, problem=PROBLEM),
                         lambda: env.score_response(big, problem=PROBLEM))
    assert ratio < LIMIT, f"{make.__name__}: 4x the text took {ratio:.1f}x the time"


def test_score_response_with_tokens_time_is_linear(tiny_tok):
    env = gym.make("reasonenv/MathSteps-v0", tokenizer=tiny_tok).unwrapped
    small, big = (tiny_tok.encode(no_delimiter(n), add_special_tokens=False) for n in (5_000, 20_000))
    ratio = growth_ratio(lambda: env.score_response("", token_ids=small, problem=PROBLEM),
                         lambda: env.score_response("", token_ids=big, problem=PROBLEM), repeats=3)
    assert ratio < LIMIT, f"4x the tokens took {ratio:.1f}x the time"


def _step_through(env, steps: list[str]) -> None:
    env.reset(options={"problem": PROBLEM})
    for s in steps:
        env.step(s)


STEP = "We add the next term to the running total and carry on with the sum, line by line.\n\n"


@pytest.mark.parametrize(
    "first", ["", "So \\boxed{x + "], ids=["plain", "box opened in the first step"]
)
def test_stepping_time_is_linear(first):
    """Many short steps (~90 characters), all within the limits, with or without a box that
    stays open: each step reads only its own text for the final-answer check."""
    env = gym.make("reasonenv/MathSteps-v0", max_steps=10**6, max_tokens=10**9).unwrapped
    small = [first + STEP] + [STEP] * 399
    big = [first + STEP] + [STEP] * 1599
    ratio = growth_ratio(lambda: _step_through(env, small), lambda: _step_through(env, big))
    assert ratio < LIMIT, f"4x the steps took {ratio:.1f}x the time"


def test_token_stepping_time_is_linear(tiny_tok):
    """MathTokens-v0, one token at a time, inside one long step with an open box."""
    ids = tiny_tok.encode(open_box(8_000), add_special_tokens=False)
    env = gym.make("reasonenv/MathTokens-v0", tokenizer=tiny_tok, max_tokens=len(ids) + 1).unwrapped

    def run(k: int) -> None:
        env.reset(options={"problem": PROBLEM})
        for t in ids[:k]:
            env.step(t)

    ratio = growth_ratio(lambda: run(len(ids) // 4), lambda: run(len(ids)), repeats=3)
    assert ratio < LIMIT, f"4x the tokens took {ratio:.1f}x the time"


LONG_PARTS = st.sampled_from(
    ["Add them.\n\n", "x" * 30, "y " * 20 + "\n\n", "The answer is 5.\n", "\\boxed{" + "z" * 25 + "5}",
     "#### 5\n", "\n\n", "So \\boxed{5}"]
)


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(LONG_PARTS, min_size=1, max_size=8), max_step_chars=st.integers(5, 40))
def test_fast_path_cuts_long_steps_as_stepping_does(parts, max_step_chars):
    """A segment over max_step_chars is cut and truncates the episode in both paths, and a
    final answer beyond the cut does not count."""
    env = gym.make("reasonenv/MathSteps-v0", max_steps=8, max_step_chars=max_step_chars).unwrapped
    response = "".join(parts)
    fast = env.score_response(response, problem=PROBLEM)
    stepped = step_segments(env, response, PROBLEM)
    assert [(f.reward, f.terminated, f.truncated, f.info) for f in fast] == stepped
