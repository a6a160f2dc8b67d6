"""Token samplers on transformers: the prover's continuation sampler and the nucleus filter
the policies share (torch is imported inside functions).

Example:
    >>> import torch
    >>> top_p_filter(torch.tensor([[0.5, 0.3, 0.2]]), 0.7).tolist()
    [[0.625, 0.375, 0.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reasonenv.models.hf_utils import load_model
from reasonenv.shaping.protocols import SharedService
from reasonenv.shaping.prover import derive_seed


class HFSampler(SharedService):
    """Continuation sampler for the prover (implements ``ContinuationSampler``).

    Every (prompt, sample) row has its own random stream, seeded from ``derive_seed(seed, ...)``,
    so a prompt's continuations do not depend on the other prompts of the call (what
    :class:`~reasonenv.shaping.prover.MCProver` needs for order-independent estimates), and the
    global torch RNG is never touched. Rows of all prompts are batched together.

    Args:
        model: A causal LM or a name/path.
        tokenizer: Its tokenizer.
        temperature: Sampling temperature (0 = greedy).
        top_p: Nucleus mass (1 = off). No top-k truncation.
        max_new_tokens: Cap per continuation.
        batch_size: Rows (prompt x sample) per batched generation.
        dtype: dtype used when loading by name.

    Example:
        >>> HFSampler(tiny_model(tok), tok, max_new_tokens=8).sample(["2+2="], 2, seed=0)  # doctest: +SKIP
        [['...', '...']]
    """

    def __init__(self, model: Any, tokenizer: Any | None = None, *, temperature: float = 1.0,
                 top_p: float = 1.0, max_new_tokens: int = 256, batch_size: int = 64,
                 dtype: str = "float32") -> None:
        self.model, self.tokenizer = load_model(model, tokenizer, kind="causal", dtype=dtype)
        self.temperature, self.top_p = float(temperature), float(top_p)
        self.max_new_tokens, self.batch_size = int(max_new_tokens), int(batch_size)
        self.generate_calls = 0
        self.tokens_generated = 0  # continuation tokens sampled (the prover's compute)

    def sample(self, prompts: Sequence[str], n: int, *, seed: int) -> list[list[str]]:
        """For each prompt, ``n`` decoded continuations (special tokens skipped).

        All (prompt, sample) rows of a call are generated together, ``batch_size`` rows per
        batched forward (left-padded, one KV cache), each row drawing from its own generator
        seeded by ``derive_seed(seed, f"{j}\\0{prompt}")``: a row's continuation depends only on
        its prompt and index (up to float rounding of the batched forward).
        """
        tok = self.tokenizer
        sampling = self.temperature > 0
        per = n if sampling else 1  # greedy: one generation, n copies
        rows = [(i, j) for i in range(len(prompts)) for j in range(per)]
        enc = [tok.encode(p, add_special_tokens=False) or [tok.bos_token_id or tok.eos_token_id]
               for p in prompts]
        out: list[list[str]] = [[] for _ in prompts]
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start: start + self.batch_size]
            seeds = [derive_seed(seed, f"{j}\0{prompts[i]}") for i, j in chunk]
            new = self._generate([enc[i] for i, _ in chunk], seeds if sampling else None)
            self.generate_calls += 1
            for (i, _), ids in zip(chunk, new):
                self.tokens_generated += len(ids)
                out[i].append(tok.decode(ids, skip_special_tokens=True))
        return out if sampling else [o * n for o in out]

    def _generate(self, contexts: list[list[int]], seeds: list[int] | None) -> list[list[int]]:
        """Sample up to ``max_new_tokens`` per context (greedy when ``seeds`` is None)."""
        import torch

        tok, dev = self.tokenizer, self.model.device
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        width = max(len(c) for c in contexts)
        ids = torch.full((len(contexts), width), pad, dtype=torch.long)  # (N, T) left-padded
        attn = torch.zeros_like(ids)
        for r, c in enumerate(contexts):
            ids[r, width - len(c):] = torch.tensor(c)
            attn[r, width - len(c):] = 1
        gens = [torch.Generator().manual_seed(s) for s in seeds] if seeds is not None else None
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        cur, cur_attn, cur_pos, past = ids.to(dev), attn.to(dev), pos.to(dev), None
        new: list[list[int]] = [[] for _ in contexts]
        done = [False] * len(contexts)
        with torch.no_grad():
            for _ in range(self.max_new_tokens):
                res = self.model(input_ids=cur, attention_mask=cur_attn, position_ids=cur_pos,
                                 past_key_values=past, use_cache=True)
                past = res.past_key_values
                logits = res.logits[:, -1, :].float().cpu()  # (N, V)
                if gens is None:
                    nxt = logits.argmax(-1).tolist()
                else:
                    probs = torch.softmax(logits / self.temperature, -1)
                    if self.top_p < 1.0:
                        probs = top_p_filter(probs, self.top_p)
                    nxt = [int(sample_categorical(probs[r : r + 1], g)[0]) for r, g in enumerate(gens)]
                for r, t in enumerate(nxt):
                    if not done[r]:
                        new[r].append(t)
                        done[r] = t == tok.eos_token_id
                if all(done):
                    break
                cur = torch.tensor(nxt, dtype=torch.long, device=dev)[:, None]
                cur_attn = torch.cat([cur_attn, torch.ones_like(cur)], dim=1)
                cur_pos = cur_attn.sum(-1, keepdim=True) - 1
        return new


def sample_categorical(probs: Any, generator: Any = None) -> Any:
    """One exact draw per row of ``probs`` (N, V): non-negative weights, not necessarily normalised.

    Inverse-CDF sampling: one uniform per row against the row's running sum (accumulated in
    float64, so the smallest probabilities keep their weight), then a binary search. It draws
    from the same distribution as ``torch.multinomial(probs, 1)``, which on CPU makes V
    exponential variates per row (the exponential race): this takes about half its time, at the
    testbed's vocabulary and at SmolLM2's (docs/benchmarks.md, "Sampling one token"). A token
    of weight 0 is never drawn: ``u`` lies in ``(0, total]`` and the search returns the first
    index whose running sum reaches ``u``. Like ``torch.multinomial``, it refuses a negative
    weight and a row whose sum is not positive and finite.

    Returns:
        (N,) long tensor of token ids.
    """
    import torch

    if probs.dim() != 2:
        raise ValueError(f"probs must be (N, V), got shape {tuple(probs.shape)}")
    low = probs.amin(-1)
    if bool((low < 0).any()):
        bad = int((low < 0).nonzero()[0, 0])
        raise ValueError(f"probs row {bad} holds a negative weight ({float(low[bad])})")
    cdf = probs.double().cumsum(-1)
    total = cdf[:, -1:]
    ok = (total > 0) & torch.isfinite(total)
    if not bool(ok.all()):
        bad = int((~ok).nonzero()[0, 0])
        raise ValueError(f"probs row {bad} sums to {float(total[bad, 0])}: nothing to sample")
    u = (1.0 - torch.rand(total.shape, generator=generator, dtype=torch.float64,
                          device=probs.device)) * total
    return torch.searchsorted(cdf, u).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def top_p_filter(probs: Any, top_p: float) -> Any:
    """Zero the tail of each row outside the smallest set with mass >= ``top_p``; renormalise."""
    import torch

    sorted_p, idx = probs.sort(-1, descending=True)
    keep = sorted_p.cumsum(-1) - sorted_p < top_p
    filtered = torch.zeros_like(probs).scatter(-1, idx, sorted_p * keep)
    return filtered / filtered.sum(-1, keepdim=True)
