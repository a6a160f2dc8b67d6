"""The GRPO family's loss, as small pure functions the tests call directly (torch).

Advantages come from :func:`reasonenv.shaping.advantages.compose_advantages` (torch-free: one
rule for every shaper, by declared contribution). Here: the PPO-clip policy loss with its
aggregations, the k3 KL estimator, and per-token log-probs of a causal LM.

Shapes: ``N`` sequences in a (micro-)batch, ``T`` positions (right-padded; ``mask`` marks the
response tokens).

Loss per token ``t`` of sequence ``n`` (TRL's GRPOTrainer / DAPO conventions):
``l = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A) + beta * k3`` with
``rho = exp(logp - old_logp)`` and ``k3 = exp(ref - logp) - (ref - logp) - 1``.
Aggregations (``agg``):

* ``"token_mean"`` (default; TRL's ``dapo``): ``sum_{n,t} l / (tokens in the whole batch)``;
* ``"sequence_mean"`` (the original GRPO; TRL's ``grpo``): ``mean_n (sum_t l / L_n)``;
* ``"dr_grpo"`` (Dr. GRPO): ``sum_{n,t} l / (N * max_tokens)``, a constant normaliser.

Micro-batches and processes pass the WHOLE batch's normaliser as ``denom`` (see
:func:`loss_denominator`) so that their losses add up to the batch loss.
"""

from __future__ import annotations

import functools
from typing import Any

from einops import reduce

AGGREGATIONS = ("token_mean", "sequence_mean", "dr_grpo")


def loss_denominator(agg: str, n_tokens: float, n_sequences: float, max_tokens: int | None = None) -> float:
    """The whole batch's normaliser for ``agg`` (tokens, sequences, or sequences * max_tokens).

    Never 0: an empty batch gets 1, so its loss is 0, not NaN.

    Example:
        >>> loss_denominator("token_mean", 30, 4), loss_denominator("dr_grpo", 30, 4, 16)
        (30.0, 64.0)
    """
    if agg == "token_mean":
        d = float(n_tokens)
    elif agg == "sequence_mean":
        d = float(n_sequences)
    elif agg == "dr_grpo":
        if not max_tokens:
            raise ValueError("loss agg 'dr_grpo' needs max_tokens (the response token budget)")
        d = float(n_sequences) * float(max_tokens)
    else:
        raise ValueError(f"loss agg={agg!r}; valid: {list(AGGREGATIONS)}")
    return max(d, 1.0)


def k3(logp: Any, ref_logp: Any) -> Any:
    """The k3 estimator of KL(pi || pi_ref) per token: ``exp(r) - r - 1`` with ``r = ref - logp``.

    Example:
        >>> import torch
        >>> [round(x, 4) for x in k3(torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -1.0])).tolist()]
        [0.0, 0.7183]
    """
    import torch

    r = ref_logp - logp
    return torch.expm1(r) - r


