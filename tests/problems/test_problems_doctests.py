"""Run the docstring examples of the public problem modules."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "reasonenv.problems",
    "reasonenv.problems._answers",
    "reasonenv.problems.datasets",
    "reasonenv.problems.factory",
    "reasonenv.problems.procedural",
    "reasonenv.problems.registry",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
