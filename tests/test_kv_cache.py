"""The shared per-row cache helpers: left-padding and splitting are inverse, padding is masked."""

from __future__ import annotations

import pytest
import torch

from reasonenv.models.kv_cache import cut_row, left_pad, split_row


def _row(length: int, seed: int, layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, 3, length, 4, generator=g), torch.randn(1, 3, length, 4, generator=g))
            for _ in range(layers)]


def test_left_pad_then_split_gives_each_row_back() -> None:
    rows = [_row(5, 0), None, _row(2, 1)]
    cache, attn = left_pad(rows, [5, 0, 2], "cpu")
    assert attn.tolist() == [[1] * 5, [0] * 5, [0, 0, 0, 1, 1]]
    for i, kv in enumerate(rows):
        got = split_row(cache, attn[i].bool(), i)
        if kv is None:
            assert all(k.shape[-2] == 0 for k, _ in got)
            continue
        for (k, v), (k0, v0) in zip(got, kv):
            assert torch.equal(k, k0) and torch.equal(v, v0)
    # padding positions are zeros, not another row's values
    assert torch.count_nonzero(cache.layers[0].keys[2, :, :3]) == 0


def test_no_cache_at_all_is_an_empty_cache_and_a_zero_width_mask() -> None:
    cache, attn = left_pad([None, None], [0, 0], "cpu")
    assert tuple(attn.shape) == (2, 0) and len(cache.layers) == 0


def test_cut_row_takes_the_first_positions_and_copy_detaches_storage() -> None:
    cache, _ = left_pad([_row(4, 2), _row(4, 3)], [4, 4], "cpu")
    got = cut_row(cache, 1, 3, copy=True)
    assert torch.equal(got[0][0], cache.layers[0].keys[1:2, :, :3])
    got[0][0].zero_()
    assert torch.count_nonzero(cache.layers[0].keys[1:2, :, :3]) > 0


def test_a_mask_of_the_wrong_length_is_refused() -> None:
    cache, attn = left_pad([_row(3, 4)], [3], "cpu")
    with pytest.raises(RuntimeError, match="cache length 3 != attention mask length 2"):
        split_row(cache, attn[0, :2].bool(), 0)


def test_a_layer_that_is_not_full_key_value_names_the_hint() -> None:
    class Sliding:
        keys = torch.zeros(1, 1, 1, 1)
        values = keys
        is_sliding = True

    class Past:
        layers = [Sliding()]

    with pytest.raises(NotImplementedError, match="Sliding is not a full key/value layer.*; use X"):
        split_row(Past(), torch.ones(1, dtype=torch.bool), 0, "use X")
