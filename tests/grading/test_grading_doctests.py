"""Run the docstring examples of every grading module (they are part of the documentation)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "verdict",
    "extract",
    "normalize",
    "parse",
    "compare",
    "symbolic",
    "pool",
    "grader",
    "cli",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"reasonenv.grading.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL)
    assert result.failed == 0


def test_package_docstring_example() -> None:
    import reasonenv.grading

    assert doctest.testmod(reasonenv.grading).failed == 0
