"""make_source: spec grammar, passthrough, lists, and error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reasonenv.problems import DatasetSource, Problem, ProblemSource, ProceduralSource, make_source


@pytest.mark.parametrize(
    ("spec", "kind", "difficulty"),
    [
        ("procedural", "arithmetic", 1),
        ("procedural:arithmetic", "arithmetic", 1),
        ("procedural:linear_equation?difficulty=2", "linear_equation", 2),
        (" procedural : fractions ? difficulty = 4 ", "fractions", 4),
        ("procedural:mixed?difficulty=5&seed=3", "mixed", 5),
    ],
)
def test_procedural_specs(spec: str, kind: str, difficulty: int) -> None:
    source = make_source(spec)
    assert isinstance(source, ProceduralSource)
    assert (source.kind, source.difficulty) == (kind, difficulty)
    assert isinstance(source.sample(np.random.default_rng(0)), Problem)


def test_procedural_seed_param_is_reproducible() -> None:
    a, b = (
        make_source("procedural:word_problem?seed=9"),
        make_source("procedural:word_problem?seed=9"),
    )
    assert a.seed == 9 and a[3] == b[3] == ProceduralSource("word_problem", 1, seed=9)[3]


@pytest.mark.parametrize(
    ("spec", "name", "split", "count"),
    [
        ("gsm8k", "gsm8k", "test", 1319),
        ("gsm8k:train", "gsm8k", "train", 7473),
        ("math500", "math500", "test", 500),
        ("ocw", "minerva", "test", 272),
        ("math:test?limit=25", "math", "test", 25),
    ],
)
def test_dataset_specs(spec: str, name: str, split: str, count: int) -> None:
    source = make_source(spec)
    assert isinstance(source, DatasetSource)
    assert (source.name, source.split, len(source)) == (name, split, count)


def test_dataset_spec_with_path(fixtures_dir: Path) -> None:
    source = make_source(f"amc23?path={fixtures_dir / 'amc23.jsonl'}&limit=2")
    assert [p.answer for p in source] == ["27", "0.5"]


def test_passthrough_and_lists() -> None:
    procedural = ProceduralSource("fractions", 2, seed=1)
    assert make_source(procedural) is procedural
    problems = [Problem(f"mine/{i}", f"What is {i} + 1?", str(i + 1), "mine") for i in range(3)]
    wrapped = make_source(problems)
    assert isinstance(wrapped, ProblemSource) and list(wrapped) == problems
    assert make_source(problems[0])[0] is problems[0]
    assert make_source(tuple(problems)).sample(np.random.default_rng(1)) in problems


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("procedural:quadratics", r"kind.*'quadratics'.*arithmetic"),
        ("procedural?difficulty=7", r"difficulty=7.*1, 2, 3, 4, 5"),
        ("procedural?difficulty=hard", r"difficulty='hard'.*must be an int"),
        ("procedural?level=2", r"Unknown parameter 'level'.*difficulty, seed"),
        ("procedural?difficulty", r"Bad parameter 'difficulty'"),
        ("gsm8k?split=train", r"Unknown parameter 'split'.*limit, path"),
        ("gsm8k:dev", r"Unknown split 'dev'.*train, test"),
        ("nope", r"Unknown dataset 'nope'.*gsm8k"),
        (":test", r"Empty source name"),
    ],
)
def test_bad_specs(spec: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        make_source(spec)


def test_bad_types() -> None:
    with pytest.raises(ValueError, match="empty"):
        make_source([])
    with pytest.raises(TypeError, match="ProblemSource"):
        make_source(42)
    with pytest.raises(TypeError, match="Problem"):
        make_source(["not a problem"])
