"""The shaper registry: plugin discovery, in-process registration, lookup and construction.

Shapers come from plugins (entry points of group ``reasonenv`` implementing
:func:`~reasonenv.shaping.hooks.reasonenv_register_shapers`; the built-ins are the plugin
``reasonenv.plugins``) and from :func:`register_shaper` calls. Discovery is lazy: it runs on the
first :func:`get_shaper_class` / :func:`list_shapers` / :func:`make_shaper`, never at
``import reasonenv``; :func:`reload_plugins` runs it again.

Plugins load one at a time. A broken one (import error, hook raising, a registered object that
is not a valid :class:`~reasonenv.shaping.base.Shaper` subclass) is skipped with a
:class:`ReasonenvPluginWarning` naming its distribution, entry point and error; in strict mode
(``REASONENV_STRICT_PLUGINS=1`` or ``strict=True``) it raises :class:`PluginError`. One name
registered by two sources is always a :class:`PluginError` naming both.

Environment variables (read at discovery time):
    REASONENV_DISABLE_PLUGIN_AUTOLOAD=1: load no entry points; the built-ins
        (``reasonenv.plugins``) are still imported directly and always available.
    REASONENV_BLOCKED_PLUGINS=a,b: skip entry points whose entry point name or distribution
        name is listed (``-``/``_``/``.`` and case are ignored). The built-ins cannot be blocked.
    REASONENV_STRICT_PLUGINS=1: a broken plugin raises instead of warning.

Example:
    >>> from dataclasses import dataclass
    >>> from reasonenv.shaping import Shaper, make_shaper
    >>> @register_shaper
    ... class Constant(Shaper):
    ...     name = "doc_constant"
    ...     @dataclass
    ...     class Config:
    ...         value: float = 1.0
    ...     def step_terms(self, steps):
    ...         return [self.config.value] * len(steps)
    >>> shaper, weight = make_shaper({"name": "doc_constant", "weight": 0.5, "value": 2.0})
    >>> shaper.config.value, weight
    (2.0, 0.5)
    >>> unregister_shaper("doc_constant")
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from reasonenv.shaping import hooks
from reasonenv.shaping.base import Shaper

ENTRY_POINT_GROUP = hooks.PROJECT_NAME
BUILTIN_MODULE = "reasonenv.plugins"
IN_PROCESS = "<in-process>"
ENV_DISABLE_AUTOLOAD = "REASONENV_DISABLE_PLUGIN_AUTOLOAD"
ENV_BLOCKED = "REASONENV_BLOCKED_PLUGINS"
ENV_STRICT = "REASONENV_STRICT_PLUGINS"
_HOOK = "reasonenv_register_shapers"


class PluginError(RuntimeError):
    """A plugin could not be loaded (strict mode), or two sources registered one shaper name."""


class ReasonenvPluginWarning(UserWarning):
    """A plugin failed to load and was skipped (non-strict mode)."""


@dataclass(frozen=True)
class ShaperInfo:
    """One registered shaper, as :func:`list_shapers` reports it.

    Attributes:
        name: Registry name (what ``make_shaper({"name": ...})`` takes).
        distribution: Distribution that provides it (``"reasonenv"`` for built-ins), or None
            for in-process registrations.
        version: That distribution's version, or None.
        source: ``"entry point <name> = <value>"``, ``"module reasonenv.plugins (built-in)"``
            when loaded without entry points, or ``"<in-process>"``.
        module: Module defining the class.
        hook_points: Overridden hook points, subset of ``("step", "token", "episode", "group")``.
        enters: ``"reward"``, ``"advantage"`` or ``"report"`` when every hook agrees, else
            ``"hook:value,..."`` (the class defaults; options such as PRL's mode may change it).
        services: Services it needs.
        config: ``{option: default}`` of its ``Config``.
        cls: The shaper class.
    """

    name: str
    distribution: str | None
    version: str | None
    source: str
    module: str
    hook_points: tuple[str, ...]
    enters: str
    services: tuple[str, ...]
    config: dict[str, Any]
    cls: type[Shaper]


@dataclass(frozen=True)
class PluginFailure:
    """A plugin skipped because it failed to load (see :func:`plugin_failures`)."""

    distribution: str | None
    version: str | None
    source: str
    error: str


@dataclass(frozen=True)
class _Origin:
    distribution: str | None
    version: str | None
    source: str
    module: str | None = None

    def describe(self) -> str:
        if self.source == IN_PROCESS:
            return f"in-process registration (module {self.module!r})"
        dist = f"distribution {self.distribution!r}" if self.distribution else "unknown distribution"
        return f"{dist} ({self.source})"


@dataclass(frozen=True)
class _Entry:
    name: str
    cls: type[Shaper]  # what lookups return (a thin renamed subclass when name != cls.name)
    given: type[Shaper]  # what was passed to register (identity decides "same registration")
    origin: _Origin


def describe_enters(cls: type[Shaper]) -> str:
    """One string for a class's declared contributions (see :attr:`ShaperInfo.enters`)."""
    from reasonenv.shaping.base import _enters_of

    per_hook = {h: _enters_of(cls.enters, h, cls.name) for h in cls.hook_points()}
    values = set(per_hook.values())
    if len(values) == 1:
        return values.pop()
    return ",".join(f"{h}:{v}" for h, v in per_hook.items())


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _caller_level() -> int:
    """``stacklevel`` (for a warn in the caller) of the first frame outside this module."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).strip().lower()


def _dist_of(ep: metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    try:
        name = dist.metadata.get("Name") or None
    except Exception:
        name = None
    return name, getattr(dist, "version", None)


def _dup_message(name: str, first: _Origin, second: _Origin) -> str:
    return (
        f"shaper {name!r} registered by {first.describe()} and by {second.describe()}; "
        f"uninstall one, skip one with {ENV_BLOCKED}=<entry point or distribution>, "
        "or register in-process with replace=True"
    )


def _make_entry(cls: Any, name: str | None, origin: _Origin) -> _Entry:
    if not (isinstance(cls, type) and issubclass(cls, Shaper)) or cls is Shaper:
        raise TypeError(f"expected a Shaper subclass, got {cls!r}")
    cls.validate_class()
    reg = cls.name if name is None else name
    if not isinstance(reg, str) or not reg or reg != reg.strip():
        raise TypeError(f"shaper name must be a non-empty str without surrounding spaces, got {reg!r}")
    target = cls
    if reg != cls.name:  # keep instance.name == the registered name (it keys reward terms)
        ns = {"name": reg, "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
        target = type(cls.__name__, (cls,), ns)
    return _Entry(reg, target, cls, origin)


class ShaperRegistry:
    """Holds registered shapers and discovers plugin ones on first use.

    The module-level functions act on one default instance; build your own to isolate tests.

    Args:
        group: Entry point group scanned for plugins.
        builtin_module: Module of the built-in plugin (always loaded, cannot be blocked).
        strict: Raise :class:`PluginError` on a broken plugin; None reads ``REASONENV_STRICT_PLUGINS``.

    Example:
        >>> reg = ShaperRegistry()
        >>> "outcome" in [i.name for i in reg.list_shapers()]  # doctest: +SKIP
        True
    """

    def __init__(self, group: str = ENTRY_POINT_GROUP, builtin_module: str = BUILTIN_MODULE,
                 *, strict: bool | None = None) -> None:
        self.group = group
        self.builtin_module = builtin_module
        self.strict = strict
        self._lock = threading.RLock()
        self._in_process: dict[str, tuple[_Entry, bool]] = {}
        self._plugins: dict[str, _Entry] = {}
        self._table: dict[str, _Entry] = {}
        self._failures: list[PluginFailure] = []
        self._pm: pluggy.PluginManager | None = None
        self._discovered = False
        self._discovering = False

    # -- registration -----------------------------------------------------------------------
    def register(self, cls: type[Shaper], name: str | None = None, *, replace: bool = False) -> type[Shaper]:
        """Register ``cls`` in-process under ``name`` (default ``cls.name``); see :func:`register_shaper`."""
        entry = _make_entry(cls, name, _Origin(None, None, IN_PROCESS, getattr(cls, "__module__", None)))
        with self._lock:
            prev = self._in_process.get(entry.name)
            if prev is not None and prev[0].given is cls and not replace:
                return cls
            if prev is not None and not replace:
                raise PluginError(_dup_message(entry.name, prev[0].origin, entry.origin))
            if self._discovered:
                table = self._merge(self._plugins, {**self._in_process, entry.name: (entry, replace)})
                self._table = table
            self._in_process[entry.name] = (entry, replace)
        return cls

    def unregister(self, name: str) -> None:
        """Remove an in-process registration (plugin shapers cannot be removed; block them)."""
        with self._lock:
            if self._in_process.pop(name, None) is None:
                raise KeyError(f"no in-process registration named {name!r}")
            if self._discovered:
                self._table = self._merge(self._plugins, self._in_process)

    # -- lookup -------------------------------------------------------------------------------
    def get_class(self, name: str) -> type[Shaper]:
        """The class registered as ``name``; see :func:`get_shaper_class`."""
        table = self._ensure()
        entry = table.get(name)
        if entry is not None:
            return entry.cls
        valid = sorted(table)
        close = difflib.get_close_matches(name, valid, n=3) if isinstance(name, str) else []
        msg = f"unknown shaper {name!r}"
        if close:
            msg += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        msg += f" Valid shapers: {', '.join(valid) if valid else '(none)'}."
        if self._failures:
            msg += " Plugins that failed to load: " + "; ".join(f"{f.distribution} ({f.source})" for f in self._failures)
        raise ValueError(msg)

    def list_shapers(self) -> list[ShaperInfo]:
        """Every registered shaper, sorted by name; see :func:`list_shapers`."""
        out = []
        for name, e in sorted(self._ensure().items()):
            out.append(ShaperInfo(
                name=name, distribution=e.origin.distribution, version=e.origin.version,
                source=e.origin.source, module=e.given.__module__, hook_points=e.cls.hook_points(),
                enters=describe_enters(e.cls), services=tuple(e.cls.services), config=e.cls.config_fields(), cls=e.cls,
            ))
        return out

    def failures(self) -> list[PluginFailure]:
        """Plugins skipped by the last discovery (runs discovery if needed)."""
        self._ensure()
        return list(self._failures)

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The pluggy manager holding the successfully loaded plugins."""
        self._ensure()
        assert self._pm is not None
        return self._pm

    def reload(self) -> None:
        """Forget plugin discovery and run it again (in-process registrations are kept)."""
        with self._lock:
            self._discovered = False
            importlib.invalidate_caches()
            self._ensure()

    # -- discovery ----------------------------------------------------------------------------
    def _ensure(self) -> dict[str, _Entry]:
        if self._discovered:
            return self._table
        with self._lock:
            if not self._discovered and not self._discovering:
                self._discovering = True
                try:
                    self._discover()
                finally:
                    self._discovering = False
            return self._table

    def _is_strict(self) -> bool:
        return self.strict if self.strict is not None else _env_flag(ENV_STRICT)

    def _discover(self) -> None:
        pm = pluggy.PluginManager(hooks.PROJECT_NAME)
        pm.add_hookspecs(hooks)
        plugins: dict[str, _Entry] = {}
        failures: list[PluginFailure] = []
        for origin, load in self._sources(failures):
            self._load_plugin(pm, origin, load, plugins, failures)
        table = self._merge(plugins, self._in_process)
        self._pm, self._plugins, self._table, self._failures = pm, plugins, table, failures
        self._discovered = True

    def _sources(self, failures: list[PluginFailure]) -> list[tuple[_Origin, Callable[[], Any]]]:
        """(origin, loader) per plugin to load: the built-in first, then entry points by name."""
        builtin: tuple[_Origin, Callable[[], Any]] | None = None
        others: list[tuple[_Origin, Callable[[], Any]]] = []
        if not _env_flag(ENV_DISABLE_AUTOLOAD):
            blocked = {_norm(b) for b in os.environ.get(ENV_BLOCKED, "").split(",") if b.strip()}
            try:
                eps = list(metadata.entry_points(group=self.group))
            except Exception as exc:  # a corrupt dist-info somewhere on sys.path
                self._fail(_Origin(None, None, f"entry point group {self.group!r}"), f"{type(exc).__name__}: {exc}", exc, failures)
                eps = []
            for ep in eps:
                dist, version = _dist_of(ep)
                origin = _Origin(dist, version, f"entry point {ep.name} = {ep.value}")
                if ep.value.strip() == self.builtin_module:
                    builtin = builtin or (origin, ep.load)
                elif _norm(ep.name) not in blocked and (dist is None or _norm(dist) not in blocked):
                    others.append((origin, ep.load))
        if builtin is None:  # autoload disabled, or running without installed metadata
            try:
                version: str | None = metadata.version("reasonenv")
            except metadata.PackageNotFoundError:
                version = None
            mod = self.builtin_module
            builtin = (_Origin("reasonenv", version, f"module {mod} (built-in)"), lambda: importlib.import_module(mod))
        others.sort(key=lambda s: (s[0].distribution or "", s[0].source))
        return [builtin, *others]

    def _fail(self, origin: _Origin, error: str, exc: BaseException | None, failures: list[PluginFailure]) -> None:
        text = f"reasonenv plugin from {origin.describe()} failed to load: {error}"
        if self._is_strict():
            raise PluginError(text + f" (strict mode: unset {ENV_STRICT} to skip it with a warning)") from exc
        failures.append(PluginFailure(origin.distribution, origin.version, origin.source, error))
        warnings.warn(
            f"{text}; skipped (block it with {ENV_BLOCKED}, or set {ENV_STRICT}=1 to make this an error)",
            ReasonenvPluginWarning, stacklevel=_caller_level(),
        )

    def _load_plugin(self, pm: pluggy.PluginManager, origin: _Origin, load: Callable[[], Any],
                     plugins: dict[str, _Entry], failures: list[PluginFailure]) -> None:
        try:
            obj = load()
        except Exception as exc:
            return self._fail(origin, f"import failed: {type(exc).__name__}: {exc}", exc, failures)
        if pm.is_registered(obj):  # two entry points naming one module
            return None
        try:
            pm.register(obj)
            pm.check_pending()
        except Exception as exc:
            if pm.is_registered(obj):
                pm.unregister(obj)
            return self._fail(origin, f"invalid hook implementation: {exc}", exc, failures)
        if not any(i.plugin is obj for i in getattr(pm.hook, _HOOK).get_hookimpls()):
            pm.unregister(obj)
            return self._fail(origin, f"defines no @hookimpl {_HOOK}(register)", None, failures)
        staged: dict[str, _Entry] = {}
        errors: list[str] = []
        dups: list[str] = []

        def register(shaper_cls: type[Shaper], name: str | None = None) -> type[Shaper]:
            try:
                entry = _make_entry(shaper_cls, name, _Origin(origin.distribution, origin.version, origin.source))
            except TypeError as exc:
                errors.append(str(exc))
                raise
            prev = staged.get(entry.name)
            if prev is not None and prev.given is not entry.given:
                dups.append(_dup_message(entry.name, prev.origin, entry.origin))
            staged.setdefault(entry.name, entry)
            return shaper_cls

        others = [p for p in pm.get_plugins() if p is not obj]
        try:
            pm.subset_hook_caller(_HOOK, remove_plugins=others)(register=register)
        except Exception as exc:
            pm.unregister(obj)
            return self._fail(origin, f"{_HOOK} raised {type(exc).__name__}: {exc}", exc, failures)
        if errors:
            pm.unregister(obj)
            return self._fail(origin, "; ".join(errors), None, failures)
        if dups:
            raise PluginError(dups[0])
        for name, entry in staged.items():
            prev = plugins.get(name)
            if prev is not None and prev.given is not entry.given:
                raise PluginError(_dup_message(name, prev.origin, entry.origin))
            plugins.setdefault(name, entry)
        return None

    @staticmethod
    def _merge(plugins: dict[str, _Entry], in_process: Mapping[str, tuple[_Entry, bool]]) -> dict[str, _Entry]:
        table = dict(plugins)
        for name, (entry, replace) in in_process.items():
            prev = plugins.get(name)
            if prev is None or replace:
                table[name] = entry
            elif prev.given is not entry.given:
                raise PluginError(_dup_message(name, prev.origin, entry.origin))
        return table


_default = ShaperRegistry()


def default_registry() -> ShaperRegistry:
    """The registry the module-level functions use."""
    return _default


def register_shaper(name_or_cls: str | type[Shaper], factory: type[Shaper] | None = None, *,
                    replace: bool = False) -> Any:
    """Register a shaper class in-process (source ``"<in-process>"``).

    Forms: ``register_shaper(MyShaper)`` (name ``MyShaper.name``), ``register_shaper("alias",
    MyShaper)``, and the decorators ``@register_shaper`` and ``@register_shaper("alias")``.
    Registering the same class under the same name again is a no-op; a different class under a
    taken name (here or by a plugin) raises :class:`PluginError` unless ``replace=True``. Under a
    name other than ``cls.name`` the registry holds a thin subclass whose ``name`` is the alias.

    Args:
        name_or_cls: The class, or the name to register under.
        factory: The class, when ``name_or_cls`` is a name.
        replace: Deliberately override an existing registration of that name.

    Returns:
        The class passed in (or, for ``register_shaper("alias")``, a decorator).

    Raises:
        TypeError: Not a Shaper subclass, or it fails ``Shaper.validate_class()``.
        PluginError: The name is taken by another class.

    Example:
        >>> @register_shaper("doc_alias")  # doctest: +SKIP
        ... class MyShaper(Shaper): ...
    """
    if isinstance(name_or_cls, str):
        if factory is None:
            return lambda cls: _default.register(cls, name_or_cls, replace=replace)
        return _default.register(factory, name_or_cls, replace=replace)
    if factory is not None:
        raise TypeError("register_shaper(cls) takes no factory; use register_shaper(name, cls)")
    return _default.register(name_or_cls, None, replace=replace)


def unregister_shaper(name: str) -> None:
    """Remove an in-process registration (``KeyError`` if there is none)."""
    _default.unregister(name)


def get_shaper_class(name: str) -> type[Shaper]:
    """The shaper class registered as ``name``.

    Raises:
        ValueError: Unknown name; the message lists the valid names and close matches.

    Example:
        >>> get_shaper_class("outcome").name  # doctest: +SKIP
        'outcome'
    """
    return _default.get_class(name)


def list_shapers() -> list[ShaperInfo]:
    """Every registered shaper with its distribution, hook points and options, sorted by name.

    Example:
        >>> [i.name for i in list_shapers()]  # doctest: +SKIP
        ['outcome', 'pav', 'prl', 'progrs']
    """
    return _default.list_shapers()


def plugin_failures() -> list[PluginFailure]:
    """Plugins skipped (with a warning) by the last discovery."""
    return _default.failures()


def reload_plugins() -> None:
    """Re-run plugin discovery (picks up newly installed plugins and changed env vars)."""
    _default.reload()


