"""The Problem record and the ProblemSource protocol every source satisfies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Problem:
    """One math problem with its gold answer.

    Attributes:
        id: Stable identifier, unique within its source (e.g. ``"gsm8k/test/17"``).
        question: The problem statement shown to the policy.
        answer: The gold final answer as a string (LaTeX allowed), compared by the grader.
        source: Name of the source that produced it (e.g. ``"gsm8k"``, ``"procedural/arithmetic"``).
        metadata: Free-form extra fields (difficulty, level, subject, ...). Read-only.

    Example:
        >>> p = Problem(id="demo/0", question="What is 2+3?", answer="5", source="demo")
        >>> p.answer
        '5'
    """

    id: str
    question: str
    answer: str
    source: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("id", "question", "answer", "source"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"Problem.{name} must be a str, got {type(value).__name__}: {value!r}")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))


@runtime_checkable
class ProblemSource(Protocol):
    """Anything the environment can draw problems from.

    ``sample`` must draw using only the given generator so that seeding the env through
    gymnasium's ``np_random`` makes episodes reproducible. Finite sources also support ``len``
    and indexing, which evaluation uses to walk a benchmark in order.
    """

    name: str

    def sample(self, rng: np.random.Generator) -> Problem:
        """Draw one problem using ``rng`` as the only source of randomness."""
        ...
