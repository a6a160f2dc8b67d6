"""HFPolicy keeps each slot's KV cache across act() calls: every token is forwarded once."""

from __future__ import annotations

import copy

import pytest

from reasonenv.segmentation import IncrementalDecoder, Segmenter

torch = pytest.importorskip("torch")

PROMPTS = ["Solve: 1 + 1", "What is 2 + 3?", "Q: 7 + 1 = ?\nA: Let's think step by step.\n"]


def make_policy(model, tok, **kw):
    from reasonenv.agents.hf import HFPolicy, HFPolicyConfig

    cfg = {"temperature": 1.0, "max_step_tokens": 6, "split": "\n", "seed": 7, **kw}
    return HFPolicy(model, tok, HFPolicyConfig(**cfg))


def encode(tok, text):
    return tok.encode(text, add_special_tokens=False)


def teacher_forced(model, prompt_ids, response_ids, temperature=1.0):
    """log p of each response token under one full forward of prompt + response."""
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    logp = torch.log_softmax(logits / (temperature if temperature > 0 else 1.0), -1)
    p = len(prompt_ids)
    return [float(logp[p + j - 1, t]) for j, t in enumerate(response_ids)]


def greedy_reference(model, tok, prompt, n_steps, max_step_tokens, split):
    """Plain greedy decoding that re-forwards the whole context for every token (no cache)."""
    seg, ctx = Segmenter(split), encode(tok, prompt)
    dec, steps = IncrementalDecoder(tok), []
    for _ in range(n_steps):
        start_char, start_tok = len(dec.text), len(dec.ids)
        while True:
            with torch.no_grad():
                logits = model(torch.tensor([ctx + dec.ids])).logits[0, -1]
            t = int(logits.argmax())
            dec.push(t)
            n = len(dec.ids) - start_tok
            if t == tok.eos_token_id or n >= max_step_tokens or seg.ends_step(dec.text[start_char:], n):
                break
        steps.append(dec.ids[start_tok:])
    return steps


def test_logprobs_match_teacher_forcing_over_three_steps(tiny_tok, tiny_lm):
    pol = make_policy(tiny_lm, tiny_tok)
    slots = [0, 1, 2]
    pol.reset(slots)
    responses = {s: [] for s in slots}
    for _ in range(3):
        for s, a in zip(slots, pol.act(PROMPTS, slots)):
            assert len(a["token_ids"]) == len(a["logprobs"]) > 0
            responses[s].append(a)
    for s, prompt in zip(slots, PROMPTS):
        ids = [t for a in responses[s] for t in a["token_ids"]]
        lps = [lp for a in responses[s] for lp in a["logprobs"]]
        assert lps == pytest.approx(teacher_forced(tiny_lm, encode(tiny_tok, prompt), ids), abs=1e-4)
        # the step texts concatenate to the decoded response
        assert "".join(a["text"] for a in responses[s]) == IncrementalDecoder(tiny_tok).extend(ids).text


def test_every_token_is_forwarded_exactly_once(tiny_tok, tiny_lm):
    pol = make_policy(tiny_lm, tiny_tok, lookahead=False)  # lookahead: the test after this one
    slots = [0, 1, 2]
    pol.reset(slots)
    generated = {s: 0 for s in slots}
    expected_calls = 0
    for _ in range(3):
        acts = pol.act(PROMPTS, slots)
        for s, a in zip(slots, acts):
            generated[s] += len(a["token_ids"])
        expected_calls += max(len(a["token_ids"]) for a in acts)  # one batched forward per token
    prompt_lens = [len(encode(tiny_tok, p)) for p in PROMPTS]
    # each slot: its prompt and every sampled token but the last (fed at its next act call)
    expected = sum(p + generated[s] - 1 for s, p in zip(slots, prompt_lens))
    assert pol.tokens_forwarded == expected
    assert pol.forward_calls == expected_calls
    for s, p in zip(slots, prompt_lens):
        assert pol.cached_tokens(s) == p + generated[s] - 1
    # the cache never holds padding: each slot's cache has exactly its own length
    for s in slots:
        st = pol._slots[s]
        assert all(k.shape[-2] == v.shape[-2] == st.cached for k, v in st.kv)


