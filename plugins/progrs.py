"""PROGRS: outcome-conditioned, centred PRM bonus (arXiv 2604.02341), docs/shapers.md "progrs".

Per response i of a group, with q_{i,k} the frozen PRM's score of step k (one quantile):

* ``p_i = agg_k q_{i,k}`` (agg: mean | min | last);
* ``v_i = sum_{w in windows} mean_t std(q_{i,t..t+w-1})`` (multi-scale coherence penalty);
* ``s_i = p_i - gamma * v_i``;
* centring: incorrect ``b_i = s_i - mean_{j incorrect} s_j``; correct ``b_i = 0`` (or centred
  inside the correct set with ``center_correct``);
* injection: ``A_i = GRPO(o)_i + lam * b_i`` (advantage level) or ``r_i = o_i + lam * b_i``
  (reward level, before normalisation).

Dominance invariant: every incorrect response ends with a lower advantage than every correct
one. The shaper declares ``clip_to_outcome``, so the advantage composition
(:func:`reasonenv.shaping.advantages.compose_advantages`) scales ``lam * b_i`` down per group
where needed, on the FINAL token advantages (every term of every shaper composed), and counts the
clipped groups (``adv/clipped_groups`` in the trainer's metrics).

Only the abstract is confirmed; the aggregation, windows, gamma, centring of correct responses
and injection level are flags (docs/shapers.md).

Example:
    >>> import numpy as np

    >>> s = np.array([0.9, 0.2, 0.6])
    >>> centred_bonus(s, np.array([True, False, False])).round(2).tolist()
    [0.0, -0.2, 0.2]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reasonenv.shaping.base import EpisodeRecord, Shaper

AGGS = ("mean", "min", "last")
INJECTS = ("advantage", "reward")


# -- pure functions -----------------------------------------------------------------------------
def coherence_penalty(q: np.ndarray, windows: Sequence[int]) -> float:
    """Multi-scale volatility ``v = sum_w mean_t std(q[t : t + w])`` (population std).

    A window size longer than the number of steps K has no window and contributes 0.

    Args:
        q: PRM scores of one response's steps, shape (K,).
        windows: Window sizes (each >= 1).

    Returns:
        ``v >= 0``.

    Example:
        >>> coherence_penalty(np.array([0.0, 1.0, 0.0]), (2, 4))
        0.5
    """
    q = np.asarray(q, dtype=np.float64).reshape(-1)  # (K,)
    total = 0.0
    for w in windows:
        if w > q.shape[0]:
            continue
        views = np.lib.stride_tricks.sliding_window_view(q, w)  # (K - w + 1, w)
        total += float(views.std(axis=1).mean())
    return total


def aggregate(q: np.ndarray, agg: str) -> float:
    """``p = agg_k q_k`` for agg in mean | min | last; 0.0 for a response with no steps.

    Example:
        >>> aggregate(np.array([0.2, 0.8, 0.5]), "min")
        0.2
    """
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if agg not in AGGS:
        raise ValueError(f"progrs: agg must be one of {AGGS}, got {agg!r}")
    if q.size == 0:
        return 0.0
    return float({"mean": q.mean, "min": q.min, "last": lambda: q[-1]}[agg]())


def centred_bonus(s: np.ndarray, correct: np.ndarray, center_correct: bool = False) -> np.ndarray:
    """Outcome-conditioned centring of the scores ``s`` inside one group.

    Incorrect members get ``s_i - mean_{incorrect} s``; correct members get 0, or
    ``s_i - mean_{correct} s`` when ``center_correct``.

    Args:
        s: Scores, shape (G,).
        correct: Boolean mask of correct members, shape (G,).
        center_correct: Also centre the correct members (instead of 0).

    Returns:
        ``b``, shape (G,); the incorrect entries sum to 0.

    Example:
        >>> centred_bonus(np.array([1.0, 0.5, 0.3]), np.array([True, False, False])).round(2).tolist()
        [0.0, 0.1, -0.1]
    """
    s = np.asarray(s, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    b = np.zeros_like(s)
    wrong = ~correct
    if wrong.any():
        b[wrong] = s[wrong] - s[wrong].mean()
    if center_correct and correct.any():
        b[correct] = s[correct] - s[correct].mean()
    return b


# -- the shaper ---------------------------------------------------------------------------------
class PROGRSShaper(Shaper):
    """Centred, coherence-penalised PRM bonus per group member, with correctness kept dominant.

    Hook point: group end. Services: ``prm`` (one batched ``score`` call per group). Enters:
    ``config.inject`` ("advantage": add the term to ``GRPO(o)_i``; "reward": add it to ``o_i``
    before normalisation). The term per member is ``lam * b_i``; it is clipped to keep outcome
    dominance by the advantage composition (``clip_to_outcome``), after weighting.

    Example:
        >>> from reasonenv.shaping.base import EpisodeRecord
        >>> from reasonenv.shaping.protocols import Services
        >>> from reasonenv.problems.base import Problem
        >>> class PRM:  # a stand-in PRM: the score of a step is its length / 10
        ...     quantiles = (0.5,)
        ...     def score(self, items):
        ...         return [np.array([[len(s) / 10] for s in steps]) for _, steps in items]
        >>> p = Problem(id="d", question="q", answer="1", source="d")
        >>> recs = [EpisodeRecord(i, 0, p, "", (t,), (None,), (None,), None, o, {}, True)
        ...         for i, (t, o) in enumerate([("abc", 1.0), ("ab", 0.0), ("abcd", 0.0)])]
        >>> [round(x, 4) for x in PROGRSShaper(services=Services(prm=PRM())).group_end(recs)]
        [0.0, -0.01, 0.01]
    """

    name = "progrs"
    enters = "advantage"
    services = ("prm",)
    bounds = None
    clip_to_outcome = True

    @dataclass
    class Config:
        """PROGRS options; all but lam/gamma/windows are unconfirmed-detail flags."""

        lam: float = 0.1  # bonus scale lambda; clipped per group to keep correctness dominant
        gamma: float = 0.5  # weight of the coherence (volatility) penalty in s = p - gamma*v
        windows: tuple[int, ...] = (2, 4, 8)  # window sizes of the multi-scale coherence penalty
        agg: str = "mean"  # step aggregation of PRM scores: "mean" | "min" | "last"
        quantile: float = 0.5  # which PRM quantile to use (must be one the PRM predicts)
        center_correct: bool = False  # centre correct members too (default: their bonus is 0)
        inject: str = "advantage"  # "advantage": GRPO(o)+lam*b; "reward": o+lam*b before norm

        def __post_init__(self) -> None:
            self.windows = tuple(int(w) for w in self.windows)
            if not self.lam >= 0:
                raise ValueError(f"progrs: lam must be >= 0, got {self.lam!r}")
            if not self.gamma >= 0:
                raise ValueError(f"progrs: gamma must be >= 0, got {self.gamma!r}")
            if any(w < 1 for w in self.windows):
                raise ValueError(f"progrs: window sizes must be >= 1, got {self.windows!r}")
            if self.agg not in AGGS:
                raise ValueError(f"progrs: agg must be one of {AGGS}, got {self.agg!r}")
            if self.inject not in INJECTS:
                raise ValueError(f"progrs: inject must be one of {INJECTS}, got {self.inject!r}")
            if not 0.0 <= self.quantile <= 1.0:
                raise ValueError(f"progrs: quantile must be in [0, 1], got {self.quantile!r}")

    def __init__(self, config: Config | None = None, services: object = None) -> None:
        super().__init__(config, services)
        self.enters = self.config.inject  # type: ignore[misc]
        if getattr(services, "prm", None) is not None:
            self._quantile_column()

    def _quantile_column(self) -> int:
        """Index of ``config.quantile`` among the PRM's quantiles (error naming both if absent)."""
        available = tuple(float(x) for x in self.svc.prm.quantiles)
        for idx, qv in enumerate(available):
            if abs(qv - self.config.quantile) <= 1e-9:
                return idx
        raise ValueError(
            f"progrs: quantile={self.config.quantile!r} is not one of the PRM's quantiles "
            f"{available}; set quantile to one of them"
        )

    def scores(self, group: Sequence[EpisodeRecord]) -> np.ndarray:
        """``s_i = p_i - gamma * v_i`` per member from one batched PRM call, shape (G,)."""
        self.svc.require(self.name, self.services)
        col = self._quantile_column()
        scored = self.svc.prm.score([(rec.problem.question, list(rec.steps)) for rec in group])
        if len(scored) != len(group):
            raise ValueError(f"progrs: PRM returned {len(scored)} results for {len(group)} items")
        cfg = self.config
        s = np.empty(len(group), dtype=np.float64)
        for i, (rec, arr) in enumerate(zip(group, scored)):
            arr = np.asarray(arr, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[0] != len(rec.steps):
                raise ValueError(
                    f"progrs: PRM gave shape {arr.shape} for {len(rec.steps)} steps "
                    f"(expected (K, n_quantiles))"
                )
            q = arr[:, col]  # (K,)
            s[i] = aggregate(q, cfg.agg) - cfg.gamma * coherence_penalty(q, cfg.windows)
        return s

    def group_end(self, group: Sequence[EpisodeRecord]) -> list[float]:
        """``lam * b_i`` per member (before the composition's dominance clip)."""
        if not group:
            return []
        cfg = self.config
        if cfg.lam == 0:
            return [0.0] * len(group)
        correct = np.array([float(rec.outcome) > 0.5 for rec in group])  # (G,)
        bonus = centred_bonus(self.scores(group), correct, cfg.center_correct)  # (G,)
        return [float(cfg.lam * b) + 0.0 for b in bonus]
