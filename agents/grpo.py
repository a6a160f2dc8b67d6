"""The GRPO family's math, as small pure functions the tests call directly.

Shapes: ``G`` responses per group, response ``i`` has ``L_i`` tokens in ``K_i`` steps.

Advantage composition (one rule for plain GRPO, PRL, PROGRS, PAV and plugin shapers):

1. ``r_i`` = the weighted episode-level terms that enter the **reward** (the ``outcome``
   shaper's term, plugin episode terms, group terms such as PROGRS with ``inject="reward"``);
   ``A_hat_i = (r_i - mean r) / (std r + eps)`` over the group (plain GRPO: ``r_i = o_i``).
2. ``B_i`` = episode/group-level terms that enter the **advantage** (PROGRS's ``lam * b_i``).
3. Per-step terms of step shapers: ``enters="advantage"`` terms join their own step's tokens
   (PAV: ``Q^pi + alpha * A^mu``); ``enters="reward"`` terms join as their return-to-go
   ``sum_{h >= k} term_h`` (a dense reward).
4. PRL (REWARDS.md section 1): ``orm`` mode adds ``-S_{b_k} / eta`` to every token of step k;
   ``prm`` mode uses ``o_i - S_t / eta`` per token instead of the normalised outcome.

Token advantage = ``A_hat_i + B_i + step terms + PRL term``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reasonenv.shaping.advantages import grpo_advantages


@dataclass(frozen=True)
class ShaperMeta:
    """What the composition needs to know about a configured shaper."""

    name: str
    hooks: tuple[str, ...]  # subset of ("step", "episode", "group")
    enters: str  # "reward" | "advantage"
    weight: float = 1.0
    options: Mapping[str, Any] | None = None  # the shaper's config (PRL reads eta, mode)


@dataclass
class Response:
    """One sampled response as the trainer sees it.

    Attributes:
        prompt_ids: Prompt token ids, shape (P,).
        step_ids: Token ids of each step.
        old_logprobs: log pi_old of each response token, shape (L,).
        outcome: Verified outcome o_i.
        step_terms: Per step, ``{shaper: weighted term}`` as the env reported them.
        group_terms: ``{shaper: weighted term}`` delivered at group end.
        ref_logprobs: log pi_ref per token (needed by PRL and the k3 KL), shape (L,).
    """

    prompt_ids: list[int]
    step_ids: list[list[int]]
    old_logprobs: np.ndarray
    outcome: float
    step_terms: list[dict[str, float]]
    group_terms: dict[str, float]
    ref_logprobs: np.ndarray | None = None

    @property
    def response_ids(self) -> list[int]:
        return [t for s in self.step_ids for t in s]

    @property
    def boundaries(self) -> list[int]:
        """Index of the last token of each step (b_k), 0-based."""
        return (np.cumsum([len(s) for s in self.step_ids]) - 1).tolist()


def step_index_of_tokens(step_lengths: Sequence[int]) -> np.ndarray:
    """For each token, the index of its step. ``[2, 3] -> [0, 0, 1, 1, 1]``."""
    return np.repeat(np.arange(len(step_lengths)), step_lengths)


def compose_advantages(
    group: Sequence[Response], shapers: Sequence[ShaperMeta], eps: float = 1e-6
) -> list[np.ndarray]:
    """Token advantages for one group (see the module docstring for the rule).

    Returns:
        For each response, an array of shape (L_i,).
    """
    metas = {m.name: m for m in shapers}
    prl = metas.get("prl")
    r = np.zeros(len(group))
    b = np.zeros(len(group))
    for i, resp in enumerate(group):
        for name, m in metas.items():
            if "step" in m.hooks:
                continue  # per-step terms are placed per token below
            total = sum(t.get(name, 0.0) for t in resp.step_terms) + resp.group_terms.get(name, 0.0)
            if m.enters == "reward":
                r[i] += total
            else:
                b[i] += total
        if "outcome" not in metas:  # no outcome shaper configured: the outcome is the reward
            r[i] += resp.outcome
    a_hat = grpo_advantages(r, eps)
    out = []
    for i, resp in enumerate(group):
        lengths = [len(s) for s in resp.step_ids]
        tok_step = step_index_of_tokens(lengths)  # (L,)
        n_steps = len(lengths)
        base = a_hat[i] + b[i]
        adv = np.full(len(tok_step), base, dtype=np.float64)
        for name, m in metas.items():
            if "step" not in m.hooks or name == "prl":
                continue
            per_step = np.array([resp.step_terms[k].get(name, 0.0) for k in range(n_steps)])
            if m.enters == "reward":
                per_step = np.cumsum(per_step[::-1])[::-1]  # return-to-go
            adv += per_step[tok_step]
        if prl is not None:
            adv += prl_process_term(resp, prl, tok_step, a_hat=a_hat[i])
        out.append(adv)
    return out


def prl_process_term(resp: Response, meta: ShaperMeta, tok_step: np.ndarray, *, a_hat: float) -> np.ndarray:
    """PRL's contribution to each token's advantage (weighted).

    ``orm``: ``-S_{b_k} / eta`` for every token of step k. ``prm``: ``o_i - S_t / eta`` replaces
    the normalised outcome, so the returned term also removes ``a_hat`` from the base.
    """
    from reasonenv.plugins.prl import kl_to_go

    if resp.ref_logprobs is None:
        raise ValueError("PRL advantages need ref_logprobs for every response")
    opts = dict(meta.options or {})
    eta = float(opts.get("eta", 200.0))
    mode = opts.get("mode", "orm")
    d = np.asarray(resp.old_logprobs, dtype=np.float64) - np.asarray(resp.ref_logprobs, dtype=np.float64)
    s = kl_to_go(d)  # (L,)
    if mode == "orm":
        b_k = np.asarray(resp.boundaries)[tok_step]  # last token of each token's step
        return meta.weight * (-s[b_k] / eta)
    if mode == "prm":
        return (resp.outcome - a_hat) + meta.weight * (-s / eta)
    raise ValueError(f"prl mode must be 'orm' or 'prm', got {mode!r}")


def ppo_clip_objective(
    logp: Any, old_logp: Any, adv: Any, mask: Any, *, clip_eps: float = 0.2,
    ref_logp: Any = None, kl_coef: float = 0.0, denom: float | None = None,
) -> tuple[Any, dict[str, Any]]:
    """PPO-clip loss with token-mean aggregation and an optional k3 KL term (torch tensors).

    Args:
        logp: log pi_theta of the taken tokens, (N, T).
        old_logp: log pi_old, (N, T).
        adv: token advantages, (N, T).
        mask: 1 for response tokens, 0 for padding, (N, T).
        clip_eps: PPO clip range.
        ref_logp: log pi_ref, (N, T), needed when ``kl_coef > 0``.
        kl_coef: beta of the k3 estimator ``exp(r) - r - 1`` with ``r = ref - logp``.
        denom: Token count the sum is divided by (the whole batch's, so micro-batches and
            processes add up to the batch token mean); default: this call's mask sum.

    Returns:
        ``(loss, stats)`` with stats ``clip_frac``, ``kl`` (sums over tokens, for logging).
    """
    import torch

    mask = mask.to(logp.dtype)
    n = mask.sum() if denom is None else torch.as_tensor(denom, dtype=logp.dtype)
    ratio = torch.exp(logp - old_logp)  # (N, T)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    per_tok = -torch.minimum(unclipped, clipped)  # (N, T)
    stats: dict[str, Any] = {
        "clip_tokens": (((ratio - 1.0).abs() > clip_eps).to(logp.dtype) * mask).sum().detach(),
    }
    if ref_logp is not None:
        r = ref_logp - logp
        k3 = torch.exp(r) - r - 1.0  # (N, T), >= 0
        stats["kl_sum"] = (k3 * mask).sum().detach()
        if kl_coef:
            per_tok = per_tok + kl_coef * k3
    loss = (per_tok * mask).sum() / n
    return loss, stats


def token_logprobs(model: Any, input_ids: Any, attention_mask: Any, temperature: float = 1.0):
    """log-prob of each next token and the per-position entropy.

    Returns:
        ``(logp, entropy)``, both (N, T-1): position ``t`` scores ``input_ids[:, t+1]``.
    """
    import torch

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)  # (N, T-1, V)
    logp = logp_all.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy
