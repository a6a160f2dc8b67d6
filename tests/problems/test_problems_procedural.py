"""Procedural generators: exact answers, determinism, difficulty scaling, errors."""

from __future__ import annotations

import itertools
import re
import statistics
from collections import Counter

import numpy as np
import pytest
from _problem_checks import check_problem, exact_eval, parse_answer, solve_story
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonenv.problems import KINDS, Problem, ProblemSource, ProceduralSource

BASE_KINDS = [k for k in KINDS if k != "mixed"]
LEVELS = [1, 2, 3, 4, 5]


@pytest.mark.parametrize("kind", BASE_KINDS)
@pytest.mark.parametrize("difficulty", LEVELS)
def test_gold_answers_verified_independently(kind: str, difficulty: int) -> None:
    source = ProceduralSource(kind, difficulty, seed=difficulty * 101)
    for problem in itertools.islice(source, 60):
        assert problem.metadata["kind"] == kind
        assert problem.metadata["difficulty"] == difficulty
        check_problem(problem)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    difficulty=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    index=st.integers(0, 10**9),
)
def test_property_indexed_answers_are_exact(
    kind: str, difficulty: int, seed: int, index: int
) -> None:
    problem = ProceduralSource(kind, difficulty, seed=seed)[index]
    check_problem(problem)
    assert problem.id == f"procedural/{kind}/d{difficulty}/{seed}/{index}"


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(KINDS), difficulty=st.integers(1, 5), rng_seed=st.integers(0, 2**63))
def test_property_sampled_answers_are_exact(kind: str, difficulty: int, rng_seed: int) -> None:
    source = ProceduralSource(kind, difficulty, seed=0)
    first = source.sample(np.random.default_rng(rng_seed))
    check_problem(first)
    assert first == source.sample(np.random.default_rng(rng_seed))
    assert first.id.startswith(f"procedural/{kind}/d{difficulty}/h")


def test_arithmetic_recomputed_from_operands() -> None:
    for problem in itertools.islice(ProceduralSource("arithmetic", 4, seed=3), 100):
        meta = problem.metadata
        operands, ops = meta["operands"], meta["operators"]
        assert len(ops) == len(operands) - 1
        rebuilt = str(operands[0]) + "".join(
            f" {o} {v}" for o, v in zip(ops, operands[1:], strict=True)
        )
        assert exact_eval(rebuilt) == parse_answer(problem.answer)  # level 4 has no parentheses
        assert meta["expression"] in problem.question


@pytest.mark.parametrize("difficulty", LEVELS)
def test_word_problem_answers_follow_from_the_story_text(difficulty: int) -> None:
    templates = set()
    for problem in itertools.islice(ProceduralSource("word_problem", difficulty, seed=21), 150):
        assert solve_story(problem.question) == parse_answer(problem.answer), problem.question
        templates.add(problem.metadata["template"])
    assert len(templates) >= 3  # several templates per level


@pytest.mark.parametrize("difficulty", [1, 2])
def test_easy_chains_never_go_negative(difficulty: int) -> None:
    for problem in itertools.islice(ProceduralSource("chained_sums", difficulty, seed=5), 300):
        running = 0
        for term in problem.metadata["terms"]:
            running += term
            assert running >= 0, problem.question


def test_difficulty_one_is_single_digit_addition() -> None:
    for problem in itertools.islice(ProceduralSource("arithmetic", 1, seed=11), 200):
        match = re.fullmatch(r"What is (\d) \+ (\d)\?", problem.question)
        assert match, problem.question
        assert int(problem.answer) == int(match.group(1)) + int(match.group(2)) <= 18
    for problem in itertools.islice(ProceduralSource("word_problem", 1, seed=11), 100):
        assert int(problem.answer) <= 18
        assert all(int(n) <= 9 for n in re.findall(r"\d+", problem.question))
    for problem in itertools.islice(ProceduralSource("linear_equation", 1, seed=11), 100):
        assert re.fullmatch(r"Solve for x: x \+ \d = \d+", problem.question), problem.question


def test_same_seed_same_problems_different_seed_differs() -> None:
    for kind in KINDS:
        a = [ProceduralSource(kind, 3, seed=42)[i] for i in range(25)]
        b = list(itertools.islice(ProceduralSource(kind, 3, seed=42), 25))
        c = [ProceduralSource(kind, 3, seed=43)[i] for i in range(25)]
        assert a == b
        assert [p.question for p in a] != [p.question for p in c]
        assert len({p.id for p in a}) == 25


def test_sample_uses_only_the_given_rng() -> None:
    source = ProceduralSource("mixed", 2, seed=5)
    np.random.seed(0)
    first = [source.sample(np.random.default_rng(9)) for _ in range(3)]
    np.random.seed(1)
    second = [source.sample(np.random.default_rng(9)) for _ in range(3)]
    assert first == second
    rng = np.random.default_rng(9)
    stream = [source.sample(rng) for _ in range(20)]
    assert len({p.question for p in stream}) > 10  # the rng advances between draws


def test_unseeded_source_is_still_reproducible_from_its_seed() -> None:
    source = ProceduralSource("fractions", 2)
    assert isinstance(source.seed, int) and source.seed >= 0
    assert source[7] == ProceduralSource("fractions", 2, seed=source.seed)[7]


def _mean(kind: str, difficulty: int, key) -> float:  # noqa: ANN001
    problems = itertools.islice(ProceduralSource(kind, difficulty, seed=0), 150)
    return statistics.fmean(key(p) for p in problems)


