"""Model-backed services on Hugging Face transformers (torch is imported inside functions only).

* :class:`HFRefScorer` - reference log-probs with a per-episode KV cache (each token forwarded
  once: O(L) per sequence).
* :class:`HFStepPRM` - a "score at the step tag" PRM (Math-Shepherd style LM head, or a
  2-label token-classification head).
* :class:`QuantileHeadPRM` - a base model plus a monotone quantile head (PROGRS), with a pinball
  loss trainer and save/load.
* :class:`HFSampler` - a ``model.generate`` continuation sampler (the prover's base policy).

Every constructor takes a loaded model (plus its tokenizer) or a name/path resolved by
:func:`reasonenv.agents.assets.resolve_model`.

Example:
    >>> from reasonenv.testing import tiny_tokenizer, tiny_model
    >>> from reasonenv.shaping.services import RefRequest
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

from reasonenv.shaping.prover import derive_seed
from reasonenv.shaping.services import RefRequest

_KINDS = ("causal", "base", "token_classification")


def load_model(model: Any, tokenizer: Any | None = None, *, kind: str = "causal", dtype: str = "float32") -> tuple[Any, Any]:
    """``(model in eval mode, tokenizer)`` from a loaded model or a name/path.

    Args:
        model: A transformers model, or a name/path for ``resolve_model``.
        tokenizer: Required with a loaded model; loaded from the path otherwise.
        kind: ``"causal"`` (AutoModelForCausalLM), ``"base"`` (AutoModel) or
            ``"token_classification"`` (AutoModelForTokenClassification).
        dtype: torch dtype name used when loading by name.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind={kind!r}; valid: {_KINDS}")
    if isinstance(model, str):
        import torch
        import transformers

        from reasonenv.agents.assets import resolve_model

        path = resolve_model(model)
        cls = {"causal": "AutoModelForCausalLM", "base": "AutoModel",
               "token_classification": "AutoModelForTokenClassification"}[kind]
        tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(path)
        model = getattr(transformers, cls).from_pretrained(path, dtype=getattr(torch, dtype))
    if tokenizer is None:
        raise ValueError(f"a loaded model ({type(model).__name__}) needs tokenizer=")
    return model.eval(), tokenizer


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int, device: Any = None) -> tuple[Any, Any]:
    """Right-padded ``(input_ids, attention_mask)`` LongTensors of shape (B, T)."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        attn[i, : len(s)] = 1
    return ids.to(device), attn.to(device)


def hidden_states(model: Any, ids: Any, attn: Any) -> Any:
    """Last-layer hidden states (B, T, H) of the model's base (no LM head computed)."""
    return model.base_model(input_ids=ids, attention_mask=attn).last_hidden_state


def encode_steps(
    tokenizer: Any, question: str, steps: Sequence[str], *, tag_ids: Sequence[int],
    step_sep: str = "", add_bos: bool = True,
) -> tuple[list[int], list[int]]:
    """Token ids of ``question + " " + step_1 + tag + step_sep + step_2 + tag ...`` and the
    index of each tag's last token (where a step is scored).

    Segments are tokenised separately (steps stripped of surrounding whitespace), so the ids and
    positions of the first k steps never depend on later steps (exactly causal).
    """
    ids: list[int] = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    ids += tokenizer.encode(question, add_special_tokens=False)
    positions = []
    for k, step in enumerate(steps):
        ids += tokenizer.encode((" " if k == 0 else step_sep) + step.strip(), add_special_tokens=False)
        ids += list(tag_ids)
        positions.append(len(ids) - 1)
    return ids, positions


def _single_token(tokenizer: Any, tok: str | int, what: str) -> int:
    if isinstance(tok, int):
        return tok
    ids = tokenizer.encode(tok, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"{what}={tok!r} is {len(ids)} tokens {ids}; pass its token id instead")
    return int(ids[0])


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


