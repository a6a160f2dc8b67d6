"""Token advantages from every shaper's declared contributions: the one composition rule.

Per response ``i`` of group ``g`` (``G`` responses to one problem), with tokens ``t`` in steps
``k(t)`` and each shaper's weighted terms as the env delivered them:

1. ``R_i`` = the sum of the episode and group terms declared ``enters="reward"`` (the outcome
   shaper's ``o_i`` minus any format penalty, reward-level PROGRS, plugin episode rewards).
2. ``A_hat = (R - baseline) / scale`` from the advantage estimator (registered by name:
   ``grpo`` = group mean and std, ``rloo`` = leave-one-out mean, ``raw`` = no baseline, as PRL's
   ``prm`` mode), see :class:`AdvantageConfig`.
3. ``B_i`` = the sum of episode and group terms declared ``enters="advantage"``, added to every
   token of response ``i``.
4. Dense terms, per token: step terms declared ``"advantage"`` on their own step's tokens (PAV);
   step terms declared ``"reward"`` as their return-to-go ``sum_{h >= k(t)} r_h``; token terms
   declared ``"advantage"`` on their own token (PRL ``orm``: ``-S_{b_k}/eta``); token terms
   declared ``"reward"`` as their return-to-go ``sum_{j >= t} r_j`` (PRL ``prm``: ``-S_t/eta``).
   Terms declared ``"report"`` are not used.

``A_{i,t} = A_hat_i + B_i + dense_{i,t}``.

Outcome dominance: the terms of shapers declared ``clip_to_outcome`` (PROGRS) are scaled by
``c_g`` in ``[0, 1]``, the largest value found that keeps every incorrect response's mean token
advantage strictly below every correct one's, computed on the FINAL advantages (every term of
every shaper composed, the estimator re-applied at each ``c_g``). ``c_g = 1`` when the order
already holds; when it is broken even at ``c_g = 0`` (other terms break it), ``c_g = 0`` and the
group is counted as unenforceable.

Example:
    >>> groups = [[ResponseTerms((2,), 1.0, episode={"outcome": 1.0}),
    ...            ResponseTerms((1, 1), 0.0, episode={"outcome": 0.0})]]
    >>> adv, stats = compose_advantages(groups, {"outcome": {"episode": "reward"}})
    >>> [a.round(4).tolist() for a in adv[0]]
    [[0.7071, 0.7071], [-0.7071, -0.7071]]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from einops import rearrange

SCALES = ("group", "batch", "none")
STDS = ("unbiased", "population")
_SHRINK = 1.0 - 1e-9  # a clipped scale sits this far inside the tie point


@dataclass(frozen=True)
class AdvantageConfig:
    """How the episode return ``R`` becomes ``A_hat`` (TRL's and verl's options).

    Attributes:
        estimator: A registered estimator: ``"grpo"``, ``"rloo"``, ``"raw"`` or your own.
        scale: ``grpo``'s divisor: ``"group"`` (the group's std), ``"batch"`` (the batch's std,
            TRL's ``scale_rewards="batch"``) or ``"none"`` (Dr. GRPO: centring only).
        std: ``"unbiased"`` (Bessel, n-1: torch.std in TRL and PRL's verl) or ``"population"``.
        eps: Added to the std (PRL's code: 1e-6; TRL: 1e-4).
    """

    estimator: str = "grpo"
    scale: str = "group"
    std: str = "unbiased"
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"advantage estimator={self.estimator!r}; registered: {sorted(ESTIMATORS)}")
        if self.scale not in SCALES:
            raise ValueError(f"advantage scale={self.scale!r}; valid: {list(SCALES)}")
        if self.std not in STDS:
            raise ValueError(f"advantage std={self.std!r}; valid: {list(STDS)}")
        if not (isinstance(self.eps, (int, float)) and np.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"advantage eps must be a finite number >= 0, got {self.eps!r}")


# An estimator maps rewards (B, G) to (baseline, scale), both (B, G): A = (R - baseline) / scale.
Estimator = Callable[[np.ndarray, AdvantageConfig], tuple[np.ndarray, np.ndarray]]
ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str) -> Callable[[Estimator], Estimator]:
    """Register an advantage estimator under ``name`` (a decorator), as verl's register_adv_est.

    Example:
        >>> @register_estimator("centred_only")
        ... def _centred(r, cfg):
        ...     return np.repeat(r.mean(1, keepdims=True), r.shape[1], 1), np.ones_like(r)
        >>> "centred_only" in ESTIMATORS
        True
        >>> del ESTIMATORS["centred_only"]
    """

    def deco(fn: Estimator) -> Estimator:
        ESTIMATORS[name] = fn
        return fn

    return deco


def _std(x: np.ndarray, axis: int | None, kind: str) -> np.ndarray:
    n = x.shape[axis] if axis is not None else x.size
    ddof = 1 if kind == "unbiased" and n > 1 else 0
    return np.asarray(x.std(axis=axis, ddof=ddof, keepdims=axis is not None))


@register_estimator("grpo")
def grpo_estimator(r: np.ndarray, cfg: AdvantageConfig) -> tuple[np.ndarray, np.ndarray]:
    """Group mean baseline; scale = std (group or batch) + eps, or 1 with ``scale="none"``.

    A group of one response has no baseline: mean 0 and std 1, so ``A_hat = R / (1 + eps)``
    (what PRL's released code does).
    """
    B, G = r.shape
    if cfg.scale == "none":
        base = np.repeat(r.mean(axis=1, keepdims=True), G, axis=1) if G > 1 else np.zeros_like(r)
        return base, np.ones_like(r)
    if G == 1:
        return np.zeros_like(r), np.ones_like(r) + cfg.eps
    base = np.repeat(r.mean(axis=1, keepdims=True), G, axis=1)
    if cfg.scale == "group":
        s = np.repeat(_std(r, 1, cfg.std), G, axis=1)
    else:
        s = np.full_like(r, float(_std(r.reshape(-1), None, cfg.std)))
    return base, s + cfg.eps


@register_estimator("rloo")
def rloo_estimator(r: np.ndarray, cfg: AdvantageConfig) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out baseline ``mean_{j != i} R_j``, scale 1 (RLOO); ``R`` itself for G = 1."""
    B, G = r.shape
    if G == 1:
        return np.zeros_like(r), np.ones_like(r)
    return (r.sum(axis=1, keepdims=True) - r) / (G - 1), np.ones_like(r)


@register_estimator("raw")
def raw_estimator(r: np.ndarray, cfg: AdvantageConfig) -> tuple[np.ndarray, np.ndarray]:
    """No baseline, no scale: ``A_hat = R`` (PRL's ``prm`` mode, verl's ``prm`` estimator)."""
    return np.zeros_like(r), np.ones_like(r)


def normalize_rewards(rewards: np.ndarray, cfg: AdvantageConfig | None = None) -> np.ndarray:
    """``A_hat`` of rewards shaped (B, G) (or (G,) for one group) under ``cfg``.

    Example:
        >>> normalize_rewards(np.array([1.0, 0.0, 0.0, 0.0, 1.0])).round(4).tolist()
        [1.0954, -0.7303, -0.7303, -0.7303, 1.0954]
        >>> normalize_rewards(np.array([1.0, 0.0, 0.0, 0.0, 1.0]),
        ...                   AdvantageConfig(std="population")).round(4).tolist()
        [1.2247, -0.8165, -0.8165, -0.8165, 1.2247]
    """
    cfg = cfg or AdvantageConfig()
    r = np.asarray(rewards, dtype=np.float64)
    flat = r.ndim == 1
    r2 = r[None] if flat else r
    base, scale = ESTIMATORS[cfg.estimator](r2, cfg)
    out = (r2 - base) / scale
    return out[0] if flat else out


# ---------------------------------------------------------------------------------- dense terms
def token_step_index(step_lengths: Sequence[int]) -> np.ndarray:
    """For each token, the index of its step. ``[2, 3] -> [0, 0, 1, 1, 1]``.

    Example:
        >>> token_step_index([2, 0, 3]).tolist()
        [0, 0, 2, 2, 2]
    """
    lengths = np.asarray(step_lengths, dtype=np.int64)
    return np.repeat(np.arange(len(lengths)), lengths)


def return_to_go(x: np.ndarray) -> np.ndarray:
    """``sum_{j >= t} x_j`` for every ``t`` (a reversed cumulative sum), float64.

    Example:
        >>> return_to_go(np.array([1.0, 2.0, 3.0])).tolist()
        [6.0, 5.0, 3.0]
    """
    x = np.asarray(x, dtype=np.float64)
    return np.cumsum(x[::-1])[::-1].copy()


@dataclass
class ResponseTerms:
    """One response's weighted terms, as the composition needs them.

    Attributes:
        step_lengths: Tokens per step (the response has ``sum(step_lengths)`` tokens).
        outcome: The verified outcome (1.0 / 0.0): decides correct vs incorrect for dominance.
        step: Per shaper, its step terms, shape (K,).
        token: Per shaper, its token terms, shape (L,).
        episode: Per shaper, its episode-end term.
        group: Per shaper, its group-end term for this response.
    """

    step_lengths: tuple[int, ...]
    outcome: float
    step: Mapping[str, Sequence[float]] = field(default_factory=dict)
    token: Mapping[str, Sequence[float]] = field(default_factory=dict)
    episode: Mapping[str, float] = field(default_factory=dict)
    group: Mapping[str, float] = field(default_factory=dict)


def terms_of_group(group: Any) -> list[ResponseTerms]:
    """The composition's view of a finished group (a :class:`~reasonenv.envs.group.GroupResult`):
    per member, its step, token, episode and group terms, kept apart."""
    out = []
    for i, ep in enumerate(group.episodes):
        out.append(ResponseTerms(
            step_lengths=tuple(ep.step_lengths),
            outcome=float(ep.outcome),
            step={k: np.asarray(v, dtype=np.float64) for k, v in ep.step_terms.items()},
            token={k: np.asarray(v, dtype=np.float64) for k, v in ep.token_terms.items()},
            episode=dict(ep.episode_terms),
            group={k: float(v[i]) for k, v in group.group_terms.items()},
        ))
    return out


@dataclass
class ComposeStats:
    """What the dominance clip did: groups seen, clipped, unenforceable; mean scale."""

    groups: int = 0
    clipped_groups: int = 0
    unenforceable_groups: int = 0
    scale_sum: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """Flat metrics (``clip_rate`` = clipped / groups with a clipped shaper)."""
        return {"groups": float(self.groups), "clipped_groups": float(self.clipped_groups),
                "unenforceable_groups": float(self.unenforceable_groups),
                "clip_rate": self.clipped_groups / self.groups if self.groups else 0.0,
                "mean_clip_scale": self.scale_sum / self.groups if self.groups else 1.0}


def _dense(resp: ResponseTerms, contributions: Mapping[str, Mapping[str, str]],
           clipped: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per token: (dense terms of unclipped shapers, dense terms of clipped shapers)."""
    n = int(sum(resp.step_lengths))
    tok_step = token_step_index(resp.step_lengths)  # (L,)
    parts = (np.zeros(n), np.zeros(n))
    for name, hooks in contributions.items():
        out = parts[1] if name in clipped else parts[0]
        if name in resp.step and hooks.get("step") in ("reward", "advantage"):
            s = np.asarray(resp.step[name], dtype=np.float64)  # (K,)
            if s.shape != (len(resp.step_lengths),):
                raise ValueError(f"shaper {name!r}: {s.shape[0]} step terms for {len(resp.step_lengths)} steps")
            if hooks["step"] == "reward":
                s = return_to_go(s)
            out += s[tok_step]
        if name in resp.token and hooks.get("token") in ("reward", "advantage"):
            x = np.asarray(resp.token[name], dtype=np.float64)  # (L,)
            if x.shape != (n,):
                raise ValueError(f"shaper {name!r}: {x.shape[0]} token terms for {n} tokens")
            out += return_to_go(x) if hooks["token"] == "reward" else x
    return parts


def _scalars(resp: ResponseTerms, contributions: Mapping[str, Mapping[str, str]], clipped: set[str],
             enters: str) -> tuple[float, float]:
    """(unclipped, clipped) sums of the episode + group terms that enter as ``enters``."""
    a = b = 0.0
    for name, hooks in contributions.items():
        v = 0.0
        if hooks.get("episode") == enters:
            v += float(resp.episode.get(name, 0.0))
        if hooks.get("group") == enters:
            v += float(resp.group.get(name, 0.0))
        if name in clipped:
            b += v
        else:
            a += v
    return a, b


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else 0.0


def clip_scale(gap: Callable[[float], float]) -> float:
    """The largest ``c`` in [0, 1] found with ``gap(c) > 0``, searching from the ends.

    ``gap(c)`` is the margin ``min_correct - max_incorrect`` of the group's mean token
    advantages when the clipped shapers' terms are scaled by ``c``. Returns 1.0 when
    ``gap(1) > 0``, 0.0 when ``gap(0) <= 0`` (nothing can be kept), else bisects between a
    feasible and an infeasible point and returns the feasible end pulled strictly inside
    (when the advantages are linear in ``c`` the margin is concave and this is the maximum).

    Example:
        >>> a0, a1 = np.array([1.0, 0.0]), np.array([-2.0, 3.0])   # correct, incorrect
        >>> round(clip_scale(lambda c: (a0 + c * a1)[0] - (a0 + c * a1)[1]), 6)
        0.2
    """
    if gap(1.0) > 0:
        return 1.0
    if gap(0.0) <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if gap(mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15:
            break
    c = lo * _SHRINK
    while c > 0 and gap(c) <= 0:  # float rounding at the boundary
        c *= 0.5
    return c


def compose_advantages(
    groups: Sequence[Sequence[ResponseTerms]],
    contributions: Mapping[str, Mapping[str, str]],
    config: AdvantageConfig | None = None,
    *,
    clip_to_outcome: Sequence[str] = (),
) -> tuple[list[list[np.ndarray]], ComposeStats]:
    """Token advantages for a batch of equal-sized groups (the rule in the module docstring).

    Args:
        groups: B groups of G responses (the batch; ``scale="batch"`` spans it).
        contributions: Per shaper, ``{hook: enters}`` (``RewardPipeline.contributions()``).
        config: The advantage estimator and its options.
        clip_to_outcome: Shapers whose terms are scaled down per group for outcome dominance.

    Returns:
        ``(advantages, stats)``: per group, per response, an array of shape (L_i,); stats of the
        dominance clip.

    Raises:
        ValueError: Groups of different sizes, or terms that do not match the token counts.
    """
    cfg = config or AdvantageConfig()
    clipped = set(clip_to_outcome)
    stats = ComposeStats()
    if not groups:
        return [], stats
    sizes = {len(g) for g in groups}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"compose_advantages needs non-empty groups of one size, got sizes {sorted(sizes)}")
    flat = [r for g in groups for r in g]
    B, G = len(groups), sizes.pop()
    rew = np.array([_scalars(r, contributions, clipped, "reward") for r in flat])  # (B*G, 2)
    adv = np.array([_scalars(r, contributions, clipped, "advantage") for r in flat])  # (B*G, 2)
    r0 = rearrange(rew[:, 0], "(b g) -> b g", b=B)
    r1 = rearrange(rew[:, 1], "(b g) -> b g", b=B)
    est = ESTIMATORS[cfg.estimator]

    def a_hat(b: int, c: float) -> np.ndarray:
        """Group b's normalised return with its clipped reward terms scaled by c, the other
        groups' terms as configured (only ``scale="batch"`` couples groups)."""
        r = r0 + r1
        r[b] = r0[b] + c * r1[b]
        base, scale = est(r, cfg)
        return ((r - base) / scale)[b]  # (G,)

    dense = [_dense(r, contributions, clipped) for r in flat]
    out: list[list[np.ndarray]] = []
    for b, group in enumerate(groups):
        idx = list(range(b * G, (b + 1) * G))
        c = 1.0
        correct = np.array([r.outcome > 0.5 for r in group])
        if clipped and correct.any() and not correct.all():
            # Mean token advantage of each response (one without tokens counts with its
            # response-level part) as a function of c.
            d0 = np.array([_mean(dense[i][0]) for i in idx])
            d1 = np.array([_mean(dense[i][1]) for i in idx])

            def gap(c: float, b=b, idx=idx, d0=d0, d1=d1, correct=correct) -> float:
                m = a_hat(b, c) + adv[idx, 0] + d0 + c * (adv[idx, 1] + d1)
                return float(m[correct].min() - m[~correct].max())

            c = clip_scale(gap)
            stats.groups += 1
            stats.scale_sum += c
            stats.clipped_groups += int(c < 1.0)
            stats.unenforceable_groups += int(c == 0.0 and gap(0.0) <= 0)
        elif clipped:
            stats.groups += 1
            stats.scale_sum += 1.0
        ah = a_hat(b, c)
        out.append([ah[k] + adv[i, 0] + dense[i][0] + c * (adv[i, 1] + dense[i][1])
                    for k, i in enumerate(idx)])
    return out, stats
