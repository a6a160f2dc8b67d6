"""Reference-model log-probs with a KV cache per episode (PRL's ``ref_logprobs`` service).

Example:
    >>> from reasonenv.testing import tiny_tokenizer, tiny_model
    >>> from reasonenv.shaping.protocols import RefRequest
    >>> tok = tiny_tokenizer()
    >>> ref = HFRefScorer(tiny_model(tok), tok)
    >>> ref.logprobs([RefRequest(("slot", 0), (1, 66), (67, 68))])[0].shape
    (2,)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reasonenv.models.hf_utils import load_model, pad_right
from reasonenv.shaping.protocols import RefRequest


@dataclass
class _KV:
    past: Any  # the model's cache object covering ``ids``
    ids: tuple[int, ...]
    last: Any  # (V,) log-softmax of the prediction after ids[-1]


class HFRefScorer:
    """Reference-model log-probs with a KV cache per request key (implements ``RefLogprobScorer``).

    A request whose key is cached and whose ``context_ids`` extends the cached ids exactly
    forwards only the new tokens through the cached ``past_key_values``; any other request is
    forwarded fresh (fresh ones batched, right-padded). Scoring a sequence step by step thus
    forwards each token once; :attr:`tokens_forwarded` counts the tokens forwarded.

    Args:
        model: A causal LM or a name/path for ``resolve_model``.
        tokenizer: Needed for a loaded model only to find BOS/pad (optional then).
        dtype: dtype used when loading by name.
        max_cached: KV caches kept (least recently used dropped first).
        batch_size: Fresh requests per forward.

    Example:
        >>> ref = HFRefScorer(tiny_model(tok), tok)  # doctest: +SKIP
        >>> ref.logprobs([RefRequest(key, prompt_ids, step_ids)])  # doctest: +SKIP
    """

    def __init__(self, model: Any, tokenizer: Any | None = None, *, dtype: str = "float32",
                 max_cached: int = 64, batch_size: int = 8) -> None:
        if isinstance(model, str):
            model, tokenizer = load_model(model, tokenizer, kind="causal", dtype=dtype)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_cached, self.batch_size = int(max_cached), int(batch_size)
        cfg = model.config.get_text_config()
        types = getattr(cfg, "layer_types", None)
        # Per-row slices of a batched cache are plain tensors only for full-attention layers.
        self._sliceable = not getattr(cfg, "sliding_window", None) and (
            types is None or all(t == "full_attention" for t in types))
        self._cache: OrderedDict[Hashable, _KV] = OrderedDict()
        self.tokens_forwarded = 0
        self.forward_calls = 0

    def _bos(self) -> tuple[int, ...]:
        bos = getattr(self.tokenizer, "bos_token_id", None) if self.tokenizer is not None else None
        if bos is None:
            bos = getattr(self.model.config, "bos_token_id", None)
        if bos is None:
            raise ValueError("empty context_ids and the model has no BOS token to condition on")
        return (int(bos),)

    def logprobs(self, requests: Sequence[RefRequest]) -> list[np.ndarray]:
        """For each request, ``log pi_ref(new_ids[j] | context_ids + new_ids[:j])`` (float64)."""
        out: list[np.ndarray | None] = [None] * len(requests)
        pending: list[int] = []
        pending_keys: set[Hashable] = set()
        for i, r in enumerate(requests):
            if not r.new_ids:
                out[i] = np.zeros(0)
                continue
            if r.key is not None and r.key in pending_keys:  # same key twice: keep order
                self._fresh(requests, pending, out)
                pending, pending_keys = [], set()
            ctx = tuple(r.context_ids) or self._bos()
            e = self._cache.get(r.key) if r.key is not None else None
            if e is not None and ctx[: len(e.ids)] == e.ids:
                out[i] = self._extend(r.key, e, ctx, tuple(r.new_ids))
            else:
                self._cache.pop(r.key, None)
                pending.append(i)
                if r.key is not None:
                    pending_keys.add(r.key)
        self._fresh(requests, pending, out)
        return out  # type: ignore[return-value]

    def _extend(self, key: Hashable, e: _KV, ctx: tuple[int, ...], new: tuple[int, ...]) -> np.ndarray:
        import torch

        feed = ctx[len(e.ids):] + new
        ids = torch.tensor([feed], dtype=torch.long, device=self.model.device)
        with torch.no_grad():
            o = self.model(input_ids=ids, past_key_values=e.past, use_cache=True)
        self.tokens_forwarded += len(feed)
        self.forward_calls += 1
        logp = torch.log_softmax(o.logits[0].float(), -1)  # (n, V)
        rows = torch.cat([e.last[None], logp[:-1]], 0)  # rows[q] predicts position len(e.ids) + q
        off = len(ctx) - len(e.ids)
        idx = torch.tensor(new, device=rows.device)
        vals = rows[off: off + len(new)].gather(-1, idx[:, None]).squeeze(-1)
        self._put(key, _KV(o.past_key_values, ctx + new, logp[-1].clone()))
        return vals.double().cpu().numpy()

    def _fresh(self, requests: Sequence[RefRequest], idx: list[int], out: list[Any]) -> None:
        import torch
        from transformers import DynamicCache

        step = self.batch_size if self._sliceable else 1
        for s in range(0, len(idx), step):
            chunk = idx[s: s + step]
            ctxs = [tuple(requests[i].context_ids) or self._bos() for i in chunk]
            seqs = [c + tuple(requests[i].new_ids) for c, i in zip(ctxs, chunk)]
            keyed = any(requests[i].key is not None for i in chunk)
            pad = getattr(self.tokenizer, "pad_token_id", None) or 0
            ids, attn = pad_right(seqs, pad, self.model.device)
            with torch.no_grad():
                o = self.model(input_ids=ids, attention_mask=attn, use_cache=keyed)
            self.tokens_forwarded += sum(len(q) for q in seqs)
            self.forward_calls += 1
            logp = torch.log_softmax(o.logits.float(), -1)  # (B, T, V)
            for b, (i, ctx, seq) in enumerate(zip(chunk, ctxs, seqs)):
                new = torch.tensor(requests[i].new_ids, device=logp.device)
                rows = logp[b, len(ctx) - 1: len(seq) - 1]  # predictions of the new tokens
                out[i] = rows.gather(-1, new[:, None]).squeeze(-1).double().cpu().numpy()
                key = requests[i].key
                if key is None:
                    continue
                past = o.past_key_values
                if len(chunk) > 1:
                    past = DynamicCache(ddp_cache_data=[
                        (lay.keys[b: b + 1, :, : len(seq)].clone(), lay.values[b: b + 1, :, : len(seq)].clone())
                        for lay in o.past_key_values.layers])
                self._put(key, _KV(past, seq, logp[b, len(seq) - 1].clone()))

    def _put(self, key: Hashable, entry: _KV) -> None:
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)

    def release(self, key: Hashable) -> None:
        """Drop the KV cache of ``key``."""
        self._cache.pop(key, None)

    def cached_keys(self) -> list[Hashable]:
        """Keys with a KV cache, least recently used first."""
        return list(self._cache)
