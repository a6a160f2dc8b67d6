"""Built-in reward shapers, imported as ``reasonenv.plugins``.

They are registered through the same ``reasonenv`` entry point and hook a third-party plugin
uses (see pyproject.toml: ``[project.entry-points.reasonenv] builtin = "reasonenv.plugins"``).
"""

from __future__ import annotations

from typing import Any

from reasonenv.shaping.hooks import hookimpl


@hookimpl
def reasonenv_register_shapers(register: Any) -> None:
    """Register outcome, prl, progrs and pav."""
    from reasonenv.plugins.outcome import OutcomeShaper
    from reasonenv.plugins.pav import PAVShaper
    from reasonenv.plugins.prl import PRLShaper
    from reasonenv.plugins.progrs import PROGRSShaper

    for cls in (OutcomeShaper, PRLShaper, PROGRSShaper, PAVShaper):
        register(cls)