def newline_boosted_model(tok, boost=5.0):
    """A fresh tiny model whose "\\n" logit is raised, so "\\n"-steps end at varied lengths."""
    from reasonenv.testing import tiny_model

    model = tiny_model(tok)
    nl = encode(tok, "\n")[0]

    def hook(module, args, out):
        out.logits[..., nl] += boost
        return out

    model.register_forward_hook(hook)
    return model


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_lookahead_forwards_each_token_once_and_saves_forward_calls(tiny_tok, tiny_lm, temperature):
    """A slot whose step ended keeps sampling while others finish theirs; its next step starts
    with those tokens. Each act() then runs max(step length - tokens already ahead) forwards
    over the slots it does not serve from the buffer alone; greedy, the steps are those
    without lookahead; sampled, the log-probs are the teacher-forced ones; each token is
    forwarded once."""
    model = tiny_lm if temperature == 0.0 else newline_boosted_model(tiny_tok)
    slots = [0, 1, 2]
    runs = {}
    for ahead in (False, True):
        pol = make_policy(model, tiny_tok, lookahead=ahead, temperature=temperature)
        pol.reset(slots)
        steps = {s: [] for s in slots}
        saved = without = 0
        for _ in range(5):
            before = {s: len(pol._slots[s].ahead) if s in pol._slots else 0 for s in slots}
            calls = pol.forward_calls
            acts = pol.act(PROMPTS, slots)
            need = [len(a["token_ids"]) - before[s] for s, a in zip(slots, acts)]
            assert pol.forward_calls - calls == max(0, max(need))
            without += max(len(a["token_ids"]) for a in acts)
            saved += max(len(a["token_ids"]) for a in acts) - max(0, max(need))
            for s, a in zip(slots, acts):
                steps[s].append(a)
        runs[ahead] = (pol, steps, saved)
    pol, steps, saved = runs[True]
    assert runs[False][2] == 0
    if temperature > 0:  # greedy, the same slots have the longest steps every time: nothing saved
        assert saved > 0  # fewer forwards than the same steps would take without lookahead
    buffered = {s: len(pol._slots[s].ahead) for s in steps}
    prompt_lens = [len(encode(tiny_tok, p)) for p in PROMPTS]
    generated = {s: sum(len(a["token_ids"]) for a in st) for s, st in steps.items()}
    assert pol.tokens_forwarded == sum(p + generated[s] + buffered[s] - 1
                                       for s, p in zip(steps, prompt_lens))
    for s, p in zip(steps, prompt_lens):
        assert pol.cached_tokens(s) == p + generated[s] + buffered[s] - 1
    for s, prompt in zip(steps, PROMPTS):
        ids = [t for a in steps[s] for t in a["token_ids"]]
        lps = [lp for a in steps[s] for lp in a["logprobs"]]
        assert lps == pytest.approx(teacher_forced(model, encode(tiny_tok, prompt), ids), abs=1e-4)
        if temperature == 0.0:
            assert [a["token_ids"] for a in steps[s]] == [a["token_ids"] for a in runs[False][1][s]]


def test_lookahead_stops_at_eos(tiny_tok):
    from reasonenv.testing import tiny_model

    model = tiny_model(tiny_tok)
    eos = tiny_tok.eos_token_id

    def hook(module, args, out):  # EOS likely, so some slot ends an episode while others run
        out.logits[..., eos] += 4.0
        return out

    model.register_forward_hook(hook)
    pol = make_policy(model, tiny_tok, max_step_tokens=8)
    slots = list(range(6))
    prompts = (PROMPTS * 2)[:6]
    pol.reset(slots)
    seen_eos_ahead = False
    for _ in range(4):
        for s, a in zip(slots, pol.act(prompts, slots)):
            assert eos not in a["token_ids"][:-1]
            ahead = pol._slots[s].ahead
            assert eos not in ahead[:-1]  # nothing is sampled past an EOS
            seen_eos_ahead |= bool(ahead) and ahead[-1] == eos
    assert seen_eos_ahead


