"""A Hugging Face transformers policy: batched sampling of one reasoning step per call.

The policy keeps, per slot, the key/value cache of every token it has already fed to the model,
so an episode of K steps forwards each prompt and response token exactly once (O(L) work rather
than re-encoding the growing context at every step). Slots of different lengths are sampled
together: their caches are left-padded into one batched :class:`transformers.DynamicCache`,
each generated token is one batched forward, and the updated cache is split back per slot.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reasonenv.models.assets import resolve_model
from reasonenv.models.kv_cache import KV, left_pad, split_row
from reasonenv.models.sampler import sample_categorical, top_p_filter
from reasonenv.segmentation import IncrementalDecoder, Segmenter

_HINT = "use HFPolicyConfig(cache=False) for this model"


@dataclass
class HFPolicyConfig:
    """Sampling settings of :class:`HFPolicy`."""

    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_step_tokens: int = 128  # hard cap on one step's length
    split: str = "\n\n"  # where a step ends (same rule as the env)
    dtype: str = "float32"  # "bfloat16" halves CPU time where the CPU supports it
    seed: int = 0
    cache: bool = True  # keep each slot's KV cache between act() calls
    max_cached_slots: int = 64  # LRU bound on slots whose KV cache is kept
    # Keep sampling a slot past the end of its step while other slots are still in theirs (its
    # batch row would idle otherwise); those tokens, up to max_step_tokens, start its next step.
    lookahead: bool = True


@dataclass
class _Slot:
    """What the policy remembers about one slot's episode."""

    prompt_ids: list[int]
    decoder: IncrementalDecoder
    kv: KV | None = None  # cache of ids()[:cached]
    cached: int = 0
    ahead: list[int] = field(default_factory=list)  # sampled past the last step's end, not yet given
    ahead_lps: list[float] = field(default_factory=list)

    def ids(self) -> list[int]:
        return self.prompt_ids + self.decoder.ids + self.ahead


@dataclass
class _Row:
    """One slot's bookkeeping during an act() call."""

    slot: int
    state: _Slot
    start_char: int
    start_tok: int
    lps: list[float] = field(default_factory=list)
    eos: bool = False
    tail: str = ""  # the step's last characters, for the incremental delimiter check
    done: bool = False  # the step has ended (later tokens of this row go to the slot's ahead)


