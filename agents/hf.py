"""A Hugging Face transformers policy: batched sampling of one reasoning step per call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reasonenv.agents.assets import resolve_model
from reasonenv.segmentation import IncrementalDecoder, Segmenter


@dataclass
class HFPolicyConfig:
    """Sampling settings of :class:`HFPolicy`."""

    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_step_tokens: int = 128  # hard cap on one step's length
    split: str = "\n\n"  # where a step ends (same rule as the env)
    dtype: str = "float32"  # "bfloat16" halves CPU time where the CPU supports it
    seed: int = 0


class HFPolicy:
    """Samples the next step for a batch of slots with a transformers causal LM.

    The policy keeps each slot's prompt and response token ids, so the tokens it reports are
    exactly the tokens it sampled (no re-tokenisation of decoded text). Each returned action is
    ``{"text", "token_ids", "logprobs", "eos"}``: ``logprobs`` are log pi_old of the sampled
    tokens under the sampling temperature.

    Args:
        model: A loaded causal LM, or a name resolved by
            :func:`reasonenv.agents.assets.resolve_model` (local folder, packaged
            ``"smollm2-135m-instruct"``, or a hub id).
        tokenizer: The tokenizer; loaded from ``model`` when it is a name.
        config: Sampling settings.
    """

    def __init__(self, model: Any, tokenizer: Any | None = None, config: HFPolicyConfig | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config or HFPolicyConfig()
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
        self._prompt_ids: dict[int, list[int]] = {}
        self._decoders: dict[int, IncrementalDecoder] = {}
        self._gen = torch.Generator().manual_seed(self.config.seed)

    def reset(self, slots: Sequence[int]) -> None:
        for s in slots:
            self._prompt_ids.pop(s, None)
            self._decoders.pop(s, None)

    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[dict[str, Any]]:
        for obs, slot in zip(observations, slots):
            if slot not in self._prompt_ids:
                text = obs if isinstance(obs, str) else obs["text"]
                self._prompt_ids[slot] = list(self.tokenizer.encode(text, add_special_tokens=False))
                self._decoders[slot] = IncrementalDecoder(self.tokenizer)
        contexts = [self._prompt_ids[s] + self._decoders[s].ids for s in slots]
        new_ids, new_lps = self._sample(contexts)
        actions = []
        eos_id = self.tokenizer.eos_token_id
        for slot, ids, lps in zip(slots, new_ids, new_lps):
            dec = self._decoders[slot]
            start_char, start_tok = len(dec.text), len(dec.ids)
            eos = False
            for t in ids:
                dec.push(t)
                if t == eos_id:
                    eos = True
                    break
                if self.segmenter.ends_step(dec.text[start_char:], len(dec.ids) - start_tok):
                    break
            kept = dec.ids[start_tok:]
            actions.append(
                {"text": dec.text[start_char:], "token_ids": kept, "logprobs": lps[: len(kept)], "eos": eos}
            )
        return actions

    def _sample(self, contexts: list[list[int]]) -> tuple[list[list[int]], list[list[float]]]:
        """Sample up to ``max_step_tokens`` tokens per context, stopping rows at step ends."""
        import torch

        cfg = self.config
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(c) for c in contexts)
        input_ids = torch.full((len(contexts), width), pad, dtype=torch.long)  # (N, T) left-padded
        attn = torch.zeros_like(input_ids)
        for i, c in enumerate(contexts):
            input_ids[i, width - len(c):] = torch.tensor(c)
            attn[i, width - len(c):] = 1
        out_ids: list[list[int]] = [[] for _ in contexts]
        out_lps: list[list[float]] = [[] for _ in contexts]
        done = torch.zeros(len(contexts), dtype=torch.bool)
        decs = [IncrementalDecoder(self.tokenizer) for _ in contexts]
        past = None
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        cur, cur_pos, cur_attn = input_ids, pos, attn
        with torch.no_grad():
            for _ in range(cfg.max_step_tokens):
                out = self.model(input_ids=cur, attention_mask=cur_attn, position_ids=cur_pos,
                                 past_key_values=past, use_cache=True)
                past = out.past_key_values
                logits = out.logits[:, -1, :].float()  # (N, V)
                if cfg.temperature <= 0:
                    logp = torch.log_softmax(logits, -1)
                    tok = logits.argmax(-1)
                else:
                    logp = torch.log_softmax(logits / cfg.temperature, -1)
                    probs = logp.exp()
                    if cfg.top_p < 1.0:
                        probs = _top_p_filter(probs, cfg.top_p)
                    tok = torch.multinomial(probs, 1, generator=self._gen).squeeze(-1)
                lp = logp.gather(-1, tok[:, None]).squeeze(-1)
                for i in range(len(contexts)):
                    if done[i]:
                        continue
                    t = int(tok[i])
                    out_ids[i].append(t)
                    out_lps[i].append(float(lp[i]))
                    decs[i].push(t)
                    if t == self.tokenizer.eos_token_id or self.segmenter.ends_step(decs[i].text, len(out_ids[i])):
                        done[i] = True
                if bool(done.all()):
                    break
                cur = tok[:, None]
                cur_attn = torch.cat([cur_attn, torch.ones_like(cur)], dim=1)
                cur_pos = cur_attn.sum(-1, keepdim=True) - 1
        return out_ids, out_lps


def _top_p_filter(probs: Any, top_p: float) -> Any:
    """Zero the tail of each row outside the smallest set with mass >= ``top_p``; renormalise."""
    import torch

    sorted_p, idx = probs.sort(-1, descending=True)
    keep = sorted_p.cumsum(-1) - sorted_p < top_p
    filtered = torch.zeros_like(probs).scatter(-1, idx, sorted_p * keep)
    return filtered / filtered.sum(-1, keepdim=True)