def test_clear_cache_and_reset_drop_the_tokens_sampled_ahead(tiny_tok, tiny_lm):
    pol = make_policy(tiny_lm, tiny_tok, temperature=0.0)
    slots = [0, 1, 2]
    pol.reset(slots)
    pol.act(PROMPTS, slots)
    ahead = [s for s in slots if pol._slots[s].ahead]
    assert ahead
    history = {s: list(pol._slots[s].decoder.ids) for s in slots}
    pol.clear_cache()  # new weights: tokens from the old ones must not be handed out
    assert all(not pol._slots[s].ahead and not pol._slots[s].ahead_lps for s in slots)
    assert all(pol._slots[s].ids()[len(encode(tiny_tok, p)):] == history[s]
               for s, p in zip(slots, PROMPTS))
    pol.act(PROMPTS, slots)
    pol.reset(slots)
    assert not pol._slots


def test_greedy_with_cache_equals_plain_full_reforward(tiny_tok, tiny_lm):
    pol = make_policy(tiny_lm, tiny_tok, temperature=0.0)
    slots = [0, 1, 2]
    pol.reset(slots)
    got = {s: [] for s in slots}
    for _ in range(3):
        for s, a in zip(slots, pol.act(PROMPTS, slots)):
            got[s].append(a["token_ids"])
    for s, prompt in zip(slots, PROMPTS):
        assert got[s] == greedy_reference(tiny_lm, tiny_tok, prompt, 3, 6, "\n")
    # cache=False (re-encode everything each call) gives the same tokens
    nocache = make_policy(tiny_lm, tiny_tok, temperature=0.0, cache=False)
    nocache.reset(slots)
    ref = {s: [] for s in slots}
    for _ in range(3):
        for s, a in zip(slots, nocache.act(PROMPTS, slots)):
            ref[s].append(a["token_ids"])
    assert ref == got
    assert nocache.tokens_forwarded > pol.tokens_forwarded


def test_reset_drops_the_cache(tiny_tok, tiny_lm):
    pol = make_policy(tiny_lm, tiny_tok, temperature=0.0)
    pol.reset([3])
    pol.act([PROMPTS[2]], [3])
    assert pol.cached_tokens(3) > 0
    pol.reset([3])
    assert pol.cached_tokens(3) == 0 and 3 not in pol._slots
    before = pol.tokens_forwarded
    a = pol.act([PROMPTS[0]], [3])[0]  # a new episode: the new prompt, nothing of the old one
    assert pol.tokens_forwarded - before == len(encode(tiny_tok, PROMPTS[0])) + len(a["token_ids"]) - 1
    assert a["token_ids"] == greedy_reference(tiny_lm, tiny_tok, PROMPTS[0], 1, 6, "\n")[0]


def test_interleaved_slots(tiny_tok, tiny_lm):
    """act on [0, 1], then [1], then [0, 2]: each slot continues its own history."""
    pol = make_policy(tiny_lm, tiny_tok)
    greedy = make_policy(tiny_lm, tiny_tok, temperature=0.0)
    prompts = dict(enumerate(PROMPTS))
    for p in (pol, greedy):
        p.reset([0, 1, 2])
    got = {0: [], 1: [], 2: []}
    got_greedy = {0: [], 1: [], 2: []}
    for call in ([0, 1], [1], [0, 2]):
        obs = [prompts[s] for s in call]
        for s, a in zip(call, pol.act(obs, call)):
            got[s].append(a)
        for s, a in zip(call, greedy.act(obs, call)):
            got_greedy[s].append(a["token_ids"])
    assert [len(got[s]) for s in (0, 1, 2)] == [2, 2, 1]
    expected = 0
    for s in (0, 1, 2):
        ids = [t for a in got[s] for t in a["token_ids"]]
        lps = [lp for a in got[s] for lp in a["logprobs"]]
        pids = encode(tiny_tok, prompts[s])
        assert lps == pytest.approx(teacher_forced(tiny_lm, pids, ids), abs=1e-4)
        expected += len(pids) + len(ids) - 1
        ref = greedy_reference(tiny_lm, tiny_tok, prompts[s], len(got_greedy[s]), 6, "\n")
        assert got_greedy[s] == ref
    assert pol.tokens_forwarded == expected


