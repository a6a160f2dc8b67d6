"""Build a :class:`~reasonenv.shaping.protocols.Services` from a plain spec (dict, YAML, CLI).

Spec keys (all optional):

* ``"ref_model"``: a ``RefLogprobScorer``; ``"hash"`` (:class:`HashRefScorer`); or a model
  name/path (:class:`~reasonenv.models.ref_scorer.HFRefScorer`); or a dict
  ``{"model": name, **HFRefScorer kwargs}``.
* ``"prm"``: a ``PRMScorer``; ``"heuristic"`` (:class:`HeuristicPRM`); or a dict
  ``{"model": path, "kind": "step_tag" | "quantile", **kwargs}`` (``"kind"`` defaults to
  ``"step_tag"``: :class:`HFStepPRM`; ``"quantile"``: :meth:`QuantileHeadPRM.from_pretrained`).
* ``"prover"``: a ``ProverService``; or a dict ``{"model": name, "temperature": 1.0,
  "top_p": 1.0, "max_new_tokens": 256, "batch_size": 8, "seed": 0, "cache_size": 100000}`` for
  ``MCProver(HFSampler(...))``; or ``{"value_head": path, "batch_size": 8, "max_length": ...,
  "dtype": "float32"}`` for a learned verifier,
  :meth:`~reasonenv.models.value_head.ValueHeadProver.from_pretrained` (the folder
  ``reasonenv verifier train --kind value`` writes; it answers only the ``K`` it was trained
  for). Best-of-K's ``K`` and the ``m`` continuations per prefix are options of the ``pav``
  shaper (it passes them on every call), not of the prover.
* ``"grader"``: a ``grade_batch``-like callable (default :func:`reasonenv.grading.grade_batch`).

Importing this module does not import torch; model-backed services import it when built.

Example:
    >>> svc = build_services({"ref_model": "hash", "prm": "heuristic"})
    >>> type(svc.ref_logprobs).__name__, type(svc.prm).__name__, svc.prover is None
    ('HashRefScorer', 'HeuristicPRM', True)
    >>> build_services({"reward_model": "x"})
    Traceback (most recent call last):
    ...
    ValueError: unknown services key 'reward_model'; valid keys: ['grader', 'prm', 'prover', 'ref_model']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reasonenv.shaping.fake_services import HashRefScorer, HeuristicPRM
from reasonenv.shaping.protocols import PRMScorer, ProverService, RefLogprobScorer, Services
from reasonenv.shaping.prover import MCProver

VALID_KEYS = ("grader", "prm", "prover", "ref_model")
_PROVER_SAMPLER_KEYS = ("temperature", "top_p", "max_new_tokens", "batch_size", "dtype")
_PROVER_KEYS = ("model", "seed", "cache_size", "max_prefix_chars", "last_number_fallback",
                *_PROVER_SAMPLER_KEYS)
_VALUE_HEAD_KEYS = ("value_head", "batch_size", "max_length", "dtype")


def _bad(key: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"services[{key!r}]={value!r} is not valid; expected {expected}")


def _ref_plan(value: Any) -> tuple[str, Any]:
    """What a ``ref_model`` value builds: ("hash", None), ("hf", (model, kwargs)), ("ready", obj)."""
    expected = '"hash", a model name/path, {"model": ..., **HFRefScorer kwargs}, or a RefLogprobScorer'
    if isinstance(value, str):
        if value == "hash":
            return "hash", None
        if not value.strip():
            raise _bad("ref_model", value, expected)
        return "hf", (value, {})
    if isinstance(value, Mapping):
        kw = dict(value)
        if not isinstance(kw.get("model"), str):
            raise _bad("ref_model", value, expected + ' (a dict needs "model")')
        return "hf", (kw.pop("model"), kw)
    if isinstance(value, RefLogprobScorer):
        return "ready", value
    raise _bad("ref_model", value, expected)


def _ref(value: Any) -> RefLogprobScorer:
    kind, arg = _ref_plan(value)
    if kind == "hash":
        return HashRefScorer()
    if kind == "ready":
        return arg
    from reasonenv.models.ref_scorer import HFRefScorer

    model, kw = arg
    return HFRefScorer(model, **kw)


def _prm_plan(value: Any) -> tuple[str, Any]:
    """What a ``prm`` value builds: ("heuristic", None), ("step_tag" | "quantile", (model,
    kwargs)) or ("ready", obj)."""
    expected = '"heuristic", {"model": path, "kind": "step_tag" | "quantile", ...}, or a PRMScorer'
    if value == "heuristic":
        return "heuristic", None
    if isinstance(value, Mapping):
        kw = dict(value)
        kind = kw.pop("kind", "step_tag")
        model = kw.pop("model", None)
        if not isinstance(model, str) or kind not in ("step_tag", "quantile"):
            raise _bad("prm", value, expected)
        return kind, (model, kw)
    if not isinstance(value, str) and isinstance(value, PRMScorer):
        return "ready", value
    raise _bad("prm", value, expected)


def _prm(value: Any) -> PRMScorer:
    kind, arg = _prm_plan(value)
    if kind == "heuristic":
        return HeuristicPRM()
    if kind == "ready":
        return arg
    from reasonenv.models.prm import HFStepPRM, QuantileHeadPRM

    model, kw = arg
    if kind == "quantile":
        return QuantileHeadPRM.from_pretrained(model, **kw)
    return HFStepPRM(model, **kw)


def _value_head_plan(kw: dict[str, Any]) -> tuple[str, Any]:
    """("value_head", kwargs) from a ``{"value_head": path, ...}`` prover spec, checked."""
    unknown = sorted(set(kw) - set(_VALUE_HEAD_KEYS))
    if unknown:
        raise ValueError(f"unknown services['prover'] key(s) {unknown} with 'value_head'; "
                         f"valid: {sorted(_VALUE_HEAD_KEYS)}")
    path = kw["value_head"]
    if not isinstance(path, str) or not path.strip():
        raise _bad("prover", {"value_head": path}, '{"value_head": "<folder>"}')
    return "value_head", kw


def _prover_plan(value: Any) -> tuple[str, Any]:
    """What a ``prover`` value builds: ("mc", kwargs), ("value_head", kwargs) or ("ready", obj)."""
    expected = ('{"model": name/path, "temperature": ..., "max_new_tokens": ...}, '
                '{"value_head": folder}, or a ProverService')
    if isinstance(value, Mapping):
        kw = dict(value)
        if "value_head" in kw:
            return _value_head_plan(kw)
        unknown = sorted(set(kw) - set(_PROVER_KEYS))
        if {"K", "m"} & set(unknown):
            raise ValueError(
                f"services['prover'] got {sorted({'K', 'm'} & set(unknown))}: K and m are options of "
                "the pav shaper (shapers=[{'name': 'pav', 'K': 4, 'm': 20}]), not of the prover"
            )
        if unknown:
            raise ValueError(f"unknown services['prover'] key(s) {unknown}; valid: {sorted(_PROVER_KEYS)}")
        if not isinstance(kw.get("model"), str):
            raise _bad("prover", value, expected + ' (a dict needs "model")')
        return "mc", kw
    if isinstance(value, ProverService):
        return "ready", value
    raise _bad("prover", value, expected)


def _prover(value: Any) -> ProverService:
    kind, kw = _prover_plan(value)
    if kind == "ready":
        return kw
    if kind == "value_head":
        from reasonenv.models.value_head import ValueHeadProver

        path = kw.pop("value_head")
        return ValueHeadProver.from_pretrained(path, **kw)
    from reasonenv.models.sampler import HFSampler

    sampler = HFSampler(kw["model"], **{k: kw[k] for k in _PROVER_SAMPLER_KEYS if k in kw})
    grader = None
    if kw.get("last_number_fallback"):  # grade continuations as a lenient env does
        import functools

        from reasonenv.grading import grade_batch

        grader = functools.partial(grade_batch, last_number_fallback=True)
    return MCProver(sampler, grader, seed=kw.get("seed", 0), cache_size=kw.get("cache_size", 100_000),
                    max_prefix_chars=kw.get("max_prefix_chars"))


def _check_keys(spec: Mapping[str, Any]) -> None:
    for key in spec:
        if key not in VALID_KEYS:
            raise ValueError(f"unknown services key {key!r}; valid keys: {list(VALID_KEYS)}")
    grader = spec.get("grader")
    if grader is not None and not callable(grader):
        raise _bad("grader", grader, "a callable [(response, reference)] -> [Verdict]")


def check_services(spec: Services | Mapping[str, Any] | None) -> dict[str, str]:
    """Check a services spec as :func:`build_services` would, without building (or loading)
    anything.

    Returns:
        The model names/paths the spec would load, by where they appear in it:
        ``{"ref_model": ..., "prm.model": ..., "prover.model" or "prover.value_head": ...}``
        (only those present).

    Raises:
        ValueError: what :func:`build_services` raises for the spec's shape.

    Example:
        >>> check_services({"ref_model": "org/ref", "prm": "heuristic"})
        {'ref_model': 'org/ref'}
    """
    if spec is None or isinstance(spec, Services):
        return {}
    if not isinstance(spec, Mapping):
        raise ValueError(f"services must be None, a Services or a dict, got {type(spec).__name__}: {spec!r}")
    _check_keys(spec)
    models: dict[str, str] = {}
    if spec.get("ref_model") is not None:
        kind, arg = _ref_plan(spec["ref_model"])
        if kind == "hf":
            models["ref_model"] = arg[0]
    if spec.get("prm") is not None:
        kind, arg = _prm_plan(spec["prm"])
        if kind in ("step_tag", "quantile"):
            models["prm.model"] = arg[0]
    if spec.get("prover") is not None:
        kind, arg = _prover_plan(spec["prover"])
        if kind == "mc":
            models["prover.model"] = arg["model"]
        elif kind == "value_head":
            models["prover.value_head"] = arg["value_head"]
    return models


def build_services(spec: Services | Mapping[str, Any] | None) -> Services:
    """Build the services an env offers its shapers.

    Args:
        spec: None (only the default grader), a :class:`Services` (returned as is), or a dict
            with keys among ``ref_model``, ``prm``, ``prover``, ``grader`` (see the module
            docstring). A None value leaves that service out.

    Raises:
        ValueError: On an unknown key (listing the valid ones) or a value a key cannot take
            (naming the key and the value).

    Example:
        >>> build_services(None).grader.__name__
        'grade_batch'
    """
    from reasonenv.grading import grade_batch

    if spec is None:
        return Services(grader=grade_batch)
    if isinstance(spec, Services):
        return spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"services must be None, a Services or a dict, got {type(spec).__name__}: {spec!r}")
    _check_keys(spec)
    grader = spec.get("grader")
    ref, prm, prover = spec.get("ref_model"), spec.get("prm"), spec.get("prover")
    svc = Services(
        ref_logprobs=_ref(ref) if ref is not None else None,
        prm=_prm(prm) if prm is not None else None,
        prover=_prover(prover) if prover is not None else None,
        grader=grader or grade_batch,
    )
    if isinstance(svc.prover, MCProver) and isinstance(prover, Mapping) and grader is not None:
        svc.prover.grader = grader  # the prover grades with the same grader as the env
    return svc
