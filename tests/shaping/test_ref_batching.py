"""HFRefScorer's batched extension: the cache-hit requests of one call share a forward (caches
left-padded, explicit positions) and give the log-probs of a fresh full forward of each sequence."""

from __future__ import annotations

import numpy as np
import pytest

from reasonenv.shaping.protocols import RefRequest

ATOL = 1e-5  # float32


def _full(model, ctx, new):
    """log pi(new | ctx) from one unpadded forward of ctx + new (the reference values)."""
    import torch

    seq = list(ctx) + list(new)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([seq])).logits[0].float(), -1)
    return np.array([float(logp[p - 1, seq[p]]) for p in range(len(ctx), len(seq))])


def _ids(rng, n):
    return tuple(int(t) for t in rng.integers(2, 300, size=n))


def _check(model, reqs, got):
    assert len(got) == len(reqs)
    for r, lp in zip(reqs, got):
        assert lp.shape == (len(r.new_ids),)
        np.testing.assert_allclose(lp, _full(model, r.context_ids, r.new_ids), atol=ATOL, rtol=0)


@pytest.fixture
def ref(tiny_lm, tiny_tok):
    from reasonenv.models.ref_scorer import HFRefScorer

    return HFRefScorer(tiny_lm, tiny_tok)


def test_hits_of_different_cache_and_step_lengths_share_one_forward(ref, tiny_lm):
    rng = np.random.default_rng(0)
    prompts = [_ids(rng, n) for n in (3, 17, 9, 30, 1)]  # different cache lengths
    ctxs = list(prompts)
    reqs = [RefRequest(("s", i), c, _ids(rng, 4)) for i, c in enumerate(ctxs)]
    _check(tiny_lm, reqs, ref.logprobs(reqs))
    assert ref.forward_calls == 1  # five fresh requests, batch_size 8
    for rnd, lengths in enumerate([(1, 7, 3, 12, 5), (6, 1, 2, 2, 9), (3, 3, 3, 3, 3)]):
        ctxs = [r.context_ids + r.new_ids for r in reqs]
        reqs = [RefRequest(("s", i), c, _ids(rng, n)) for i, (c, n) in enumerate(zip(ctxs, lengths))]
        calls, toks = ref.forward_calls, ref.tokens_forwarded
        _check(tiny_lm, reqs, ref.logprobs(reqs))
        assert ref.forward_calls - calls == 1, f"round {rnd}: N cache hits = one forward"
        assert ref.tokens_forwarded - toks == sum(lengths)  # only the new tokens
    for key in ref.cached_keys():  # the stored caches have no padding left in them
        e = ref._cache[key]
        assert all(k.shape[-2] == v.shape[-2] == len(e.ids) for k, v in e.past)


def test_context_beyond_the_cache_and_row_budget(tiny_lm, tiny_tok):
    from reasonenv.models.ref_scorer import HFRefScorer

    ref = HFRefScorer(tiny_lm, tiny_tok, extend_batch_size=2)
    rng = np.random.default_rng(1)
    reqs = [RefRequest(i, _ids(rng, 5 + 3 * i), _ids(rng, 2 + i)) for i in range(5)]
    ref.logprobs(reqs)
    # Rows 0, 2 and 4 bring context tokens the cache has not seen (forwarded with the new ones).
    reqs = [RefRequest(i, r.context_ids + r.new_ids + (_ids(rng, i + 1) if i % 2 == 0 else ()),
                       _ids(rng, 6 - i)) for i, r in enumerate(reqs)]
    calls = ref.forward_calls
    _check(tiny_lm, reqs, ref.logprobs(reqs))
    assert ref.forward_calls - calls == 3  # five hits, two rows per forward


def test_evicted_key_is_forwarded_fresh_next_to_hits(tiny_lm, tiny_tok):
    from reasonenv.models.ref_scorer import HFRefScorer

    ref = HFRefScorer(tiny_lm, tiny_tok, max_cached=3)
    rng = np.random.default_rng(2)
    reqs = [RefRequest(k, _ids(rng, n), _ids(rng, 3)) for k, n in zip("abc", (4, 11, 7))]
    ref.logprobs(reqs)
    ref.logprobs([RefRequest("d", _ids(rng, 5), _ids(rng, 2))])  # LRU of 3: "a" evicted
    assert ref.cached_keys() == ["b", "c", "d"]
    nxt = [RefRequest(r.key, r.context_ids + r.new_ids, _ids(rng, n)) for r, n in zip(reqs, (4, 2, 5))]
    calls, toks = ref.forward_calls, ref.tokens_forwarded
    _check(tiny_lm, nxt, ref.logprobs(nxt))
    assert ref.forward_calls - calls == 2  # "b" and "c" in one extension, "a" fresh
    assert ref.tokens_forwarded - toks == len(nxt[0].context_ids) + 4 + 2 + 5
    ref.release("b")
    last = [RefRequest(r.key, r.context_ids + r.new_ids, _ids(rng, 2)) for r in nxt]
    _check(tiny_lm, last, ref.logprobs(last))


