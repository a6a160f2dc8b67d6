"""reasonenv plugin: registers the ``length_penalty`` shaper.

This module is what the ``reasonenv`` entry point names (see pyproject.toml). reasonenv imports
it on first use of the shaper registry and calls :func:`reasonenv_register_shapers`.
"""

from __future__ import annotations

from reasonenv.shaping.hooks import RegisterShaper, hookimpl
from reasonenv_shaper_example.shaper import LengthPenaltyShaper

__all__ = ["LengthPenaltyShaper", "reasonenv_register_shapers"]
__version__ = "0.1.0"


@hookimpl
def reasonenv_register_shapers(register: RegisterShaper) -> None:
    """Register :class:`LengthPenaltyShaper` as ``length_penalty``."""
    register(LengthPenaltyShaper)
