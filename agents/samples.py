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


def collate_packed(samples: list[TrainSample]) -> dict[str, Any]:
    """Padding-free rows for the loss forward (``algo.pack``): the samples' prompt + response
    sequences packed first-fit-decreasing into rows no longer than the longest sequence, with
    ``position_ids`` restarting at 0 for each sequence. transformers' causal LMs read those
    restarts as sequence boundaries and mask attention across them (a block-diagonal causal
    mask; flash-attention's varlen kernels on GPU); ``Trainer.check_packing`` verifies that the
    model does. No row is longer than the padded batch's rows, so attention costs no more per
    row, and there are fewer rows, with less padding.

    Returns:
        ``input_ids``, ``position_ids`` (R, T); ``src``: (rows, columns) of the logits positions
        that score each response token, sample by sample; ``dst``: where each goes in the
        response-aligned (N, L) layout of ``mask``, ``old``, ``adv``, ``ref`` (column ``j`` is
        response token ``j``); ``first``: the first column any row needs logits for.

    Example:
        >>> a = TrainSample([1, 2], [3, 4, 5], np.zeros(3), np.ones(3))
        >>> b = TrainSample([6], [7], np.zeros(1), np.ones(1))
        >>> c = TrainSample([8, 9], [10], np.zeros(1), np.ones(1))
        >>> t = collate_packed([a, b, c])  # three sequences, two rows: b fits after c
        >>> t["input_ids"].tolist(), t["position_ids"].tolist()
        ([[1, 2, 3, 4, 5], [8, 9, 10, 6, 7]], [[0, 1, 2, 3, 4], [0, 1, 2, 0, 1]])
        >>> [x.tolist() for x in t["src"]], [x.tolist() for x in t["dst"]]
        ([[0, 0, 0, 1, 1], [1, 2, 3, 1, 3]], [[0, 0, 0, 2, 1], [0, 1, 2, 0, 0]])
    """
    import torch

    seqs = [s.prompt_ids + s.response_ids for s in samples]
    cap = max(len(q) for q in seqs)
    rows: list[list[int]] = []
    used: list[int] = []
    for i in sorted(range(len(seqs)), key=lambda i: (-len(seqs[i]), i)):
        for r in range(len(rows)):
            if used[r] + len(seqs[i]) <= cap:
                rows[r].append(i)
                used[r] += len(seqs[i])
                break
        else:
            rows.append([i])
            used.append(len(seqs[i]))
    T, N = max(used), len(samples)
    L = max(len(s.response_ids) for s in samples)
    input_ids = torch.zeros((len(rows), T), dtype=torch.long)
    position_ids = torch.zeros((len(rows), T), dtype=torch.long)
    mask, old, adv, ref = (torch.zeros((N, L)) for _ in range(4))
    src_r: list[int] = []
    src_c: list[int] = []
    dst_r: list[int] = []
    dst_c: list[int] = []
    for r, members in enumerate(rows):
        o = 0
        for i in members:
            q, s = seqs[i], samples[i]
            p, n = len(s.prompt_ids), len(s.response_ids)
            input_ids[r, o: o + len(q)] = torch.tensor(q)
            position_ids[r, o: o + len(q)] = torch.arange(len(q))
            src_r += [r] * n
            src_c += range(o + p - 1, o + p - 1 + n)  # logits position t predicts token t + 1
            dst_r += [i] * n
            dst_c += range(n)
            mask[i, :n] = 1
            old[i, :n] = torch.as_tensor(s.old_logprobs, dtype=torch.float32)
            adv[i, :n] = torch.as_tensor(s.advantages, dtype=torch.float32)
            if s.ref_logprobs is not None:
                ref[i, :n] = torch.as_tensor(s.ref_logprobs, dtype=torch.float32)
            o += len(q)
        position_ids[r, o:] = torch.arange(T - o)  # the padding tail: a sequence of its own
    # the first column any row needs logits for (the row's first prompt's length - 1)
    first = min(len(samples[m[0]].prompt_ids) for m in rows) - 1
    return {"input_ids": input_ids, "position_ids": position_ids,
            "src": (torch.tensor(src_r), torch.tensor(src_c)),
            "dst": (torch.tensor(dst_r), torch.tensor(dst_c)),
            "mask": mask, "old": old, "adv": adv, "ref": ref, "first": max(0, first)}


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
