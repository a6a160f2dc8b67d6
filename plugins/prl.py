"""PRL: the entropy-ratio process reward (arXiv 2601.10201), docs/shapers.md section "prl".

The KL-regularised objective ``E[r] - (1/eta) KL(pi || pi_ref)`` has the optimum
``pi* ~ pi_ref * exp(eta * r)``; its log-ratio splits over tokens, so the outcome can be handed out
step by step. Per token ``d_j = log pi_old(a_j) - log pi_ref(a_j)``; the KL-to-go is
``S_t = sum_{j >= t} d_j``.

What the shaper contributes (the trainer composes it like any other shaper):

* **step** (``"report"``): the causal env reward of step k, ``-(1/eta) * sum_{j in step k} d_j``
  (:func:`prl_step_reward`). Its return-to-go from step k is ``-(1/eta) * S_{first token of k}``.
* **token**: :func:`prl_token_terms`. ``"orm"`` mode (GRPO + PRL): every token of step k gets
  ``-S_{b_k} / eta`` (``b_k`` = the step's last token), entering the **advantage**, on top of the
  GRPO-normalised outcome. ``"prm"`` mode: token t gets the dense reward ``-d_t / eta``, entering as
  **reward** (its return-to-go is ``-S_t / eta``), and the shaper asks for the ``"raw"``
  estimator, so the advantage is ``R_i - S_t / eta`` with ``R_i`` the un-normalised outcome
  reward (format penalty and weight included).

The released code's scripts: ``run_grpo.sh`` (eta 200, ``adv_estimator=grpo``) trains plain GRPO;
``run_grpo-3.sh`` runs PRL in ``prm`` mode with eta 100 (``configs/prl_prm.yaml``); ``orm`` mode
exists in the code (``prm.adv=orm``) and is ``configs/prl.yaml``. At the first update
``pi_old = pi_ref``, so the process term is exactly 0.

Example:
    >>> import numpy as np

    >>> d = np.array([0.5, -0.25, 1.0])
    >>> prl_token_terms(d, [2, 1], eta=1.0, mode="orm").tolist()
    [-0.75, -0.75, -1.0]
    >>> prl_token_terms(d, [2, 1], eta=1.0, mode="prm").tolist()
    [-0.5, 0.25, -1.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reasonenv.segmentation import Segmenter
from reasonenv.shaping.advantages import return_to_go, token_step_index
from reasonenv.shaping.base import EpisodeRecord, Shaper, StepContext

MODES = ("orm", "prm")


# -- pure functions (the shaper and the tests call these) ----------------------------------------
def prl_step_reward(logprobs: Sequence[float], ref_logprobs: Sequence[float], eta: float) -> float:
    """Causal step reward ``-(1/eta) * sum_j (log pi_old_j - log pi_ref_j)`` over one step.

    Example:
        >>> prl_step_reward([-1.0, -2.0], [-1.5, -1.0], eta=2.0)
        0.25
    """
    d = np.asarray(logprobs, dtype=np.float64) - np.asarray(ref_logprobs, dtype=np.float64)
    return float(-d.sum() / float(eta)) + 0.0  # + 0.0: no -0.0


def prl_token_terms(d: np.ndarray, step_lengths: Sequence[int], eta: float, mode: str) -> np.ndarray:
    """PRL's per-token terms of one response (see the module docstring).

    Args:
        d: ``log pi_old - log pi_ref`` per token, shape (L,).
        step_lengths: Tokens per step (summing to L).
        eta: Inverse KL strength (> 0).
        mode: ``"orm"``: ``-S_{b_k}/eta`` for every token of step k (an advantage term);
            ``"prm"``: ``-d_t/eta`` (a dense reward; its return-to-go is ``-S_t/eta``).

    Returns:
        Shape (L,), float64.
    """
    if mode not in MODES:
        raise ValueError(f"prl: mode must be one of {MODES}, got {mode!r}")
    d = np.asarray(d, dtype=np.float64).reshape(-1)  # (L,)
    lengths = np.asarray(step_lengths, dtype=np.int64)
    if lengths.sum() != d.shape[0] or np.any(lengths < 0):
        raise ValueError(f"prl: step lengths {lengths.tolist()} do not cover {d.shape[0]} tokens")
    if mode == "prm":
        return -d / float(eta)
    s = return_to_go(d)  # S_t, (L,)
    last = np.cumsum(lengths) - 1  # b_k per step (K,)
    return -s[last[token_step_index(lengths)]] / float(eta)


# -- the shaper ---------------------------------------------------------------------------------
class PRLShaper(Shaper):
    """PRL's KL-to-go process reward against the frozen reference (see the module docstring).

    Hook points: step (the causal env reward, ``"report"``) and token (what the trainer uses).
    Services: ``ref_logprobs`` (the pipeline scores every step once and hands the values in).
    Needs the policy's token ids and log-probs for every step.

    Example:
        >>> ctx = StepContext.simple("ab")
        >>> ctx = StepContext(0, 0, ctx.problem, "", 0, ("ab",), ((5, 6),), ((-0.5, -0.5),), (1,),
        ...                   step_ref_logprobs=((-1.0, -1.0),))
        >>> PRLShaper(PRLShaper.Config(eta=2.0)).step_terms([ctx])
        [-0.5]
    """

    name = "prl"
    enters = {"step": "report", "token": "advantage"}
    services = ("ref_logprobs",)
    bounds = None

    @dataclass
    class Config:
        """PRL options (defaults: the released code's orm path; docs/shapers.md)."""

        eta: float = 200.0  # inverse KL strength: pi* ~ pi_ref * exp(eta * r) (released: 200, 100)
        mode: str = "orm"  # "orm": GRPO(R) - S_{b_k}/eta; "prm": R - S_t/eta (raw estimator)
        split: str = "fixed:256"  # step segmentation of the paper; the env uses it by default

        def __post_init__(self) -> None:
            if not self.eta > 0:
                raise ValueError(f"prl: eta must be > 0, got {self.eta!r}")
            if self.mode not in MODES:
                raise ValueError(f"prl: mode must be one of {MODES}, got {self.mode!r}")
            Segmenter(self.split)  # raises ValueError on an unknown split

    def __init__(self, config: Config | None = None, services: object = None) -> None:
        super().__init__(config, services)
        prm = self.config.mode == "prm"
        self.enters = {"step": "report", "token": "reward" if prm else "advantage"}  # type: ignore[misc]
        self.estimator = "raw" if prm else None  # type: ignore[misc]

    @staticmethod
    def _checked(ctx_or_rec: StepContext | EpisodeRecord, k: int, ids, lps, ref) -> np.ndarray:
        """``d`` of step k, after checking that the fields PRL needs are there."""
        for field_name, value in (("token_ids", ids), ("logprobs", lps)):
            if value is None:
                raise ValueError(
                    f"shaper 'prl' needs the action's {field_name!r} for every step "
                    f"(slot {ctx_or_rec.slot}, step {k}); pass them in the action"
                )
        if len(ids) != len(lps):
            raise ValueError(f"shaper 'prl': step {k} has {len(ids)} token ids but {len(lps)} logprobs")
        if ref is None or len(ref) != len(lps):
            raise ValueError(f"shaper 'prl': no reference log-probs for step {k} (slot {ctx_or_rec.slot})")
        return np.asarray(lps, dtype=np.float64) - np.asarray(ref, dtype=np.float64)

    def step_terms(self, steps: Sequence[StepContext]) -> list[float]:
        """``-(1/eta) * sum_j (logprob_old_j - logprob_ref_j)`` per context."""
        out = []
        for ctx in steps:
            self._checked(ctx, ctx.step_index, ctx.token_ids, ctx.logprobs, ctx.ref_logprobs)
            out.append(prl_step_reward(ctx.logprobs, ctx.ref_logprobs, self.config.eta))  # type: ignore[arg-type]
        return out

    def token_terms(self, episodes: Sequence[EpisodeRecord]) -> list[np.ndarray]:
        """:func:`prl_token_terms` of each finished episode."""
        out = []
        for rec in episodes:
            refs = rec.step_ref_logprobs if len(rec.step_ref_logprobs) == len(rec.steps) else (None,) * len(rec.steps)
            d = [self._checked(rec, k, ids, lps, ref) for k, (ids, lps, ref) in
                 enumerate(zip(rec.step_token_ids, rec.step_logprobs, refs))]
            flat = np.concatenate(d) if d else np.zeros(0)
            out.append(prl_token_terms(flat, rec.step_lengths, self.config.eta, self.config.mode))
        return out
