"""Worked solutions and corrupted variants of the procedural problems, checked independently.

Each step's arithmetic is re-derived here from its text (no code shared with the generators):
the worked solution must be right at every step and grade correct; the corrupted one must be
wrong at exactly the recorded step, carry that error to a wrong final answer, and grade wrong.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from fractions import Fraction

import gymnasium as gym
import numpy as np
import pytest

import reasonenv
from reasonenv.problems import KINDS, Problem, ProceduralSource, render_solution

BASE_KINDS = [k for k in KINDS if k != "mixed"]
NUMBER = r"-?\d+(?:/\d+)?"
CLAUSE = re.compile(
    rf"(?P<a>\(?{NUMBER}\)?) (?P<op>[-+*/÷]) (?P<b>\(?{NUMBER}\)?) = (?P<c>{NUMBER})\.$"
)
FINAL = re.compile(rf"^The answer is \\boxed\{{(?P<x>{NUMBER})\}}\.$")
ALWAYS_GROUNDED = {"0", "1", "100"}  # "x = e - 0", a(x)/(-1) coefficients, "100 - percent"


def number(text: str) -> Fraction:
    text = text.strip("()")
    num, _, den = text.partition("/")
    return Fraction(int(num), int(den or 1))


def check_arithmetic(step: str) -> tuple[bool, str, str, str]:
    """(is the step's ``a op b = c`` right?, a, b, c) for one non-final step."""
    match = CLAUSE.search(step)
    assert match, f"step {step!r} does not end in 'a op b = c.'"
    assert not match["b"].startswith("-"), f"negative right operand must be (-n) in {step!r}"
    a, b, c = number(match["a"]), number(match["b"]), number(match["c"])
    op = match["op"]
    value = {"+": a + b, "-": a - b, "*": a * b}.get(op) if op not in "/÷" else a / b
    return value == c, match["a"], match["b"], match["c"]


def magnitude(text: str) -> str:
    return text.strip("()").lstrip("-")


def walk(steps: tuple[str, ...], question: str) -> tuple[list[bool], Fraction]:
    """Check every step: arithmetic (returned per step), grounding, and the final line."""
    assert 2 <= len(steps) <= 9, steps
    assert all("\n" not in s and s.strip() == s and s for s in steps), steps
    known = set(re.findall(r"\d+/\d+|\d+", question) + re.findall(r"\d+", question))
    known |= ALWAYS_GROUNDED
    right = []
    last = None
    for step in steps[:-1]:
        ok, a, b, c = check_arithmetic(step)
        # every operand comes from the question or from an earlier step's result
        for operand in (a, b):
            assert magnitude(operand) in known, (operand, step, steps, question)
        known.add(magnitude(c))
        right.append(ok)
        last = number(c)
    final = FINAL.match(steps[-1])
    assert final, steps[-1]
    assert number(final["x"]) == last, "the boxed answer must be the last step's result"
    return right, number(final["x"])


def problems(kind: str, difficulty: int) -> list[Problem]:
    out = []
    for seed in (0, 3, 2024):
        out += itertools.islice(ProceduralSource(kind, difficulty, seed=seed), 12)
    return out


@pytest.mark.parametrize("kind", BASE_KINDS)
@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_worked_solution_is_right_and_corruption_is_wrong_from_the_recorded_step(
    kind: str, difficulty: int
) -> None:
    for problem in problems(kind, difficulty):
        meta = problem.metadata
        solution, corrupted = meta["solution_steps"], meta["corrupted_steps"]
        assert isinstance(solution, tuple) and isinstance(corrupted, tuple)
        right, answer = walk(solution, problem.question)
        assert all(right), (solution, problem.question)
        assert answer == Fraction(problem.answer)
        assert reasonenv.grade(render_solution(solution), problem.answer).correct

        wrong_right, wrong_answer = walk(corrupted, problem.question)
        assert len(corrupted) == len(solution)
        first = meta["first_error_step"]
        assert wrong_right.index(False) == first, (corrupted, first)
        assert wrong_right.count(False) == 1  # later steps carry the error, computed correctly
        assert corrupted[:first] == solution[:first]
        assert wrong_answer != answer
        assert not reasonenv.grade(render_solution(corrupted), problem.answer).correct


def test_corruption_is_reproducible_and_the_same_for_indexed_and_sampled_problems() -> None:
    source = ProceduralSource("mixed", 3, seed=5)
    assert source[4].metadata == ProceduralSource("mixed", 3, seed=5)[4].metadata
    sampled = source.sample(np.random.default_rng(1))
    again = ProceduralSource("mixed", 3, seed=99).sample(np.random.default_rng(1))
    assert sampled.metadata["corrupted_steps"] == again.metadata["corrupted_steps"]


def test_the_corrupted_step_and_the_error_size_are_spread_out() -> None:
    chains = list(itertools.islice(ProceduralSource("chained_sums", 5, seed=8), 200))
    positions = Counter(p.metadata["first_error_step"] for p in chains)
    assert sorted(positions) == list(range(8))  # every one of the 8 sums gets corrupted
    assert min(positions.values()) >= 10  # about 25 each if uniform
    errors = Counter()
    for p in chains:
        k = p.metadata["first_error_step"]
        _, _, _, shown = check_arithmetic(p.metadata["corrupted_steps"][k])
        _, _, _, true = check_arithmetic(p.metadata["solution_steps"][k])
        errors[number(shown) - number(true)] += 1
    assert set(errors) == {-10, -2, -1, 1, 2, 10}


def test_problem_stream_of_a_seed_is_unchanged_by_the_worked_solutions() -> None:
    # Pinned before worked solutions existed: their extra draws must not shift the stream.
    got = [(p.question, p.answer) for p in itertools.islice(ProceduralSource("mixed", 3, seed=0), 3)]
    assert got == [
        ("There are 7 bags with 7 cookies in each bag. How many cookies are there in total?", "49"),
        ("Solve for x: 7x + 3 = 73", "10"),
        ("Ben buys 8 packs of pencils with 11 pencils in each pack. Then he gives away 14 "
         "pencils. How many pencils does Ben have now?", "74"),
    ]
    sample = ProceduralSource("fractions", 5, seed=0)[1]
    assert (sample.question, sample.answer) == (
        "What is (9/7) ÷ (11/6) ÷ (-32/18) * (4/3)? Give your answer as a fraction in lowest "
        "terms.", "-81/154")


def test_step_counts_grow_with_difficulty() -> None:
    def steps(kind: str, level: int) -> list[int]:
        return [len(p.metadata["solution_steps"]) for p in problems(kind, level)]

    assert set(steps("arithmetic", 1)) == {2}
    assert set(steps("chained_sums", 1)) == {3}
    assert set(steps("chained_sums", 5)) == {9}
    assert max(steps("arithmetic", 5)) >= 4
    assert min(steps("linear_equation", 5)) >= 4  # expand, collect, move, divide, answer


@pytest.mark.parametrize("sep,split", [("\n\n", "\n\n"), ("\n", "\n")])
@pytest.mark.parametrize("kind", BASE_KINDS)
def test_env_segmenter_cuts_the_rendered_solution_into_the_same_steps(
    kind: str, sep: str, split: str
) -> None:
    chosen = [ProceduralSource(kind, level, seed=1)[0] for level in (1, 3, 5)]
    env = gym.make("reasonenv/MathSteps-v0", problems=chosen, split=split).unwrapped
    for problem in chosen:
        for key in ("solution_steps", "corrupted_steps"):
            steps = problem.metadata[key]
            records = env.score_response(render_solution(steps, sep=sep), problem=problem)
            assert len(records) == len(steps), (steps, records)
            assert records[-1].terminated
    env.close()


def test_render_solution_rejects_what_the_segmenter_would_cut_differently() -> None:
    assert render_solution(["a", "b"], sep="\n") == "a\nb"
    for bad in ([], ["a\nb"], [""], ["a", "  "]):
        with pytest.raises(ValueError):
            render_solution(bad)
    with pytest.raises(ValueError, match="sep"):
        render_solution(["a"], sep=" ")
