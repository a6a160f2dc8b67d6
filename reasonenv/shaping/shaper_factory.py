"""Building configured shapers from specs: ``{"name", "weight", **kwargs}``, names or instances.

Options are checked against the shaper's ``Config`` dataclass (names and, where cheaply
possible, types), and weights must be finite numbers, so a typo fails with the list of valid
options instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from reasonenv.shaping.base import Shaper


def get_shaper_class(name: str) -> type[Shaper]:
    """Look a shaper class up in the default registry (see :mod:`reasonenv.shaping.registry`)."""
    from reasonenv.shaping.registry import get_shaper_class as _get

    return _get(name)

def _expected(hint: Any, default: Any) -> tuple[Any, ...] | None:
    simple = (bool, int, float, str)
    if hint is None:
        return (type(default),) if type(default) in simple else None
    if hint in simple:
        return (hint,)
    origin = get_origin(hint)
    if origin is Literal:
        return ("literal", *get_args(hint))
    if origin in (Union, types.UnionType) and all(a in simple or a is type(None) for a in get_args(hint)):
        return get_args(hint)
    return None


def _matches(value: Any, t: Any) -> bool:
    if t is type(None):
        return value is None
    if t is bool:
        return isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if t is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, t)


def _check_options(name: str, cls: type[Shaper], kwargs: dict[str, Any]) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls.Config) if f.init}
    defaults = {
        k: f.default if f.default is not dataclasses.MISSING
        else f.default_factory() if f.default_factory is not dataclasses.MISSING  # type: ignore[misc]
        else "<required>"
        for k, f in fields.items()
    }
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "(none)"
        raise ValueError(f"shaper {name!r}: unknown option(s) {', '.join(unknown)}; valid options (default): {valid}")
    try:
        hints = get_type_hints(cls.Config)
    except Exception:
        hints = {}
    out = dict(kwargs)
    for key, value in kwargs.items():
        exp = _expected(hints.get(key), defaults[key])
        if exp is None:
            continue
        if exp[0] == "literal":
            if value not in exp[1:]:
                raise ValueError(f"shaper {name!r}: option {key}={value!r} must be one of {list(exp[1:])}")
        elif not any(_matches(value, t) for t in exp):
            want = " or ".join("None" if t is type(None) else t.__name__ for t in exp)
            raise ValueError(
                f"shaper {name!r}: option {key}={value!r} ({type(value).__name__}) must be {want}"
                f" (default {defaults[key]!r})"
            )
        elif float in exp and int not in exp and _matches(value, float) and not isinstance(value, float):
            out[key] = float(value)
    return out


def _check_weight(name: str, weight: Any) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
        raise ValueError(f"shaper {name!r}: weight must be a finite float, got {weight!r}")
    return float(weight)


def make_shaper(spec: str | Mapping[str, Any] | Shaper | type[Shaper], services: Any = None) -> tuple[Shaper, float]:
    """Build a shaper and its weight from a spec.

    Args:
        spec: A registered name, a dict ``{"name": str, "weight": float = 1.0, **options}``
            (options are checked against the class's ``Config``), a Shaper class (default
            options), or a ready Shaper instance (weight 1.0).
        services: A :class:`~reasonenv.shaping.protocols.Services`; when given, the shaper's
            needed services are checked (``services.require``) and passed to it.

    Returns:
        ``(shaper, weight)``.

    Raises:
        ValueError: Unknown name, unknown option (the message lists the valid ones with their
            defaults), an option of the wrong type, a non-finite weight, a missing service.

    Example:
        >>> make_shaper({"name": "outcome", "weight": 2.0})  # doctest: +SKIP
        (<...OutcomeShaper object at ...>, 2.0)
    """
    if isinstance(spec, Shaper):
        if services is not None:
            services.require(spec.name, spec.services)
        return spec, 1.0
    if isinstance(spec, type) and issubclass(spec, Shaper):
        spec.validate_class()
        cls, name, weight, kwargs = spec, spec.name, 1.0, {}
    elif isinstance(spec, str):
        cls, name, weight, kwargs = get_shaper_class(spec), spec, 1.0, {}
    elif isinstance(spec, Mapping):
        opts = dict(spec)
        name = opts.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(f"shaper spec needs a 'name' (str), got {spec!r}")
        cls = get_shaper_class(name)
        weight = _check_weight(name, opts.pop("weight", 1.0))
        kwargs = opts
    else:
        raise TypeError(f"shaper spec must be a name, a dict, a Shaper class or instance; got {spec!r}")
    kwargs = _check_options(name, cls, kwargs)
    try:
        config = cls.Config(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"shaper {name!r}: bad options {kwargs}: {exc}") from exc
    if services is not None:
        services.require(cls.name, cls.services)
    try:
        shaper = cls(config, services)
    except Exception as exc:
        raise ValueError(f"shaper {name!r} could not be built: {type(exc).__name__}: {exc}") from exc
    return shaper, weight
