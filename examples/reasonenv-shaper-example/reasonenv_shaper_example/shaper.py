"""A causal per-step length penalty."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from reasonenv.shaping.base import Shaper, StepContext


def step_tokens(ctx: StepContext) -> int:
    """Tokens in the step: ``len(ctx.token_ids)`` if the policy gave ids, else ``ceil(chars / 4)``."""
    if ctx.token_ids is not None:
        return len(ctx.token_ids)
    return math.ceil(len(ctx.step_text) / 4)


class LengthPenaltyShaper(Shaper):
    """Per step, ``-per_token * n_tokens`` (see :func:`step_tokens`); discourages verbose steps.

    Example:
        >>> s = LengthPenaltyShaper(LengthPenaltyShaper.Config(per_token=0.5))
        >>> s.step_terms([StepContext.simple("12345678")])  # 8 chars -> 2 tokens
        [-1.0]
    """

    name = "length_penalty"
    enters = "reward"
    services = ()
    bounds = (-math.inf, 0.0)

    @dataclass
    class Config:
        """Options of ``length_penalty``.

        Attributes:
            per_token: Penalty per token of the step (>= 0).
        """

        per_token: float = 0.001

    def __init__(self, config: LengthPenaltyShaper.Config | None = None, services: object = None) -> None:
        super().__init__(config, services)
        per_token = self.config.per_token
        if not (math.isfinite(per_token) and per_token >= 0):
            raise ValueError(f"length_penalty: per_token must be finite and >= 0, got {per_token!r}")

    def step_terms(self, steps: Sequence[StepContext]) -> list[float]:
        """``-per_token * step_tokens(ctx)`` per context (causal: this step only)."""
        return [-self.config.per_token * step_tokens(ctx) for ctx in steps]
