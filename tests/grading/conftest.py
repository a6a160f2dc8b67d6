"""Shared fixtures for the grading tests: one worker pool for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reasonenv.grading import Grader


@pytest.fixture(scope="session")
def grader() -> Iterator[Grader]:
    g = Grader(n_workers=2, timeout=10.0)  # generous: the shared test machine can be overloaded
    g.pool.start()
    yield g
    g.close()