def test_difficulty_grows_problem_size() -> None:
    ops = [_mean("arithmetic", d, lambda p: p.metadata["num_operands"]) for d in LEVELS]
    digits = [_mean("arithmetic", d, lambda p: p.metadata["max_digits"]) for d in LEVELS]
    terms = [_mean("chained_sums", d, lambda p: p.metadata["num_terms"]) for d in LEVELS]
    dens = [_mean("fractions", d, lambda p: p.metadata["max_denominator"]) for d in LEVELS]
    sizes = [_mean("word_problem", d, lambda p: abs(int(p.answer))) for d in LEVELS]
    for series in (ops, digits, terms, dens):
        assert all(x <= y for x, y in zip(series, series[1:], strict=False)), series
        assert series[-1] > series[0]
    assert terms == sorted(set(terms))  # strictly increasing chain length
    assert sizes[0] < sizes[2] < sizes[4]
    both = [_mean("linear_equation", d, lambda p: p.metadata["both_sides"]) for d in LEVELS]
    assert both[:3] == [0, 0, 0] and both[3:] == [1, 1]


def test_mixed_draws_every_kind() -> None:
    kinds = Counter(
        p.metadata["kind"] for p in itertools.islice(ProceduralSource("mixed", 2, seed=1), 300)
    )
    assert set(kinds) == set(BASE_KINDS)
    assert min(kinds.values()) > 30


def test_fraction_answers_are_reduced_and_formatted() -> None:
    seen_fraction = seen_negative = False
    for problem in itertools.islice(ProceduralSource("fractions", 5, seed=2), 200):
        value = parse_answer(problem.answer)  # asserts lowest terms
        seen_fraction |= value.denominator != 1
        seen_negative |= value < 0
        assert "/" not in problem.answer or value.denominator != 1
    assert seen_fraction and seen_negative


def test_problem_records_and_protocol() -> None:
    source = ProceduralSource("word_problem", 3, seed=8)
    assert isinstance(source, ProblemSource)
    assert source.name == "procedural/word_problem"
    problem = source[0]
    assert isinstance(problem, Problem) and problem.source == source.name
    with pytest.raises(TypeError):
        problem.metadata["kind"] = "x"  # read-only metadata


@pytest.mark.parametrize("bad", ["bogus", "", None, 3])
def test_bad_kind_error_names_field_value_and_choices(bad: object) -> None:
    with pytest.raises(ValueError) as info:
        ProceduralSource(bad, 1)  # type: ignore[arg-type]
    message = str(info.value)
    assert "kind" in message and repr(bad) in message
    for kind in KINDS:
        assert kind in message


@pytest.mark.parametrize("bad", [0, 6, -1, "2", 2.0, True])
def test_bad_difficulty_error_names_field_value_and_choices(bad: object) -> None:
    with pytest.raises(ValueError) as info:
        ProceduralSource("arithmetic", bad)  # type: ignore[arg-type]
    message = str(info.value)
    assert "difficulty" in message and repr(bad) in message and "1, 2, 3, 4, 5" in message


def test_difficulty_setter_validates_and_changes_output() -> None:
    source = ProceduralSource("chained_sums", 1, seed=4)
    easy = source[0]
    source.difficulty = 5
    assert source[0].metadata["num_terms"] == 9 != easy.metadata["num_terms"]
    with pytest.raises(ValueError, match="difficulty"):
        source.difficulty = 9


@pytest.mark.parametrize("bad", [-1, "7", 1.5])
def test_bad_seed_and_index(bad: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        ProceduralSource("arithmetic", 1, seed=bad)  # type: ignore[arg-type]
    source = ProceduralSource("arithmetic", 1, seed=0)
    with pytest.raises((IndexError, TypeError)):
        source[bad]  # type: ignore[index]


def test_terms_sets_the_chain_length_and_keeps_the_level_operands() -> None:
    from reasonenv.problems import make_source

    source = make_source("procedural:chained_sums?difficulty=1&terms=5&seed=3")
    assert source.terms == 5 and "terms=5" in repr(source)
    for problem in itertools.islice(source, 200):
        terms = problem.metadata["terms"]
        assert len(terms) == 5 == problem.metadata["num_terms"]
        assert all(1 <= abs(t) <= 9 for t in terms)  # difficulty 1's operand range
        assert all(sum(terms[:k]) >= 0 for k in range(1, 6))  # and its non-negative chains
        assert int(problem.answer) == sum(terms)
        assert len(problem.metadata["solution_steps"]) == 5  # four running sums and the answer
        assert "/d1t5/" in problem.id
    # a chain length is part of the id: the default level's ids never collide with it
    assert ProceduralSource("chained_sums", 1, seed=3)[0].id == "procedural/chained_sums/d1/3/0"
    assert source[0].id == "procedural/chained_sums/d1t5/3/0"
    sampled = source.sample(np.random.default_rng(0))
    assert sampled.id.startswith("procedural/chained_sums/d1t5/h")


@pytest.mark.parametrize("bad", [1, 13, True, "5", 2.5])
def test_bad_terms_error_names_field_and_value(bad: object) -> None:
    with pytest.raises(ValueError) as info:
        ProceduralSource("chained_sums", 1, seed=0, terms=bad)  # type: ignore[arg-type]
    assert "terms" in str(info.value) and repr(bad) in str(info.value)


def test_terms_is_only_for_chained_sums() -> None:
    from reasonenv.problems import make_source

    with pytest.raises(ValueError, match="terms=3 is only for kind 'chained_sums'"):
        make_source("procedural:arithmetic?terms=3")