def test_same_key_twice_and_mixed_hit_fresh_oneshot_and_diverged(ref, tiny_lm):
    rng = np.random.default_rng(3)
    a, b, c = _ids(rng, 6), _ids(rng, 13), _ids(rng, 9)
    first = [RefRequest("a", a, _ids(rng, 3)), RefRequest("b", b, _ids(rng, 4)), RefRequest("c", c, _ids(rng, 2))]
    ref.logprobs(first)
    a1 = first[0].context_ids + first[0].new_ids
    a2_new, a3_new = _ids(rng, 5), _ids(rng, 2)
    b_div = b[:-1] + ((b[-1] + 1) % 300,)  # diverges from "b"'s cache: fresh
    reqs = [
        RefRequest("a", a1, a2_new),  # hit
        RefRequest(None, _ids(rng, 8), _ids(rng, 3)),  # one-shot
        RefRequest("b", b_div, _ids(rng, 4)),  # diverged
        RefRequest("a", a1 + a2_new, a3_new),  # the same key again: extends the first one's cache
        RefRequest("c", first[2].context_ids + first[2].new_ids, _ids(rng, 6)),  # hit
        RefRequest("e", (), _ids(rng, 3)),  # new key, empty context: BOS prepended
        RefRequest("c", (), ()),  # nothing to score
    ]
    calls, toks = ref.forward_calls, ref.tokens_forwarded
    got = ref.logprobs(reqs)
    assert got[-1].shape == (0,)
    bos = (ref._bos()[0],)
    _check(tiny_lm, [r if r.context_ids or not r.new_ids else RefRequest(r.key, bos, r.new_ids)
                     for r in reqs[:-1]], got[:-1])
    # Wave 1: hits a, c in one forward + fresh (one-shot, b, e) in one; wave 2: a again, a hit.
    assert ref.forward_calls - calls == 3
    assert ref.tokens_forwarded - toks == 5 + 6 + (8 + 3) + (len(b_div) + 4) + (1 + 3) + 2
    assert set(ref.cached_keys()) == {"a", "b", "c", "e"}
    assert len(ref._cache["a"].ids) == len(a1 + a2_new + a3_new)


def test_unsliceable_cache_falls_back_to_one_row_per_request(tiny_lm, tiny_tok):
    """A sliding-window model keeps the model's own cache and forwards one request at a time."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    from reasonenv.models.ref_scorer import HFRefScorer

    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=len(tiny_tok), hidden_size=32, intermediate_size=64,
                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        max_position_embeddings=256, sliding_window=16,
                        bos_token_id=tiny_tok.bos_token_id, pad_token_id=tiny_tok.pad_token_id)
    model = MistralForCausalLM(cfg).eval()
    ref = HFRefScorer(model, tiny_tok)
    assert not ref._sliceable
    rng = np.random.default_rng(4)
    reqs = [RefRequest(i, _ids(rng, n), _ids(rng, 3)) for i, n in enumerate((5, 9, 12))]
    _check(model, reqs, ref.logprobs(reqs))
    assert ref.forward_calls == 3
    for _ in range(2):
        reqs = [RefRequest(r.key, r.context_ids + r.new_ids, _ids(rng, 4)) for r in reqs]
        calls = ref.forward_calls
        _check(model, reqs, ref.logprobs(reqs))
        assert ref.forward_calls - calls == 3


def test_bad_arguments_and_ids_name_the_field(ref, tiny_lm, tiny_tok):
    from reasonenv.models.ref_scorer import HFRefScorer

    for kw in ({"batch_size": 0}, {"extend_batch_size": 0}, {"max_cached": -1}, {"batch_size": 2.5}):
        (name, value), = kw.items()
        with pytest.raises(ValueError, match=f"{name}={value!r}"):
            HFRefScorer(tiny_lm, tiny_tok, **kw)
    with pytest.raises(ValueError, match=r"new_ids holds token id 320, outside .*\[0, 320\)"):
        ref.logprobs([RefRequest("k", (5, 6), (7, len(tiny_tok)))])
    with pytest.raises(ValueError, match="context_ids holds token id -1"):
        ref.logprobs([RefRequest("k", (5, -1), (7,))])
    ref.logprobs([RefRequest("k", (5, 6), (7,))])
    with pytest.raises(ValueError, match="new_ids holds token id 999"):  # on the cache-hit path too
        ref.logprobs([RefRequest("k", (5, 6, 7), (999,))])