def policy_loss(
    logp: Any, old_logp: Any, adv: Any, mask: Any, *,
    clip_eps_low: float = 0.2, clip_eps_high: float | None = None,
    ref_logp: Any = None, kl_coef: float = 0.0,
    agg: str = "token_mean", denom: float | None = None, max_tokens: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """PPO-clip loss with an optional k3 KL term, aggregated as ``agg`` (torch tensors).

    Args:
        logp: log pi_theta of the taken tokens, (N, T).
        old_logp: log pi_old, (N, T).
        adv: token advantages, (N, T).
        mask: 1 for response tokens, 0 for padding, (N, T).
        clip_eps_low: ``rho`` is clipped below at ``1 - clip_eps_low``.
        clip_eps_high: ... and above at ``1 + clip_eps_high`` (None: ``clip_eps_low``; DAPO's
            clip-higher uses a larger value).
        ref_logp: log pi_ref, (N, T); needed when ``kl_coef > 0`` (and for the ``kl_sum`` stat).
        kl_coef: beta of the k3 term.
        agg: ``"token_mean"``, ``"sequence_mean"`` or ``"dr_grpo"`` (module docstring).
        denom: The whole batch's normaliser (:func:`loss_denominator`); default: this call's.
        max_tokens: The response token budget (``dr_grpo`` only).

    Returns:
        ``(loss, stats)``; stats (detached sums over response tokens, for logging):
        ``clip_low_tokens`` (``rho < 1 - eps_low`` with ``A < 0``: clipped, no gradient),
        ``clip_high_tokens`` (``rho > 1 + eps_high`` with ``A > 0``), ``clip_tokens`` (their
        sum), ``tokens`` (response tokens), and ``kl_sum`` (sum of k3) when ``ref_logp`` is given.

    Raises:
        ValueError: ``kl_coef > 0`` without ``ref_logp``; an unknown ``agg``.
    """
    import torch

    if kl_coef and ref_logp is None:
        raise ValueError(f"policy_loss: kl_coef={kl_coef!r} needs ref_logp (reference log-probs), got None")
    if agg not in AGGREGATIONS:
        raise ValueError(f"loss agg={agg!r}; valid: {list(AGGREGATIONS)}")
    high = clip_eps_low if clip_eps_high is None else clip_eps_high
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)  # (N, T)
    clipped = torch.clamp(ratio, 1.0 - clip_eps_low, 1.0 + high)
    per_tok = -torch.minimum(ratio * adv, clipped * adv)  # (N, T)
    low_hit = ((ratio < 1.0 - clip_eps_low) & (adv < 0)).to(logp.dtype) * mask
    high_hit = ((ratio > 1.0 + high) & (adv > 0)).to(logp.dtype) * mask
    stats: dict[str, Any] = {
        "clip_low_tokens": low_hit.sum().detach(),
        "clip_high_tokens": high_hit.sum().detach(),
        "clip_tokens": (low_hit + high_hit).sum().detach(),
        "tokens": mask.sum().detach(),
    }
    if ref_logp is not None:
        kl = k3(logp, ref_logp)  # (N, T), >= 0
        stats["kl_sum"] = (kl * mask).sum().detach()
        if kl_coef:
            per_tok = per_tok + kl_coef * kl
    per_tok = per_tok * mask
    if agg == "sequence_mean":
        lengths = reduce(mask, "n t -> n", "sum").clamp(min=1.0)
        total = (reduce(per_tok, "n t -> n", "sum") / lengths).sum()
        n = float(mask.any(-1).sum()) if denom is None else denom
    else:
        total = per_tok.sum()
        if denom is None:
            n = float(mask.sum()) if agg == "token_mean" else float(mask.shape[0]) * float(max_tokens or 0)
        else:
            n = denom
    loss = total / max(float(n), 1.0)
    return loss, stats


def token_logprobs(model: Any, input_ids: Any, attention_mask: Any, temperature: float = 1.0,
                   *, with_entropy: bool = True, first: int = 0):
    """log-prob of each next token under ``softmax(logits / temperature)``, and the entropy.

    Memory: the log-prob is ``logit[token] - logsumexp(logits)``, so autograd keeps no second
    (N, T, V) tensor (a full ``log_softmax`` would); the entropy, for logging only, is computed
    without a graph. With ``first > 0`` (the first score position any row needs: the shortest
    prompt's length - 1) and a model whose forward takes ``logits_to_keep`` (transformers' causal
    LMs), the (N, ·, V) logits are computed only from position ``first`` on, as TRL does for
    completions: the prompt positions' logits, most of the memory at a large vocabulary and a
    long prompt, are never built. The positions before ``first`` are returned as 0.

    Returns:
        ``(logp, entropy)``, both (N, T-1): position ``t`` scores ``input_ids[:, t+1]``
        (``entropy`` is None with ``with_entropy=False``).
    """
    import torch

    T = input_ids.shape[1]
    first = max(0, min(int(first), T - 1))
    kwargs = {}
    if first > 0 and _takes_logits_to_keep(model):
        kwargs["logits_to_keep"] = T - first  # logits of positions first .. T-1
    else:
        first = 0
    logits = model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    target = input_ids[:, first + 1:, None]
    part = logits.gather(-1, target).squeeze(-1) - torch.logsumexp(logits, dim=-1)  # (N, T-1-first)
    logp = part if first == 0 else torch.cat([part.new_zeros(part.shape[0], first), part], dim=1)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            ent = _entropy(logits.detach())
            entropy = ent if first == 0 else torch.cat([ent.new_zeros(ent.shape[0], first), ent], dim=1)
    return logp, entropy


