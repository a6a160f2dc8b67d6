"""Shared helpers of the torch-backed services: load a model by name, pad id batches, read
hidden states, lay a question and its steps out as ids (torch is imported inside functions).

Example:
    >>> from reasonenv.testing import tiny_tokenizer
    >>> ids, positions = encode_steps(tiny_tokenizer(), "2+2?", ["4", "done"], tag_ids=[0])
    >>> len(positions)
    2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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

        from reasonenv.models.assets import resolve_model

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


def single_token(tokenizer: Any, tok: str | int, what: str) -> int:
    if isinstance(tok, int):
        return tok
    ids = tokenizer.encode(tok, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"{what}={tok!r} is {len(ids)} tokens {ids}; pass its token id instead")
    return int(ids[0])


def save_with_head(path: Any, base: Any, tokenizer: Any, head: Any, head_file: str, config_file: str,
                   settings: dict[str, Any]) -> None:
    """Write a base model + tokenizer (their own ``save_pretrained``), a head's weights
    (safetensors) and the head's settings (JSON) into one folder. Nothing is pickled."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    base.save_pretrained(out)
    tokenizer.save_pretrained(out)
    state = {k: v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(out / head_file))
    (out / config_file).write_text(json.dumps(settings, indent=2), encoding="utf-8")