class HFPolicy:
    """Samples the next step for a batch of slots with a transformers causal LM.

    The policy keeps each slot's prompt and response token ids, so the tokens it reports are
    exactly the tokens it sampled (no re-tokenisation of decoded text). Each returned action is
    ``{"text", "token_ids", "logprobs", "eos"}``: ``logprobs`` are log pi_old of the sampled
    tokens under the sampling temperature (before top-p filtering).

    KV cache: between calls a slot keeps the cache of all its tokens but the last sampled one;
    that token is fed first at the slot's next call, so every token is forwarded once
    (:attr:`tokens_forwarded` counts them). At most ``config.max_cached_slots`` caches are kept
    (least recently used dropped first); a slot whose cache was dropped, or every slot after
    :meth:`clear_cache`, re-forwards its history at its next call. Needs a model whose cache
    is a per-layer key/value cache (standard decoder-only transformers).

    Args:
        model: A loaded causal LM, or a name resolved by
            :func:`reasonenv.models.assets.resolve_model` (local folder, packaged
            ``"smollm2-135m-instruct"``, or a hub id).
        tokenizer: The tokenizer; loaded from ``model`` when it is a name.
        config: Sampling settings.

    Attributes:
        tokens_forwarded: Real (non-padding) tokens fed to the model so far.
        forward_calls: Batched forward passes run so far.
    """

    def __init__(
        self, model: Any, tokenizer: Any | None = None, config: HFPolicyConfig | None = None
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config or HFPolicyConfig()
        if self.config.max_cached_slots < 0:
            raise ValueError(f"max_cached_slots must be >= 0, got {self.config.max_cached_slots}")
        dtype = getattr(torch, self.config.dtype)
        if isinstance(model, str):
            path = resolve_model(model)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        if tokenizer is None:
            raise ValueError("HFPolicy(model=<loaded model>) needs tokenizer=")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.segmenter = Segmenter(self.config.split)
        self._slots: dict[int, _Slot] = {}
        self._lru: OrderedDict[int, None] = OrderedDict()  # slots holding a KV cache
        self._gen = torch.Generator().manual_seed(self.config.seed)
        self.tokens_forwarded = 0
        self.forward_calls = 0

    # -- state ------------------------------------------------------------------------------
    def reset(self, slots: Sequence[int]) -> None:
        """Forget ``slots`` (token history and KV cache): their next observation is a prompt."""
        for s in slots:
            self._slots.pop(s, None)
            self._lru.pop(s, None)

    def clear_cache(self) -> None:
        """Drop every KV cache but keep the token histories (call after the weights change).

        Tokens sampled ahead are dropped too: they came from the old weights.
        """
        for st in self._slots.values():
            st.kv, st.cached = None, 0
            st.ahead, st.ahead_lps = [], []
        self._lru.clear()

    def cached_tokens(self, slot: int) -> int:
        """How many of ``slot``'s tokens are in its KV cache (0 when it has none)."""
        st = self._slots.get(slot)
        return st.cached if st is not None else 0

    def sync_weights(self, model_or_state_dict: Any) -> None:
        """Take the trainer's current weights and invalidate every KV cache.

        Args:
            model_or_state_dict: The trainer's model (when it is this policy's own model, as
                when policy and trainer share it, nothing is copied), another module with the
                same architecture, or a state dict; the latter two are loaded (strict).
                The model is put in eval mode (a shared model too).
        """
        src = model_or_state_dict
        if src is not self.model:
            state = src if isinstance(src, Mapping) else src.state_dict()
            self.model.load_state_dict(state)
        self.model.eval()
        self.clear_cache()

    # -- acting -----------------------------------------------------------------------------
    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[dict[str, Any]]:
        """Sample one step per slot, as one batched forward per generated token.

        Args:
            observations: One per slot. A slot's first observation (``str`` or a mapping with
                ``"text"``) is its prompt; later ones are ignored, as the slot continues its
                own token history.
            slots: The slot of each observation (distinct).

        Returns:
            One ``{"text", "token_ids", "logprobs", "eos"}`` action per observation.
        """
        if len(set(slots)) != len(slots):
            raise ValueError(f"act() got the same slot twice: {list(slots)}")
        rows: list[_Row] = []
        for obs, slot in zip(observations, slots):
            st = self._slots.get(slot)
            if st is None:
                text = obs if isinstance(obs, str) else obs["text"]
                ids = list(self.tokenizer.encode(text, add_special_tokens=False))
                if not ids:
                    raise ValueError(f"slot {slot}: the prompt encodes to no tokens")
                st = self._slots[slot] = _Slot(ids, IncrementalDecoder(self.tokenizer))
            dec = st.decoder
            rows.append(_Row(slot, st, len(dec.text), len(dec.ids)))
        if rows:
            try:
                todo = [r for r in rows if not self._take_ahead(r)]
                if todo:
                    self._generate(todo)
            except BaseException:
                self.reset([r.slot for r in rows])  # half-sampled steps: start these slots over
                raise
        actions = []
        for r in rows:
            dec = r.state.decoder
            ids = dec.ids[r.start_tok:]
            actions.append({"text": dec.text[r.start_char:], "token_ids": ids,
                            "logprobs": r.lps, "eos": r.eos})
        return actions

    def _push(self, r: _Row, t: int, lp: float) -> bool:
        """Append token ``t`` (log-prob ``lp``) to row ``r``'s step; True when it ends the step."""
        dec = r.state.decoder
        delta = dec.push(t)
        r.lps.append(lp)
        n = len(dec.ids) - r.start_tok
        if t == self.tokenizer.eos_token_id:
            r.eos = True
        ended, r.tail = self.segmenter.ends_with_delta(r.tail, delta, n)
        r.done = r.eos or n >= self.config.max_step_tokens or ended
        return r.done

    def _take_ahead(self, r: _Row) -> bool:
        """Start ``r``'s step with the tokens sampled ahead for its slot; True if they end it.

        ``ids()`` is unchanged (tokens move from the front of ``ahead`` to the decoder), so the
        slot's cache stays valid; tokens after the step's end stay ahead.
        """
        st = r.state
        while st.ahead:
            t, lp = st.ahead.pop(0), st.ahead_lps.pop(0)
            if self._push(r, t, lp):
                return True
        return False

    def _generate(self, rows: list[_Row]) -> None:
        """Sample up to ``max_step_tokens`` tokens per row: one batched forward per token."""
        import torch

        cfg = self.config
        eos_id = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        live = list(rows)
        for r in live:  # a slot without a cache re-forwards its whole history
            if r.state.kv is None:
                r.state.cached = 0
        pending = [r.state.ids()[r.state.cached:] for r in live]
        cached = [r.state.cached for r in live]
        past, attn = left_pad([r.state.kv for r in live], cached, device)
        for r in live:  # the batched copy replaces the per-slot caches until _store
            r.state.kv = None
            self._lru.pop(r.slot, None)
        width = max(len(p) for p in pending)
        input_ids = torch.full((len(live), width), pad, dtype=torch.long, device=device)
        pos = torch.zeros_like(input_ids)
        new_attn = torch.zeros_like(input_ids)
        for i, (p, c) in enumerate(zip(pending, cached)):
            input_ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            pos[i, width - len(p):] = torch.arange(c, c + len(p))
            new_attn[i, width - len(p):] = 1
        attn = torch.cat([attn, new_attn], dim=1)
        n_fed = sum(len(p) for p in pending)
        with torch.no_grad():
            for _ in range(cfg.max_step_tokens):
                out = self.model(input_ids=input_ids, attention_mask=attn, position_ids=pos,
                                 past_key_values=past, use_cache=True)
                self.tokens_forwarded += n_fed
                self.forward_calls += 1
                past = out.past_key_values
                tok, lp = self._sample(out.logits[:, -1, :].float())
                keep: list[int] = []
                for i, r in enumerate(live):
                    t, st = int(tok[i]), r.state
                    if not r.done:
                        stay = not self._push(r, t, float(lp[i])) or (cfg.lookahead and not r.eos)
                    else:  # sampled ahead: the start of the slot's next step
                        st.ahead.append(t)
                        st.ahead_lps.append(float(lp[i]))
                        stay = t != eos_id and len(st.ahead) < cfg.max_step_tokens
                    if stay:
                        keep.append(i)
                    else:
                        self._store(r, past, attn, i)
                if all(live[i].done for i in keep):  # no step still running: rows ahead stop too
                    for i in keep:
                        self._store(live[i], past, attn, i)
                    break
                if len(keep) < len(live):
                    idx = torch.tensor(keep, dtype=torch.long, device=device)
                    past.batch_select_indices(idx)
                    attn, tok = attn[idx], tok[idx]
                    live = [live[i] for i in keep]
                input_ids = tok[:, None]
                attn = torch.cat([attn, torch.ones_like(input_ids)], dim=1)
                pos = attn.sum(-1, keepdim=True) - 1
                n_fed = len(live)

    def _sample(self, logits: Any) -> tuple[Any, Any]:
        """Pick one token per row of ``logits`` (N, V); return (tokens, their log-probs)."""
        import torch

        cfg = self.config
        if cfg.temperature <= 0:
            logp = torch.log_softmax(logits, -1)
            tok = logits.argmax(-1)
        else:
            logp = torch.log_softmax(logits / cfg.temperature, -1)
            probs = logp.exp()
            if cfg.top_p < 1.0:
                probs = top_p_filter(probs, cfg.top_p)
            tok = sample_categorical(probs, self._gen)
        return tok, logp.gather(-1, tok[:, None]).squeeze(-1)

    def _store(self, row: _Row, past: Any, attn: Any, i: int) -> None:
        """Keep row ``i``'s part of the batched cache (padding dropped) for the slot's next call.

        The cache then covers all the slot's tokens but the step's last sampled token.
        """
        st = row.state
        if not self.config.cache or self.config.max_cached_slots == 0:
            st.kv, st.cached = None, 0
            return
        st.kv = split_row(past, attn[i].bool(), i, _HINT)
        st.cached = len(st.ids()) - 1
        self._lru.pop(row.slot, None)
        self._lru[row.slot] = None
        while len(self._lru) > self.config.max_cached_slots:
            old, _ = self._lru.popitem(last=False)
            if old in self._slots:
                self._slots[old].kv, self._slots[old].cached = None, 0
