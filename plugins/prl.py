"""PRL: the entropy-ratio process reward (arXiv 2601.10201), see REWARDS.md section 1.

The KL-regularised objective ``E[r] - (1/eta) KL(pi || pi_ref)`` has the optimum
``pi* ~ pi_ref * exp(eta * r)``; its log-ratio splits over tokens, so the outcome can be handed out
step by step. Per token ``d_j = log pi_old(a_j) - log pi_ref(a_j)``; the KL-to-go is
``S_t = sum_{j >= t} d_j``.

* The env emits, causally for step k, ``-(1/eta) * sum_{j in step k} d_j``
  (:meth:`PRLShaper.step_terms`, :func:`step_rewards`). Its return-to-go from step k is
  ``-(1/eta) * S_{first token of step k}``.
* The trainer builds token advantages with :func:`prl_token_advantages` ("orm": GRPO advantage
  of the outcome minus ``S_{b_k}/eta``; "prm": ``o_i - S_t/eta``) and may add the k3 KL
  (:func:`k3_kl`) with coefficient ``kl_coef``.

Indices are 0-based: a response of L tokens has boundaries ``b_1 < ... < b_K = L - 1`` (the index
of each step's last token).

Example:
    >>> import numpy as np

    >>> d = np.array([0.5, -0.25, 1.0])
    >>> kl_to_go(d).tolist()
    [1.25, 0.75, 1.0]
    >>> step_rewards(d, [1, 2], eta=1.0).tolist()
    [-0.25, -1.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reasonenv.segmentation import Segmenter
from reasonenv.shaping.advantages import grpo_advantages
from reasonenv.shaping.base import Shaper, StepContext
from reasonenv.shaping.protocols import RefRequest

MODES = ("orm", "prm")
STD_EPS = 1e-6  # REWARDS.md: A_hat = (o - mean) / (std + 1e-6)


# -- pure functions (the trainer and the tests call these) ---------------------------------------
def kl_to_go(d: np.ndarray) -> np.ndarray:
    """KL-to-go ``S_t = sum_{j >= t} d_j`` (a reversed cumulative sum).

    Args:
        d: Per-token log-ratios ``log pi_old - log pi_ref``, shape (L,).

    Returns:
        ``S``, shape (L,), float64.

    Example:
        >>> kl_to_go(np.array([1.0, 2.0, 3.0])).tolist()
        [6.0, 5.0, 3.0]
    """
    d = np.asarray(d, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError(f"prl: d must be 1-D, got shape {d.shape}")
    return np.cumsum(d[::-1])[::-1].copy()


def _check_boundaries(boundaries: Sequence[int], length: int) -> np.ndarray:
    """Validate last-token indices ``b_1 < ... < b_K = length - 1`` and return them as an array."""
    b = np.asarray(boundaries, dtype=np.int64).reshape(-1)
    if length == 0:
        if b.size:
            raise ValueError(f"prl: boundaries {b.tolist()} given for an empty response")
        return b
    if b.size == 0 or b[0] < 0 or b[-1] != length - 1 or np.any(np.diff(b) <= 0):
        raise ValueError(
            f"prl: boundaries must be strictly increasing token indices ending at L-1={length - 1}, "
            f"got {b.tolist()}"
        )
    return b


def step_rewards(d: np.ndarray, boundaries: Sequence[int], eta: float) -> np.ndarray:
    """Causal per-step PRL rewards ``r_k = -(1/eta) * sum_{j in step k} d_j``.

    Args:
        d: Per-token log-ratios, shape (L,).
        boundaries: Last-token index of each step, ``b_1 < ... < b_K = L - 1``.
        eta: Inverse KL strength (> 0).

    Returns:
        ``r``, shape (K,).

    Example:
        >>> step_rewards(np.array([1.0, 1.0, 2.0, 4.0]), [0, 2, 3], eta=2.0).tolist()
        [-0.5, -1.5, -2.0]
    """
    d = np.asarray(d, dtype=np.float64)
    b = _check_boundaries(boundaries, d.shape[0])
    starts = np.concatenate(([0], b[:-1] + 1)).astype(np.int64)
    sums = np.array([d[s : e + 1].sum() for s, e in zip(starts, b)], dtype=np.float64)
    return -sums / float(eta)


def token_step_index(boundaries: Sequence[int], length: int) -> np.ndarray:
    """The step index k of every token, shape (L,).

    Example:
        >>> token_step_index([1, 4], 5).tolist()
        [0, 0, 1, 1, 1]
    """
    b = _check_boundaries(boundaries, length)
    return np.searchsorted(b, np.arange(length), side="left").astype(np.int64)


def prl_token_advantages(
    outcomes: np.ndarray,
    d_list: Sequence[np.ndarray],
    boundaries_list: Sequence[Sequence[int]] | None,
    eta: float,
    mode: str = "orm",
) -> list[np.ndarray]:
    """Per-token PRL advantages of one group of G responses (REWARDS.md section 1).

    * ``"orm"``: ``A_hat_i = (o_i - mean o) / (std o + 1e-6)``; every token of step k gets
      ``A_hat_i - S_{b_k} / eta``.
    * ``"prm"``: token t gets ``o_i - S_t / eta`` (no group normalisation; boundaries unused).

    Args:
        outcomes: Verified outcomes, shape (G,).
        d_list: Per response, ``log pi_old - log pi_ref`` per token, shape (L_i,).
        boundaries_list: Per response, its last-token indices (may be None in "prm" mode).
        eta: Inverse KL strength (> 0).
        mode: ``"orm"`` or ``"prm"``.

    Returns:
        Per response, token advantages of shape (L_i,).

    Example:
        >>> adv = prl_token_advantages(np.array([1.0, 0.0]), [np.zeros(2), np.array([0.0, 2.0])],
        ...                            [[1], [0, 1]], eta=2.0, mode="orm")
        >>> [a.round(4).tolist() for a in adv]
        [[1.0, 1.0], [-2.0, -2.0]]
    """
    if mode not in MODES:
        raise ValueError(f"prl: mode must be one of {MODES}, got {mode!r}")
    if not eta > 0:
        raise ValueError(f"prl: eta must be > 0, got {eta!r}")
    o = np.asarray(outcomes, dtype=np.float64).reshape(-1)  # (G,)
    if len(d_list) != o.shape[0]:
        raise ValueError(f"prl: {o.shape[0]} outcomes but {len(d_list)} log-ratio arrays")
    out: list[np.ndarray] = []
    if mode == "prm":
        for o_i, d in zip(o, d_list):
            out.append(o_i - kl_to_go(d) / eta)
        return out
    if boundaries_list is None or len(boundaries_list) != o.shape[0]:
        raise ValueError("prl: 'orm' mode needs one boundaries list per response")
    a_hat = grpo_advantages(o, STD_EPS)
    for a_i, d, bounds in zip(a_hat, d_list, boundaries_list):
        s = kl_to_go(d)  # (L,)
        b = _check_boundaries(bounds, s.shape[0])  # (K,)
        step_of_token = np.searchsorted(b, np.arange(s.shape[0]), side="left")  # (L,)
        out.append(a_i - s[b][step_of_token] / eta)
    return out


def k3_kl(logp: np.ndarray, ref_logp: np.ndarray) -> np.ndarray:
    """The k3 KL estimator per token: ``exp(ref - logp) - (ref - logp) - 1`` (>= 0).

    Example:
        >>> k3_kl(np.array([-1.0, -2.0]), np.array([-1.0, -1.0])).round(4).tolist()
        [0.0, 0.7183]
    """
    x = np.asarray(ref_logp, dtype=np.float64) - np.asarray(logp, dtype=np.float64)
    return np.expm1(x) - x


# -- the shaper ---------------------------------------------------------------------------------
class PRLShaper(Shaper):
    """Causal PRL step reward ``-(1/eta) * sum_{j in step} (log pi_old - log pi_ref)``.

    Hook point: step. Services: ``ref_logprobs`` (one batched call per :meth:`step_terms`).
    Needs the policy's token ids and log-probs for every step and the prompt's token ids (an env
    with a tokenizer). Enters ``"advantage"`` in both modes: the PRL trainer adds the process
    part after normalising the outcome ("orm") or uses ``o_i - S_t/eta`` un-normalised ("prm"),
    via :func:`prl_token_advantages`; the env terms are the causal rewards whose return-to-go is
    that process part. The outcome itself comes from the ``outcome`` shaper, not from here.

    Example:
        >>> from reasonenv.shaping.protocols import Services
        >>> class Ref:  # a stand-in reference model: log-prob -1 for every token
        ...     def logprobs(self, reqs): return [np.full(len(r.new_ids), -1.0) for r in reqs]
        ...     def release(self, key): pass
        >>> ctx = StepContext.simple("ab")
        >>> ctx = StepContext(0, 0, ctx.problem, "", 0, ("ab",), ((5, 6),), ((-0.5, -0.5),), (1,))
        >>> PRLShaper(PRLShaper.Config(eta=2.0), Services(ref_logprobs=Ref())).step_terms([ctx])
        [-0.5]
    """

    name = "prl"
    enters = "advantage"
    services = ("ref_logprobs",)
    bounds = None

    @dataclass
    class Config:
        """PRL options (defaults from the paper's released code)."""

        eta: float = 200.0  # inverse KL strength: pi* ~ pi_ref * exp(eta * r); 1 and 100 also used
        mode: str = "orm"  # "orm": GRPO(o) - S_{b_k}/eta (paper default); "prm": o - S_t/eta
        split: str = "fixed:256"  # step segmentation of the paper; the env uses it by default
        kl_coef: float = 0.0  # beta of the optional k3 KL loss term (trainer); 0: KL via 1/eta

        def __post_init__(self) -> None:
            if not self.eta > 0:
                raise ValueError(f"prl: eta must be > 0, got {self.eta!r}")
            if self.mode not in MODES:
                raise ValueError(f"prl: mode must be one of {MODES}, got {self.mode!r}")
            if not self.kl_coef >= 0:
                raise ValueError(f"prl: kl_coef must be >= 0, got {self.kl_coef!r}")
            Segmenter(self.split)  # raises ValueError on an unknown split

    def _request(self, ctx: StepContext) -> RefRequest:
        """The reference-scoring request of one step (checks the fields PRL needs)."""
        token_ids, logprobs = ctx.token_ids, ctx.logprobs
        for field_name, value in (("token_ids", token_ids), ("logprobs", logprobs)):
            if value is None:
                raise ValueError(
                    f"shaper 'prl' needs the action's {field_name!r} for every step "
                    f"(slot {ctx.slot}, step {ctx.step_index}); pass them in the action"
                )
        assert token_ids is not None and logprobs is not None
        if ctx.prompt_token_ids is None:
            raise ValueError("prl needs an env tokenizer (StepContext.prompt_token_ids is None)")
        if len(token_ids) != len(logprobs):
            raise ValueError(
                f"shaper 'prl': step {ctx.step_index} has {len(token_ids)} token ids but "
                f"{len(logprobs)} logprobs"
            )
        context = list(ctx.prompt_token_ids)
        for k, ids in enumerate(ctx.step_token_ids[:-1]):
            if ids is None:
                raise ValueError(f"shaper 'prl' needs the action's 'token_ids' of earlier step {k}")
            context.extend(ids)
        return RefRequest(
            key=(ctx.slot, ctx.episode_id), context_ids=tuple(context), new_ids=tuple(token_ids)
        )

    def step_terms(self, steps: Sequence[StepContext]) -> list[float]:
        """``-(1/eta) * sum_j (logprob_old_j - logprob_ref_j)`` per context, one scorer call."""
        if not steps:
            return []
        requests = [self._request(ctx) for ctx in steps]
        if self.svc is None:
            raise ValueError("shaper 'prl' needs service(s) ['ref_logprobs']")
        self.svc.require(self.name, self.services)
        ref = self.svc.ref_logprobs.logprobs(requests)
        if len(ref) != len(requests):
            raise ValueError(
                f"shaper 'prl': ref scorer returned {len(ref)} arrays for {len(requests)} requests"
            )
        eta = float(self.config.eta)
        out: list[float] = []
        for ctx, ref_lp in zip(steps, ref):
            old = np.asarray(ctx.logprobs, dtype=np.float64)  # (n,)
            ref_lp = np.asarray(ref_lp, dtype=np.float64).reshape(-1)  # (n,)
            if ref_lp.shape != old.shape:
                raise ValueError(
                    f"shaper 'prl': ref scorer gave {ref_lp.shape[0]} log-probs for "
                    f"{old.shape[0]} tokens (step {ctx.step_index})"
                )
            out.append(float(-(old - ref_lp).sum() / eta) + 0.0)  # + 0.0: no -0.0
        return out
