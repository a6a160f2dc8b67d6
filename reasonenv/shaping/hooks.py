"""The pluggy hook a reward-shaper plugin implements.

A plugin is any importable module (or object) named by an entry point of group ``reasonenv``.
It implements one hook, :func:`reasonenv_register_shapers`, and calls ``register`` once per
:class:`~reasonenv.shaping.base.Shaper` subclass it provides. The registry host
(:mod:`reasonenv.shaping.registry`) loads plugins lazily, one at a time, so a broken plugin is
reported and skipped instead of breaking every other one.

Example (the whole plugin module named by the entry point)::

    from reasonenv.shaping.hooks import hookimpl
    from my_package.shaper import MyShaper

    @hookimpl
    def reasonenv_register_shapers(register):
        register(MyShaper)                   # registered as MyShaper.name
        register(MyShaper, name="my_alias")  # ... and under a second name
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from reasonenv.shaping.base import Shaper

PROJECT_NAME = "reasonenv"
"""pluggy project name; also the entry point group plugins are declared in."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks hook specifications (used by reasonenv itself)."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin's hook implementations: ``@hookimpl def reasonenv_register_shapers(register)``."""


class RegisterShaper(Protocol):
    """The ``register`` callback passed to :func:`reasonenv_register_shapers`."""

    def __call__(self, shaper_cls: type[Shaper], name: str | None = None) -> type[Shaper]:
        """Register ``shaper_cls`` under ``name`` (default: ``shaper_cls.name``); returns it."""
        ...


@hookspec
def reasonenv_register_shapers(register: RegisterShaper) -> None:
    """Register the reward shapers this plugin provides.

    Called once per plugin, on the first use of the registry (``get_shaper_class``,
    ``list_shapers``, ``make_shaper``) or on ``reload_plugins()``. Call
    ``register(shaper_cls, name=None)`` for each :class:`~reasonenv.shaping.base.Shaper`
    subclass; ``name`` defaults to ``shaper_cls.name``. Each class is checked with
    ``Shaper.validate_class()``; if any registration fails, or the hook raises, the plugin's
    shapers are all skipped (with a ``ReasonenvPluginWarning``, or a ``PluginError`` in strict
    mode). A name already registered by another plugin is always a ``PluginError``.

    Args:
        register: Callback ``register(shaper_cls, name=None) -> shaper_cls``.

    Example:
        >>> @hookimpl
        ... def reasonenv_register_shapers(register):
        ...     register(MyShaper)  # doctest: +SKIP
    """
