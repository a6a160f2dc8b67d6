"""Problem sources: procedural generators and benchmark datasets.

Example:
    >>> from reasonenv.problems import make_source
    >>> src = make_source("procedural:arithmetic?difficulty=1&seed=0")
    >>> src[0].question.startswith("What is")
    True

Importing this package does not import ``datasets`` or ``torch``; ``datasets`` is imported
only when a benchmark is actually loaded.
"""

from reasonenv.problems.base import Problem, ProblemSource
from reasonenv.problems.datasets import (
    DatasetSource,
    DatasetSpec,
    MissingFieldError,
    list_datasets,
    load_jsonl_problems,
    load_problems,
    register_dataset,
)
from reasonenv.problems.factory import make_source
from reasonenv.problems.procedural import KINDS, ProceduralSource
from reasonenv.problems.solutions import render_solution

__all__ = [
    "KINDS",
    "DatasetSource",
    "DatasetSpec",
    "MissingFieldError",
    "Problem",
    "ProblemSource",
    "ProceduralSource",
    "list_datasets",
    "load_jsonl_problems",
    "load_problems",
    "make_source",
    "register_dataset",
    "render_solution",
]
