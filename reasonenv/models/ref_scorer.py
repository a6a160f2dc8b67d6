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
from reasonenv.models.kv_cache import cut_row, left_pad, split_row
from reasonenv.shaping.protocols import RefRequest, SharedService

_HINT = "HFRefScorer keeps one cache per key"


@dataclass
class _KV:
    past: Any  # KV tensors covering ``ids`` (sliceable models), else the model's cache object
    ids: tuple[int, ...]
    last: Any  # (V,) log-softmax of the prediction after ids[-1]


@dataclass
class _Hit:
    index: int  # position of the request in the logprobs() call
    entry: _KV  # the key's cache, which ``ctx`` extends
    ctx: tuple[int, ...]

    @property
    def feed(self) -> tuple[int, ...]:
        return self.ctx[len(self.entry.ids):]


class HFRefScorer(SharedService):
    """Reference-model log-probs with a KV cache per request key (implements ``RefLogprobScorer``).

    A request whose key is cached and whose ``context_ids`` extends the cached ids exactly
    forwards only the new tokens through the cached keys/values; any other request is forwarded
    fresh. The cache-hit requests of one :meth:`logprobs` call are forwarded together: their
    caches left-padded to a common length (attention mask and explicit position ids), the new
    tokens left-padded after them, up to ``extend_batch_size`` rows per forward; fresh requests
    are forwarded ``batch_size`` at a time, right-padded. Scoring a sequence step by step thus
    forwards each token once, and a round of N live episodes costs one forward (N within the row
    budgets). :attr:`tokens_forwarded` counts the tokens forwarded, :attr:`forward_calls` the
    forwards. Models whose cache cannot be cut into rows (sliding-window layers) are forwarded one
    request at a time.

    Args:
        model: A causal LM or a name/path for ``resolve_model``.
        tokenizer: Needed for a loaded model only to find BOS/pad (optional then).
        dtype: dtype used when loading by name.
        max_cached: KV caches kept (least recently used dropped first).
        batch_size: Fresh requests (whole context forwarded) per forward.
        extend_batch_size: Cache-hit requests per forward (the row budget of the batched
            extension; its padded cache holds this many rows of the longest cached length).

    Example:
        >>> ref = HFRefScorer(tiny_model(tok), tok)  # doctest: +SKIP
        >>> ref.logprobs([RefRequest(key, prompt_ids, step_ids)])  # doctest: +SKIP
    """

    def __init__(self, model: Any, tokenizer: Any | None = None, *, dtype: str = "float32",
                 max_cached: int = 64, batch_size: int = 8, extend_batch_size: int = 64) -> None:
        for name, value, low in (("max_cached", max_cached, 0), ("batch_size", batch_size, 1),
                                 ("extend_batch_size", extend_batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"HFRefScorer {name}={value!r}; expected an int >= {low}")
        if isinstance(model, str):
            model, tokenizer = load_model(model, tokenizer, kind="causal", dtype=dtype)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_cached, self.batch_size = max_cached, batch_size
        self.extend_batch_size = extend_batch_size
        cfg = model.config.get_text_config()
        types = getattr(cfg, "layer_types", None)
        # Per-row slices of a batched cache are plain tensors only for full-attention layers.
        self._sliceable = not getattr(cfg, "sliding_window", None) and (
            types is None or all(t == "full_attention" for t in types))
        self._vocab = int(model.get_input_embeddings().num_embeddings)
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

    def _pad(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None) if self.tokenizer is not None else None
        return int(pad) if pad is not None else 0

    def logprobs(self, requests: Sequence[RefRequest]) -> list[np.ndarray]:
        """For each request, ``log pi_ref(new_ids[j] | context_ids + new_ids[:j])`` (float64).

        Requests are served in waves: a key's k-th request in the call goes in wave k, so it
        extends the cache its previous one left; requests of different keys share a wave.
        """
        out: list[np.ndarray | None] = [None] * len(requests)
        waves: list[list[int]] = []
        seen: dict[Hashable, int] = {}
        for i, r in enumerate(requests):
            if not r.new_ids:
                out[i] = np.zeros(0)
                continue
            w = 0
            if r.key is not None:
                w = seen[r.key] = seen.get(r.key, -1) + 1
            if w == len(waves):
                waves.append([])
            waves[w].append(i)
        for wave in waves:
            self._serve(requests, wave, out)
        return out  # type: ignore[return-value]

    def _serve(self, requests: Sequence[RefRequest], wave: list[int], out: list[Any]) -> None:
        """Score a wave of requests with distinct keys: cache hits batched, then fresh ones."""
        hits: list[_Hit] = []
        fresh: list[int] = []
        for i in wave:
            r = requests[i]
            ctx = tuple(r.context_ids) or self._bos()
            e = self._cache.get(r.key) if r.key is not None else None
            if e is not None and ctx[: len(e.ids)] == e.ids:
                hit = _Hit(i, e, ctx)
                self._check_ids(r, hit.feed + tuple(r.new_ids))
                hits.append(hit)
            else:
                self._cache.pop(r.key, None)
                self._check_ids(r, ctx + tuple(r.new_ids))
                fresh.append(i)
        if self._sliceable:
            step = self.extend_batch_size
            if len(hits) > step:  # rows of similar cached length share a forward
                hits.sort(key=lambda h: len(h.entry.ids))
            for s in range(0, len(hits), step):
                self._extend(requests, hits[s: s + step], out)
        else:
            for h in hits:
                self._extend_one(requests, h, out)
        self._fresh(requests, fresh, out)

    def _check_ids(self, r: RefRequest, ids: tuple[int, ...]) -> None:
        """One-line error for a token id the model cannot embed (checked on forwarded ids only)."""
        lo, hi = min(ids), max(ids)
        if lo < 0 or hi >= self._vocab:
            bad = lo if lo < 0 else hi
            field = "new_ids" if bad in r.new_ids else "context_ids"
            raise ValueError(f"RefRequest(key={r.key!r}) {field} holds token id {bad}, outside "
                             f"the reference model's vocabulary [0, {self._vocab})")

    def _extend(self, requests: Sequence[RefRequest], hits: list[_Hit], out: list[Any]) -> None:
        """One forward of the new tokens of ``hits`` through their left-padded caches."""
        import torch

        dev = self.model.device
        feeds = [h.feed + tuple(requests[h.index].new_ids) for h in hits]
        cached = [len(h.entry.ids) for h in hits]
        past, attn = left_pad([h.entry.past for h in hits], cached, dev)
        n, width = len(hits), max(len(f) for f in feeds)
        ids = torch.full((n, width), self._pad(), dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        new_attn = torch.zeros((n, width), dtype=torch.long)
        for b, (f, c) in enumerate(zip(feeds, cached)):
            ids[b, width - len(f):] = torch.tensor(f, dtype=torch.long)
            pos[b, width - len(f):] = torch.arange(c, c + len(f))
            new_attn[b, width - len(f):] = 1
        attn = torch.cat([attn, new_attn.to(dev)], dim=1)
        with torch.no_grad():
            o = self.model(input_ids=ids.to(dev), attention_mask=attn, position_ids=pos.to(dev),
                           past_key_values=past, use_cache=True)
        self.tokens_forwarded += sum(len(f) for f in feeds)
        self.forward_calls += 1
        for b, (h, f) in enumerate(zip(hits, feeds)):
            r = requests[h.index]
            new = tuple(r.new_ids)
            # Column width - len(f) + q predicts feed[q + 1]; the cached last row predicts feed[0].
            first = max(width - len(new) - 1, width - len(f))
            logp = torch.log_softmax(o.logits[b, first:].float(), -1)
            rows = logp[:-1] if len(f) > len(new) else torch.cat([h.entry.last[None], logp[:-1]], 0)
            out[h.index] = _gather(rows, new)
            kv = split_row(o.past_key_values, attn[b].bool(), b, _HINT)
            self._put(r.key, _KV(kv, h.ctx + new, logp[-1].clone()))

    def _extend_one(self, requests: Sequence[RefRequest], h: _Hit, out: list[Any]) -> None:
        """One request through the model's own cache object (models whose cache is not sliceable)."""
        import torch

        r, e = requests[h.index], h.entry
        new = tuple(r.new_ids)
        feed = h.feed + new
        ids = torch.tensor([feed], dtype=torch.long, device=self.model.device)
        with torch.no_grad():
            o = self.model(input_ids=ids, past_key_values=e.past, use_cache=True)
        self.tokens_forwarded += len(feed)
        self.forward_calls += 1
        logp = torch.log_softmax(o.logits[0, max(0, len(feed) - len(new) - 1):].float(), -1)
        rows = logp[:-1] if len(feed) > len(new) else torch.cat([e.last[None], logp[:-1]], 0)
        out[h.index] = _gather(rows, new)
        self._put(r.key, _KV(o.past_key_values, h.ctx + new, logp[-1].clone()))

    def _fresh(self, requests: Sequence[RefRequest], idx: list[int], out: list[Any]) -> None:
        import torch

        step = self.batch_size if self._sliceable else 1
        seq_of = {i: (tuple(requests[i].context_ids) or self._bos()) + tuple(requests[i].new_ids)
                  for i in idx}
        if len(idx) > step:  # rows of similar length share a forward
            idx = sorted(idx, key=lambda i: len(seq_of[i]))
        for s in range(0, len(idx), step):
            chunk = idx[s: s + step]
            seqs = [seq_of[i] for i in chunk]
            keyed = any(requests[i].key is not None for i in chunk)
            ids, attn = pad_right(seqs, self._pad(), self.model.device)
            with torch.no_grad():
                o = self.model(input_ids=ids, attention_mask=attn, use_cache=keyed)
            self.tokens_forwarded += sum(len(q) for q in seqs)
            self.forward_calls += 1
            for b, (i, seq) in enumerate(zip(chunk, seqs)):
                new = tuple(requests[i].new_ids)
                # Columns len(seq) - len(new) - 1 .. len(seq) - 1: the new tokens' predictions and
                # the prediction after the last token.
                logp = torch.log_softmax(o.logits[b, len(seq) - len(new) - 1: len(seq)].float(), -1)
                out[i] = _gather(logp[:-1], new)
                key = requests[i].key
                if key is None:
                    continue
                if self._sliceable:
                    past = cut_row(o.past_key_values, b, len(seq), copy=len(chunk) > 1, hint=_HINT)
                else:
                    past = o.past_key_values
                self._put(key, _KV(past, seq, logp[-1].clone()))

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


def _gather(rows: Any, new: tuple[int, ...]) -> np.ndarray:
    """``rows[j, new[j]]`` as float64 numpy (rows: (len(new), V) log-probs)."""
    import torch

    idx = torch.tensor(new, dtype=torch.long, device=rows.device)
    return rows.gather(-1, idx[:, None]).squeeze(-1).double().cpu().numpy()
