"""Reward shaping: the shaper contract, the plugin registry, services and the pipeline.

Example:
    >>> from reasonenv.shaping import list_shapers
    >>> {"outcome", "prl", "progrs", "pav"} <= {s.name for s in list_shapers()}
    True
"""

from reasonenv.shaping.base import EpisodeRecord, Shaper, StepContext
from reasonenv.shaping.hooks import hookimpl, hookspec
from reasonenv.shaping.protocols import (
    ContinuationSampler,
    PRMScorer,
    ProverRequest,
    ProverService,
    RefLogprobScorer,
    RefRequest,
    Services,
)
from reasonenv.shaping.registry import (
    PluginError,
    ReasonenvPluginWarning,
    ShaperInfo,
    get_shaper_class,
    list_shapers,
    register_shaper,
    reload_plugins,
    unregister_shaper,
)
from reasonenv.shaping.shaper_factory import make_shaper

__all__ = [
    "ContinuationSampler",
    "EpisodeRecord",
    "PRMScorer",
    "PluginError",
    "ProverRequest",
    "ProverService",
    "ReasonenvPluginWarning",
    "RefLogprobScorer",
    "RefRequest",
    "Services",
    "Shaper",
    "ShaperInfo",
    "StepContext",
    "get_shaper_class",
    "hookimpl",
    "hookspec",
    "list_shapers",
    "make_shaper",
    "register_shaper",
    "reload_plugins",
    "unregister_shaper",
]
