"""reasonenv plugin: registers the ``length_penalty`` (step) and ``token_kl`` (token) shapers.

This module is what the ``reasonenv`` entry point names (see pyproject.toml). reasonenv imports
it on first use of the shaper registry and calls :func:`reasonenv_register_shapers`.
"""

from __future__ import annotations

from reasonenv.shaping.hooks import RegisterShaper, hookimpl
from reasonenv_shaper_example.shaper import LengthPenaltyShaper
from reasonenv_shaper_example.token_kl import TokenKLShaper

__all__ = ["LengthPenaltyShaper", "TokenKLShaper", "reasonenv_register_shapers"]
__version__ = "0.1.0"


@hookimpl
def reasonenv_register_shapers(register: RegisterShaper) -> None:
    """Register :class:`LengthPenaltyShaper` (``length_penalty``) and :class:`TokenKLShaper`
    (``token_kl``)."""
    register(LengthPenaltyShaper)
    register(TokenKLShaper)