class HFStepPRM:
    """A PRM that scores each step at its step tag (implements ``PRMScorer``, point estimate).

    The text ``question + " " + step_1 + step_tag + step_sep + step_2 + step_tag ...`` goes
    through the model once per response (responses batched). With ``head="lm"`` (Math-Shepherd
    style checkpoints) P(step good) is the softmax over the logits of ``good_token`` and
    ``bad_token`` at the tag's last token; with ``head="token_classification"`` (2-label
    AutoModelForTokenClassification) it is the softmax probability of label 1 there. Every
    requested quantile column gets that point estimate (use ``quantiles=(0.5,)``).

    Args:
        model: A loaded model (causal LM or token classifier, matching ``head``) or a name/path.
        tokenizer: Its tokenizer (loaded from ``model`` when it is a name).
        step_tag: Text appended after each step; scores are read at its last token. For
            Math-Shepherd use ``step_tag=" ки", step_sep="\\n"`` (check the tag tokenises as the
            checkpoint expects, or pass ``step_tag_ids``).
        good_token, bad_token: Single tokens (text or id) of the LM-head verdict.
        quantiles: Quantile levels reported (all columns equal).
        head: ``"lm"`` or ``"token_classification"``.
        step_sep: Text between a tag and the next step.
        step_tag_ids: Token ids of the tag, overriding ``step_tag``'s tokenisation.
        add_bos: Prepend the tokenizer's BOS (if it has one).
        batch_size: Responses per forward.
        dtype: dtype used when loading by name.

    Example:
        >>> prm = HFStepPRM(tiny_model(tok), tok)  # doctest: +SKIP
        >>> prm.score([("What is 2+2?", ["2+2 = 4.", "\\\\boxed{4}"])])[0].shape  # doctest: +SKIP
        (2, 1)
    """

    def __init__(self, model: Any, tokenizer: Any | None = None, *, step_tag: str = "\n\n",
                 good_token: str | int = "+", bad_token: str | int = "-",
                 quantiles: Sequence[float] = (0.5,), head: str = "lm", step_sep: str = "",
                 step_tag_ids: Sequence[int] | None = None, add_bos: bool = True,
                 batch_size: int = 8, dtype: str = "float32") -> None:
        if head not in ("lm", "token_classification"):
            raise ValueError(f"head={head!r}; valid: ('lm', 'token_classification')")
        kind = "causal" if head == "lm" else "token_classification"
        self.model, self.tokenizer = load_model(model, tokenizer, kind=kind, dtype=dtype)
        self.head, self.step_sep, self.add_bos = head, step_sep, add_bos
        self.quantiles = tuple(float(q) for q in quantiles)
        self.batch_size = int(batch_size)
        self.tag_ids = list(step_tag_ids or self.tokenizer.encode(step_tag, add_special_tokens=False))
        if not self.tag_ids:
            raise ValueError(f"step_tag={step_tag!r} encodes to no tokens")
        if head == "lm":
            self._cand = [_single_token(self.tokenizer, good_token, "good_token"),
                          _single_token(self.tokenizer, bad_token, "bad_token")]

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """For each ``(question, steps)``, P(good) per step, shape ``(len(steps), len(quantiles))``."""
        import torch

        encs = [encode_steps(self.tokenizer, q, s, tag_ids=self.tag_ids, step_sep=self.step_sep,
                             add_bos=self.add_bos) for q, s in items]
        out = [np.zeros((0, len(self.quantiles))) for _ in items]
        todo = [i for i, (_, pos) in enumerate(encs) if pos]
        pad = self.tokenizer.pad_token_id or 0
        for s in range(0, len(todo), self.batch_size):
            chunk = todo[s: s + self.batch_size]
            ids, attn = pad_right([encs[i][0] for i in chunk], pad, self.model.device)
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=attn).logits.float()  # (B, T, V|2)
            for b, i in enumerate(chunk):
                at = logits[b, encs[i][1]]  # (K, V|2)
                if self.head == "lm":
                    p = torch.softmax(at[:, self._cand], -1)[:, 0]
                else:
                    p = torch.softmax(at, -1)[:, 1]
                out[i] = np.repeat(p.double().cpu().numpy()[:, None], len(self.quantiles), 1)
        return out


