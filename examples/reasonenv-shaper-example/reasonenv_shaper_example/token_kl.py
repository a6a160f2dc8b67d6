"""A token-level, PRL-like shaper: a per-token penalty on drifting from the reference model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from reasonenv.shaping.base import EpisodeRecord, Shaper


class TokenKLShaper(Shaper):
    """Per response token ``t``, the dense reward ``-coef * (log pi_old(a_t) - log pi_ref(a_t))``.

    It declares the ``ref_logprobs`` service (the env's pipeline then scores every step under
    the reference once and hands the values to every shaper that needs them) and one token hook
    entering as ``"reward"``: the trainer adds its return-to-go ``-coef * sum_{j >= t} d_j`` to
    token ``t``'s advantage, which is the dense part of PRL's ``prm`` mode with ``1/eta = coef``.

    Example:
        >>> from reasonenv.problems.base import Problem
        >>> rec = EpisodeRecord(0, 0, Problem("p", "q", "1", "t"), "", ("ab",), ((5, 6),),
        ...                     ((-1.0, -2.0),), (1,), 1.0, {}, True,
        ...                     step_ref_logprobs=((-1.5, -1.0),))
        >>> TokenKLShaper(TokenKLShaper.Config(coef=0.5)).token_terms([rec])
        [[-0.25, 0.5]]
    """

    name = "token_kl"
    enters = "reward"
    services = ("ref_logprobs",)

    @dataclass
    class Config:
        """Options of ``token_kl``.

        Attributes:
            coef: Penalty per nat of log-ratio (>= 0); PRL's ``1/eta``.
        """

        coef: float = 0.005

    def __init__(self, config: TokenKLShaper.Config | None = None, services: object = None) -> None:
        super().__init__(config, services)
        if not (math.isfinite(self.config.coef) and self.config.coef >= 0):
            raise ValueError(f"token_kl: coef must be finite and >= 0, got {self.config.coef!r}")

    def token_terms(self, episodes: Sequence[EpisodeRecord]) -> list[list[float]]:
        """``-coef * (old - ref)`` for every response token of each finished episode."""
        out = []
        for rec in episodes:
            old, ref = rec.logprobs, rec.ref_logprobs
            if old is None or ref is None:
                raise ValueError(
                    f"token_kl needs the policy's logprobs and reference log-probs for every step "
                    f"(slot {rec.slot}); pass logprobs in the actions and give the env a tokenizer"
                )
            out.append([-self.config.coef * (o - r) for o, r in zip(old, ref)])
        return out