def packed_token_logprobs(model: Any, packed: dict[str, Any], temperature: float = 1.0,
                          *, with_entropy: bool = True):
    """:func:`token_logprobs` for :func:`~reasonenv.agents.samples.collate_packed`'s rows.

    One forward over the packed rows (``position_ids`` mark the sequences, no attention mask),
    then the LM head on the hidden states of the response positions only (``src``), scored and
    placed in the response-aligned layout (``dst``). A model behind a wrapper (DDP, whose
    gradient sync needs its own forward) or without a separable base model and head gets the
    whole forward instead (logits from column ``first`` on), gathered at the same positions.
    The head is called as the model's ``get_output_embeddings()``: a model that post-processes
    its logits (soft-capping, scaling) differs from its padded forward, which
    ``Trainer.check_packing`` catches before the first update.

    Returns:
        ``(logp, entropy)``, both (N, L) like ``packed["mask"]``; column ``j`` of row ``i``
        scores response token ``j`` of sample ``i`` (``entropy`` is None with
        ``with_entropy=False``).
    """
    import torch

    ids, pos = packed["input_ids"], packed["position_ids"]
    rows, cols = packed["src"]
    # use_cache=False: transformers reads position_ids restarts as boundaries only without a
    # KV cache (which a model in eval mode would otherwise create).
    parts = _backbone_and_head(model)
    if parts is not None:  # the LM head on the response positions only
        body, head = parts
        hidden = body(input_ids=ids, position_ids=pos, use_cache=False).last_hidden_state
        logits = head(hidden[rows, cols]).float()
    else:  # a wrapper (DDP) must see the forward: all logits from column `first`, then gathered
        T = ids.shape[1]
        first = max(0, min(int(packed["first"]), T - 1))
        kwargs = {"logits_to_keep": T - first} if first > 0 and _takes_logits_to_keep(model) else {}
        first = first if kwargs else 0
        logits = model(input_ids=ids, position_ids=pos, use_cache=False,
                       **kwargs).logits[rows, cols - first].float()
    if temperature != 1.0:
        logits = logits / temperature
    target = ids[rows, cols + 1]
    flat = logits.gather(-1, target[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    logp = flat.new_zeros(packed["mask"].shape).index_put(packed["dst"], flat)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            ent = _entropy(logits.detach())
            entropy = ent.new_zeros(packed["mask"].shape).index_put(packed["dst"], ent)
    return logp, entropy


def _backbone_and_head(model: Any) -> tuple[Any, Any] | None:
    """``(base model, LM head)`` of a transformers causal LM, or None (a wrapper such as DDP,
    or a model without both parts)."""
    if not hasattr(model, "get_output_embeddings") or not hasattr(model, "base_model"):
        return None
    body, head = model.base_model, model.get_output_embeddings()
    if body is None or body is model or head is None:
        return None
    return body, head


ENTROPY_CHUNK = 128  # positions per log_softmax in _entropy


def _entropy(logits: Any) -> Any:
    """Entropy of ``softmax(logits)`` over the last axis, ``ENTROPY_CHUNK`` positions at a time.

    A single pass would build three (N, T, V) temporaries (log-softmax, its exp, their product)
    on top of the logits, while the graph already holds them: about 330 MB at SmolLM2's
    vocabulary for 8 x 70 positions, the peak of the loss forward. A chunk's are (128, V).
    """
    import torch

    flat = logits.reshape(-1, logits.shape[-1])
    parts = []
    for chunk in flat.split(ENTROPY_CHUNK):
        lp = torch.log_softmax(chunk, dim=-1)
        parts.append(-(lp.exp() * lp).sum(-1))
    return torch.cat(parts).view(logits.shape[:-1]) if parts else flat.new_zeros(logits.shape[:-1])


def _takes_logits_to_keep(model: Any) -> bool:
    """Whether ``model`` (or the module a DDP wrapper holds) accepts ``logits_to_keep``; looked up
    once per model class (this runs for every micro-batch)."""
    return _class_takes_logits_to_keep(type(getattr(model, "module", model)))


@functools.cache
def _class_takes_logits_to_keep(cls: type) -> bool:
    import inspect

    forward = getattr(cls, "forward", None)
    try:
        return forward is not None and "logits_to_keep" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False
