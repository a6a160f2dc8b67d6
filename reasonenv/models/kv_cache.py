"""Per-row key/value caches batched together and split apart again.

Two parts of the library keep one transformers cache per sequence and forward many of them at
once: the HF policy (one cache per env slot) and the reference scorer (one per episode key).
Both left-pad the per-row caches to a common length, forward with an attention mask and
explicit positions, and cut each row's part back out. Those three operations live here.

A row cache is a sequence over layers of ``(keys, values)``, each ``(1, heads, length,
head_dim)``. Only caches made of full key/value layers can be batched this way; sliding-window
or otherwise compressed layers raise :class:`NotImplementedError` with ``hint`` appended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Per layer (keys, values), each of shape (1, heads, cached_len, head_dim).
KV = Sequence[tuple[Any, Any]]


def full_layers(past: Any, hint: str = "") -> list[tuple[Any, Any]]:
    """Per layer ``(keys, values)`` of a model cache, each ``(batch, heads, length, head_dim)``."""
    out = []
    for layer in past.layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if keys is None or getattr(layer, "is_sliding", False) or keys.dim() != 4:
            raise NotImplementedError(
                f"cache layer {type(layer).__name__} is not a full key/value layer, so per-row "
                f"caches cannot be batched{'; ' + hint if hint else ''}")
        out.append((keys, values))
    return out


def left_pad(kvs: Sequence[KV | None], lengths: Sequence[int], device: Any) -> tuple[Any, Any]:
    """Row caches left-padded to the longest: ``(DynamicCache (N, heads, C, head_dim), mask (N, C))``.

    The mask is 1 on each row's last ``lengths[i]`` positions (its cache) and 0 on the padding.
    Rows without a cache (``None`` or length 0) are all padding; with no cache at all the mask
    is ``(N, 0)`` and the cache is empty.
    """
    import torch
    from transformers import DynamicCache

    n, width = len(kvs), max(lengths)
    attn = torch.zeros((n, width), dtype=torch.long, device=device)
    cache = DynamicCache()
    ref = next((kv for kv, c in zip(kvs, lengths) if kv is not None and c), None)
    if width == 0 or ref is None:
        return cache, attn
    for layer, (k0, v0) in enumerate(ref):
        keys = k0.new_zeros((n, k0.shape[1], width, k0.shape[3]))
        values = v0.new_zeros((n, v0.shape[1], width, v0.shape[3]))
        for i, (kv, c) in enumerate(zip(kvs, lengths)):
            if kv is not None and c:
                keys[i, :, width - c:] = kv[layer][0][0]
                values[i, :, width - c:] = kv[layer][1][0]
        cache.update(keys, values, layer)
    for i, c in enumerate(lengths):
        if c:
            attn[i, width - c:] = 1
    return cache, attn


def split_row(past: Any, mask: Any, i: int, hint: str = "") -> list[tuple[Any, Any]]:
    """Row ``i`` of a batched cache at the positions where ``mask`` ((C,) bool) is set."""
    out = []
    for keys, values in full_layers(past, hint):
        if keys.shape[-2] != mask.shape[0]:
            raise RuntimeError(
                f"cache length {keys.shape[-2]} != attention mask length {mask.shape[0]}")
        out.append((keys[i: i + 1, :, mask], values[i: i + 1, :, mask]))
    return out


def cut_row(past: Any, i: int, length: int, *, copy: bool, hint: str = "") -> list[tuple[Any, Any]]:
    """Row ``i`` of a right-padded batched cache, its first ``length`` positions.

    ``copy`` clones the slices so the batched cache's memory can be freed.
    """
    cut = [(k[i: i + 1, :, :length], v[i: i + 1, :, :length]) for k, v in full_layers(past, hint)]
    return [(k.clone(), v.clone()) if copy else (k, v) for k, v in cut]
