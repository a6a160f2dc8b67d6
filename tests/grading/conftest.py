"""Shared fixtures for the grading tests: one worker pool for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reasonenv.grading import Grader


@pytest.fixture(scope="session")
def grader() -> Iterator[Grader]:
    g = Grader(n_workers=2, timeout=5.0)
    g.pool.start()
    yield g
    g.close()