class HFSampler:
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
                out[i].append(tok.decode(ids, skip_special_tokens=True))
        return out if sampling else [o * n for o in out]

    def _generate(self, contexts: list[list[int]], seeds: list[int] | None) -> list[list[int]]:
        """Sample up to ``max_new_tokens`` per context (greedy when ``seeds`` is None)."""
        import torch

        from reasonenv.agents.hf import top_p_filter

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
                    nxt = [int(torch.multinomial(probs[r], 1, generator=g)) for r, g in enumerate(gens)]
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


def pinball_loss(pred: Any, target: Any, quantiles: Sequence[float]) -> Any:
    """Mean quantile (pinball) loss of ``pred`` (N, Q) against ``target`` (N,).

    Example:
        >>> import torch
        >>> round(float(pinball_loss(torch.tensor([[0.2, 0.5]]), torch.tensor([1.0]), (0.1, 0.5))), 3)
        0.165
    """
    import torch

    tau = torch.as_tensor(list(quantiles), dtype=pred.dtype, device=pred.device)  # (Q,)
    diff = target.to(pred.dtype)[:, None] - pred  # (N, Q)
    return torch.maximum(tau * diff, (tau - 1.0) * diff).mean()


class QuantileHeadPRM:
    """PROGRS's quantile-regression PRM: a base model plus a monotone quantile head.

    At each step tag (see :func:`encode_steps`) a linear head maps the last hidden state to Q
    numbers ``a``; the quantiles are ``sigmoid(a_0 + cumsum(0, softplus(a_1..)))``, ascending in
    the quantile level and inside (0, 1). Implements ``PRMScorer``; :meth:`fit` trains with
    :func:`pinball_loss`; :meth:`save_pretrained` / :meth:`from_pretrained` round-trip.

    Args:
        base_model: A transformers model (its ``base_model`` gives hidden states) or a name/path.
        tokenizer: Its tokenizer (loaded from ``base_model`` when it is a name).
        quantiles: Ascending levels in (0, 1).
        step_tag, step_sep, add_bos: Text layout, as in :class:`HFStepPRM`.
        batch_size: Responses per forward.
        seed: Initialises the head.

    Example:
        >>> prm = QuantileHeadPRM(tiny_model(tok), tok)  # doctest: +SKIP
        >>> prm.fit([("2+2?", ["4", "\\\\boxed{4}"])], [[0.8, 1.0]], epochs=20)  # doctest: +SKIP
        >>> prm.score([("2+2?", ["4"])])[0].shape  # doctest: +SKIP
        (1, 3)
    """

    HEAD_FILE = "quantile_head.pt"
    CONFIG_FILE = "quantile_head.json"

    def __init__(self, base_model: Any, tokenizer: Any | None = None, *,
                 quantiles: Sequence[float] = (0.1, 0.5, 0.9), step_tag: str = "\n\n",
                 step_sep: str = "", add_bos: bool = True, batch_size: int = 8, seed: int = 0) -> None:
        import torch

        qs = tuple(float(q) for q in quantiles)
        if not qs or any(not 0.0 < q < 1.0 for q in qs) or list(qs) != sorted(qs):
            raise ValueError(f"quantiles must be ascending levels in (0, 1), got {quantiles!r}")
        self.base, self.tokenizer = load_model(base_model, tokenizer, kind="base")
        self.quantiles, self.step_tag, self.step_sep, self.add_bos = qs, step_tag, step_sep, add_bos
        self.batch_size = int(batch_size)
        self.tag_ids = list(self.tokenizer.encode(step_tag, add_special_tokens=False))
        hidden = self.base.config.get_text_config().hidden_size
        gen = torch.Generator().manual_seed(int(seed))
        self.head = torch.nn.Linear(hidden, len(qs))
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(len(qs), hidden, generator=gen) * 0.1 * hidden**-0.5)
            self.head.bias.zero_()
        self.head.to(self.base.device)
        self.module = torch.nn.ModuleDict({"base": self.base, "head": self.head})

    def forward(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[Any]:
        """Differentiable quantiles per item, tensors of shape (len(steps), Q)."""
        import torch

        encs = [encode_steps(self.tokenizer, q, s, tag_ids=self.tag_ids, step_sep=self.step_sep,
                             add_bos=self.add_bos) for q, s in items]
        out: list[Any] = [torch.zeros(0, len(self.quantiles)) for _ in items]
        todo = [i for i, (_, pos) in enumerate(encs) if pos]
        for s in range(0, len(todo), self.batch_size):
            chunk = todo[s: s + self.batch_size]
            ids, attn = pad_right([encs[i][0] for i in chunk], self.tokenizer.pad_token_id or 0, self.base.device)
            h = hidden_states(self.base, ids, attn)  # (B, T, H)
            for b, i in enumerate(chunk):
                a = self.head(h[b, encs[i][1]].to(self.head.weight.dtype)).float()  # (K, Q)
                inc = torch.nn.functional.softplus(a[:, 1:]).cumsum(-1)
                out[i] = torch.sigmoid(torch.cat([a[:, :1], a[:, :1] + inc], -1))
        return out

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """For each ``(question, steps)``, quantiles ``(len(steps), Q)``, ascending per step."""
        import torch

        self.module.eval()
        with torch.no_grad():
            return [t.double().cpu().numpy() for t in self.forward(items)]

    def fit(self, items: Sequence[tuple[str, Sequence[str]]], targets: Sequence[Sequence[float]], *,
            epochs: int = 50, lr: float = 1e-2, train_base: bool = False) -> list[float]:
        """Train on per-step targets in [0, 1] (e.g. MC Q-values or outcomes) with the pinball loss.

        Returns:
            The mean loss of each epoch.
        """
        import torch

        if len(items) != len(targets) or any(len(s) != len(t) for (_, s), t in zip(items, targets)):
            raise ValueError("need one target per step of every item")
        flags = [p.requires_grad for p in self.base.parameters()]
        for p in self.base.parameters():
            p.requires_grad_(train_base)
        opt = torch.optim.Adam(self.module.parameters() if train_base else self.head.parameters(), lr=lr)
        self.module.train()
        losses = []
        for _ in range(int(epochs)):
            total, count = 0.0, 0
            for s in range(0, len(items), self.batch_size):
                preds = self.forward(items[s: s + self.batch_size])
                ys = [torch.as_tensor(list(t), dtype=torch.float32) for t in targets[s: s + self.batch_size]]
                pred, y = torch.cat(preds), torch.cat(ys).to(preds[0].device)
                if len(y) == 0:
                    continue
                loss = pinball_loss(pred, y, self.quantiles)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, count = total + float(loss.detach()) * len(y), count + len(y)
            losses.append(total / max(count, 1))
        self.module.eval()
        for p, f in zip(self.base.parameters(), flags):
            p.requires_grad_(f)
        return losses

    def save_pretrained(self, path: str) -> None:
        """Save the base (``save_pretrained``), the tokenizer, the head weights and settings."""
        import json
        from pathlib import Path

        import torch

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.base.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        torch.save(self.head.state_dict(), out / self.HEAD_FILE)
        cfg = {"quantiles": list(self.quantiles), "step_tag": self.step_tag,
               "step_sep": self.step_sep, "add_bos": self.add_bos}
        (out / self.CONFIG_FILE).write_text(json.dumps(cfg, indent=2))

    @classmethod
    def from_pretrained(cls, path: str, *, dtype: str = "float32", **kwargs: Any) -> QuantileHeadPRM:
        """Load what :meth:`save_pretrained` wrote (``kwargs`` override saved settings)."""
        import json
        from pathlib import Path

        import torch

        cfg = json.loads((Path(path) / cls.CONFIG_FILE).read_text())
        cfg.update(kwargs)
        base, tok = load_model(str(path), None, kind="base", dtype=dtype)
        prm = cls(base, tok, **cfg)
        state = torch.load(Path(path) / cls.HEAD_FILE, map_location=prm.base.device, weights_only=True)
        prm.head.load_state_dict(state)
        return prm
