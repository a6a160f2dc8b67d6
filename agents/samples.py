"""From finished groups to train samples: each response's terms for the composition rule,
its token advantages, and right-padded tensors for the loss.

Example:
    >>> s = TrainSample([5, 6], [7, 8, 9], np.zeros(3), np.array([1.0, 1.0, -1.0]))
    >>> t = collate([s])
    >>> t["adv"].tolist(), t["mask"].tolist()   # position p predicts token p + 1
    ([[0.0, 1.0, 1.0, -1.0]], [[0.0, 1.0, 1.0, 1.0]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reasonenv.shaping.advantages import AdvantageConfig


@dataclass
class TrainSample:
    """One response to train on.

    Attributes:
        prompt_ids: Prompt token ids, (P,).
        response_ids: Response token ids, (L,).
        old_logprobs: log pi_old of each response token, (L,).
        advantages: Token advantages, (L,).
        ref_logprobs: log pi_ref per token, (L,), where known.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    old_logprobs: np.ndarray
    advantages: np.ndarray
    ref_logprobs: np.ndarray | None = None


def samples_of_group(group: Any, advantages: list[np.ndarray]) -> list[TrainSample | None]:
    """One :class:`TrainSample` per member; None for a response without sampled log-probs
    (a step the env had to cut) or without tokens."""
    out: list[TrainSample | None] = []
    for ep, adv in zip(group.episodes, advantages):
        ids, lps = ep.response_token_ids, ep.logprobs
        if ids is None or lps is None or not ids:
            out.append(None)
            continue
        ref = ep.ref_logprobs
        out.append(TrainSample(list(ep.prompt_token_ids), list(ids), np.asarray(lps, dtype=np.float64),
                               np.asarray(adv, dtype=np.float64),
                               np.asarray(ref, dtype=np.float64) if ref is not None else None))
    return out


def collate(samples: list[TrainSample]) -> dict[str, Any]:
    """Right-padded ``input_ids``/``attention_mask`` (N, T) and, aligned to the logits (N, T-1)
    (position ``p`` predicts token ``p + 1``), ``mask``, ``old``, ``adv``, ``ref``; ``first`` is
    the first position the mask covers in any row (the shortest prompt's length - 1)."""
    import torch

    seqs = [s.prompt_ids + s.response_ids for s in samples]
    T = max(len(q) for q in seqs)
    N = len(samples)
    input_ids = torch.zeros((N, T), dtype=torch.long)
    attn = torch.zeros((N, T), dtype=torch.long)
    mask, old, adv, ref = (torch.zeros((N, T - 1)) for _ in range(4))
    for n, (s, q) in enumerate(zip(samples, seqs)):
        input_ids[n, : len(q)] = torch.tensor(q)
        attn[n, : len(q)] = 1
        p, L = len(s.prompt_ids), len(s.response_ids)
        sl = slice(p - 1, p - 1 + L)  # logits position t predicts token t + 1
        mask[n, sl] = 1
        old[n, sl] = torch.as_tensor(s.old_logprobs, dtype=torch.float32)
        adv[n, sl] = torch.as_tensor(s.advantages, dtype=torch.float32)
        if s.ref_logprobs is not None:
            ref[n, sl] = torch.as_tensor(s.ref_logprobs, dtype=torch.float32)
    # the first score position any row needs: token_logprobs builds no logits before it
    first = min(len(s.prompt_ids) for s in samples) - 1
    return {"input_ids": input_ids, "attention_mask": attn, "mask": mask, "old": old,
            "adv": adv, "ref": ref, "first": max(0, first)}


def resolve_advantage_config(group_cfg: Any, pipeline: Any) -> AdvantageConfig:
    """The run's :class:`AdvantageConfig`: ``algo.advantage`` with the estimator the shapers ask
    for when it is unset (``None``); a conflict is an error naming both.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> pipe = NS(slots=[NS(name="prl", shaper=NS(estimator="raw"))])
        >>> resolve_advantage_config(NS(estimator=None, scale="group", std="unbiased", eps=1e-6),
        ...                          pipe).estimator
        'raw'
    """
    wanted = {s.name: s.shaper.estimator for s in pipeline.slots if getattr(s.shaper, "estimator", None)}
    if len(set(wanted.values())) > 1:
        raise ValueError(f"shapers ask for different advantage estimators: {wanted}")
    est = group_cfg.estimator
    if est is None:
        est = next(iter(wanted.values()), "grpo")
    elif wanted and est not in wanted.values():
        (name, want), = wanted.items()
        raise ValueError(
            f"algo.advantage.estimator={est!r} conflicts with shaper {name!r}, which needs "
            f"{want!r} (unset algo.advantage.estimator or change the shaper's options)"
        )
    return AdvantageConfig(estimator=est, scale=group_cfg.scale, std=group_cfg.std, eps=group_cfg.eps)