def test_lru_bound_evicts_and_recomputes(tiny_tok, tiny_lm):
    pol = make_policy(tiny_lm, tiny_tok, temperature=0.0, max_cached_slots=2)
    slots = [0, 1, 2]
    pol.reset(slots)
    first = pol.act(PROMPTS, slots)
    assert sum(pol.cached_tokens(s) > 0 for s in slots) == 2
    evicted = next(s for s in slots if pol.cached_tokens(s) == 0)
    before = pol.tokens_forwarded
    second = pol.act([PROMPTS[evicted]], [evicted])[0]
    history = len(encode(tiny_tok, PROMPTS[evicted])) + len(first[evicted]["token_ids"])
    assert pol.tokens_forwarded - before == history + len(second["token_ids"]) - 1
    ref = greedy_reference(tiny_lm, tiny_tok, PROMPTS[evicted], 2, 6, "\n")
    assert [first[evicted]["token_ids"], second["token_ids"]] == ref


def test_sync_weights_invalidates_the_cache(tiny_tok):
    from reasonenv.testing import tiny_model

    model, other = tiny_model(tiny_tok, seed=1), tiny_model(tiny_tok, seed=2)
    pol = make_policy(model, tiny_tok)
    pol.reset([0])
    a1 = pol.act([PROMPTS[1]], [0])[0]
    assert pol.cached_tokens(0) > 0
    pol.sync_weights(model)  # the trainer's own model object: nothing copied, cache dropped
    assert pol.model is model and pol.cached_tokens(0) == 0
    pol.act([PROMPTS[1]], [0])
    pol.sync_weights(other.state_dict())  # new weights are loaded
    assert pol.cached_tokens(0) == 0
    w = next(iter(other.state_dict()))
    assert torch.equal(model.state_dict()[w], other.state_dict()[w])
    ids_before = pol._slots[0].ids()
    before = pol.tokens_forwarded
    a3 = pol.act([PROMPTS[1]], [0])[0]
    assert pol.tokens_forwarded - before == len(ids_before) + len(a3["token_ids"]) - 1
    # log-probs of the new step are under the new weights, for the whole history
    ref = teacher_forced(other, ids_before, a3["token_ids"])
    assert a3["logprobs"] == pytest.approx(ref, abs=1e-4)
    pol.sync_weights(copy.deepcopy(other))  # a module: its state dict is loaded
    assert pol.model is model and a1["token_ids"]


def test_bfloat16_model_runs_and_reports_close_logprobs(tiny_tok, tiny_lm):
    model = copy.deepcopy(tiny_lm).to(torch.bfloat16)
    pol = make_policy(model, tiny_tok)
    pol.reset([0, 1])
    acts = [pol.act(PROMPTS[:2], [0, 1]) for _ in range(2)]
    for s in (0, 1):
        ids = [t for step in acts for t in step[s]["token_ids"]]
        lps = [lp for step in acts for lp in step[s]["logprobs"]]
        ref = teacher_forced(model, encode(tiny_tok, PROMPTS[s]), ids)
        assert lps == pytest.approx(ref, abs=0.1)


def test_top_p_and_seed_are_reproducible(tiny_tok, tiny_lm):
    def run():
        pol = make_policy(tiny_lm, tiny_tok, top_p=0.5, seed=11)
        pol.reset([0, 1])
        return [[a["token_ids"] for a in pol.act(PROMPTS[:2], [0, 1])] for _ in range(2)]

    assert run() == run()


def test_same_slot_twice_is_rejected(tiny_tok, tiny_lm):
    pol = make_policy(tiny_lm, tiny_tok)
    with pytest.raises(ValueError, match="same slot"):
        pol.act(PROMPTS[:2], [4, 4])
