"""Outcome shaper: verified outcome, format penalty and brace-aware box counting."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasonenv.plugins.outcome import OutcomeShaper, count_boxed
from reasonenv.problems.base import Problem
from reasonenv.shaping.base import EpisodeRecord

PROBLEM = Problem(id="t/0", question="What is 1+1?", answer="2", source="test")


def record(text: str, outcome: float, reason: str) -> EpisodeRecord:
    return EpisodeRecord(
        slot=0,
        episode_id=0,
        problem=PROBLEM,
        prompt="p",
        steps=(text,),
        step_token_ids=(None,),
        step_logprobs=(None,),
        prompt_token_ids=None,
        outcome=outcome,
        verdict={"reason": reason},
        terminated=True,
    )


def test_contract():
    OutcomeShaper.validate_class()
    assert OutcomeShaper.hook_points() == ("episode",)
    assert OutcomeShaper.enters == "reward" and OutcomeShaper.services == ()
    assert OutcomeShaper.config_fields() == {"format_penalty": 0.0}
    assert OutcomeShaper(OutcomeShaper.Config(format_penalty=0.3)).bounds == (-0.3, 1.0)


@pytest.mark.parametrize(
    "text,n",
    [
        ("no box at all", 0),
        (r"\boxed{2}", 1),
        (r"\boxed{\frac{1}{2}}", 1),  # nested braces: one box ([^}]+ would stop early)
        (r"\boxed{a} then \boxed{b}", 2),
        (r"\boxed{\boxed{1}}", 1),  # a box inside a box belongs to it
        (r"\boxed{1} and \boxed{2", 1),  # truncated second box
        (r"\boxed{\{1, 2\}}", 1),  # escaped braces are literal
        (r"\fbox{3} \boxed 4", 2),  # fbox and the space form
        (r"\boxedx{3}", 0),  # not the \boxed command
        (r"\boxed{} \boxed{x}}", 2),
    ],
)
def test_count_boxed_cases(text, n):
    assert count_boxed(text) == n


FILLER = st.text(alphabet="ab 1=+.\n", max_size=8)
CONTENT = st.recursive(
    st.text(alphabet="0123456789+-x", max_size=4),
    lambda inner: st.builds(lambda a, b: "\\frac{" + a + "}{" + b + "}", inner, inner),
    max_leaves=6,
)


@given(parts=st.lists(st.tuples(FILLER, CONTENT), max_size=5), tail=FILLER)
def test_count_boxed_counts_built_boxes(parts, tail):
    text = "".join(f"{fill}\\boxed{{{content}}}" for fill, content in parts) + tail
    assert count_boxed(text) == len(parts)


def test_outcome_without_penalty():
    sh = OutcomeShaper()
    recs = [
        record(r"\boxed{2}", 1.0, "exact"),
        record("no idea", 0.0, "no_answer"),
        record(r"\boxed{1} \boxed{2}", 1.0, "exact"),
        record(r"\boxed{3}", 0.0, "mismatch"),
    ]
    assert sh.episode_end(recs) == [1.0, 0.0, 1.0, 0.0]


def test_format_penalty():
    sh = OutcomeShaper(OutcomeShaper.Config(format_penalty=0.25))
    recs = [
        record(r"\boxed{2}", 1.0, "exact"),
        record("no idea", 0.0, "no_answer"),
        record(r"\boxed{1} \boxed{2}", 1.0, "exact"),
        record(r"\boxed{3}", 0.0, "mismatch"),
        record(r"\boxed{\frac{1}{2}}", 0.0, "mismatch"),
    ]
    got = sh.episode_end(recs)
    assert got == [1.0, -0.25, 0.75, 0.0, 0.0]
    lo, hi = sh.bounds
    assert all(isinstance(x, float) and math.isfinite(x) and lo <= x <= hi for x in got)


def test_negative_penalty_rejected():
    with pytest.raises(ValueError, match="format_penalty"):
        OutcomeShaper.Config(format_penalty=-0.1)


def test_empty_batch():
    assert OutcomeShaper().episode_end([]) == []


def test_count_boxed_time_is_linear():
    """Each box used to rescan the whole response for its closing brace."""
    from reasonenv.testing import growth_ratio

    small, big = "\\boxed{1} " * 1_000, "\\boxed{1} " * 4_000
    ratio = growth_ratio(lambda: count_boxed(small), lambda: count_boxed(big))
    assert ratio < 8, f"4x the boxes took {ratio:.1f}x the time"
