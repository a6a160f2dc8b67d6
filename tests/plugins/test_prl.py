"""PRL: pure functions against naive loops, and the shaper against the formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonenv.plugins.prl import (
    PRLShaper,
    k3_kl,
    kl_to_go,
    prl_token_advantages,
    step_rewards,
    token_step_index,
)
from reasonenv.problems.base import Problem
from reasonenv.segmentation import Segmenter
from reasonenv.shaping.base import Shaper, StepContext
from reasonenv.shaping.protocols import RefRequest, Services

PROBLEM = Problem(id="t/0", question="What is 1+1?", answer="2", source="test")
FLOATS = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False, allow_infinity=False)


# -- naive references ---------------------------------------------------------------------------
def naive_kl_to_go(d):
    return [sum(d[j] for j in range(t, len(d))) for t in range(len(d))]


def naive_step_of(t, boundaries):
    for k, b in enumerate(boundaries):
        if t <= b:
            return k
    raise AssertionError("token after the last boundary")


def naive_advantages(outcomes, d_list, boundaries_list, eta, mode):
    g = len(outcomes)
    mean = sum(outcomes) / g
    std = math.sqrt(sum((o - mean) ** 2 for o in outcomes) / g)
    out = []
    for i in range(g):
        d = d_list[i]
        adv = []
        for t in range(len(d)):
            if mode == "prm":
                adv.append(outcomes[i] - sum(d[t:]) / eta)
            else:
                b_k = boundaries_list[i][naive_step_of(t, boundaries_list[i])]
                adv.append((outcomes[i] - mean) / (std + 1e-6) - sum(d[b_k:]) / eta)
        out.append(adv)
    return out


@st.composite
def response(draw, max_len=30):
    """(d, boundaries): random log-ratios and random valid last-token indices."""
    n = draw(st.integers(1, max_len))
    d = np.array(draw(st.lists(FLOATS, min_size=n, max_size=n)))
    cuts = draw(st.sets(st.integers(0, n - 2), max_size=n - 1)) if n > 1 else set()
    return d, sorted(cuts) + [n - 1]


# -- pure functions -----------------------------------------------------------------------------
@given(d=st.lists(FLOATS, min_size=0, max_size=40))
def test_kl_to_go_matches_loop(d):
    np.testing.assert_allclose(kl_to_go(np.array(d)), naive_kl_to_go(d), atol=1e-9)


@given(r=response(), eta=st.sampled_from([1.0, 100.0, 200.0]))
def test_step_rewards_match_loop(r, eta):
    d, bounds = r
    want, start = [], 0
    for b in bounds:
        want.append(-sum(d[start : b + 1]) / eta)
        start = b + 1
    np.testing.assert_allclose(step_rewards(d, bounds, eta), want, atol=1e-9)


def test_step_rewards_merged_newline_token():
    # Tokens: "a", "b", ".\n\n", "c", "d\n\n", "e": the merged ".\n\n" (index 2) ends step 1.
    tokens = ["a", "b", ".\n\n", "c", "d\n\n", "e"]
    bounds = [2, 4, 5]  # by hand
    text = "".join(tokens)
    ends = np.cumsum([len(t) for t in tokens]).tolist()
    assert [s.token_end - 1 for s in Segmenter("\n\n").segment(text, ends)] == bounds
    d = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    np.testing.assert_allclose(step_rewards(d, bounds, 2.0), [-0.3, -0.45, -0.3])
    assert token_step_index(bounds, 6).tolist() == [0, 0, 0, 1, 1, 2]


@pytest.mark.parametrize("bounds", [[], [3], [2, 1, 5], [1, 1, 5], [0, 6], [-1, 5]])
def test_step_rewards_rejects_bad_boundaries(bounds):
    with pytest.raises(ValueError, match="boundaries"):
        step_rewards(np.zeros(6), bounds, 1.0)


@settings(max_examples=200)
@given(r=response(), eta=st.sampled_from([1.0, 3.0, 200.0]))
def test_return_to_go_of_step_rewards_is_kl_to_go_at_step_start(r, eta):
    d, bounds = r
    rew = step_rewards(d, bounds, eta)
    s = kl_to_go(d)
    starts = [0] + [b + 1 for b in bounds[:-1]]
    for k, start in enumerate(starts):
        assert math.isclose(sum(rew[k:]), -s[start] / eta, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=100)
@given(
    data=st.data(),
    g=st.integers(1, 5),
    eta=st.sampled_from([1.0, 100.0, 200.0]),
    mode=st.sampled_from(["orm", "prm"]),
)
def test_token_advantages_match_loops(data, g, eta, mode):
    outcomes = [float(x) for x in data.draw(st.lists(st.integers(0, 1), min_size=g, max_size=g))]
    rs = [data.draw(response(max_len=12)) for _ in range(g)]
    d_list = [r[0] for r in rs]
    b_list = [r[1] for r in rs]
    got = prl_token_advantages(np.array(outcomes), d_list, b_list, eta, mode)
    want = naive_advantages(outcomes, [list(d) for d in d_list], b_list, eta, mode)
    assert len(got) == g
    for a, w, d in zip(got, want, d_list):
        assert a.shape == d.shape and np.all(np.isfinite(a))
        np.testing.assert_allclose(a, w, rtol=1e-9, atol=1e-9)


def test_token_advantages_hand_example():
    outcomes = np.array([1.0, 0.0])
    d_list = [np.array([0.5, 0.5, 1.0]), np.array([2.0, -1.0])]
    b_list = [[0, 2], [1]]
    orm = prl_token_advantages(outcomes, d_list, b_list, eta=1.0, mode="orm")
    a_hat = 0.5 / (0.5 + 1e-6)  # mean 0.5, population std 0.5
    # response 0: S = [2, 1.5, 1]; step 0 uses S_0 = 2, step 1 uses S_2 = 1.
    np.testing.assert_allclose(orm[0], [a_hat - 2.0, a_hat - 1.0, a_hat - 1.0])
    # response 1: one step, b = 1, S_1 = -1.
    np.testing.assert_allclose(orm[1], [-a_hat + 1.0, -a_hat + 1.0])
    prm = prl_token_advantages(outcomes, d_list, None, eta=1.0, mode="prm")
    np.testing.assert_allclose(prm[0], [1 - 2.0, 1 - 1.5, 1 - 1.0])
    np.testing.assert_allclose(prm[1], [0 - 1.0, 0 + 1.0])


@given(
    logp=st.lists(st.floats(-20, 0, allow_nan=False), min_size=1, max_size=30),
    eta=st.sampled_from([1.0, 100.0, 200.0]),
    o=st.sampled_from([0.0, 1.0]),
)
def test_process_term_exactly_zero_when_policy_is_reference(logp, eta, o):
    d = np.array(logp) - np.array(logp)
    bounds = list(range(len(logp)))
    assert np.all(step_rewards(d, bounds, eta) == 0.0)
    adv = prl_token_advantages(np.array([o]), [d], [bounds], eta, "prm")[0]
    assert np.all(adv == o)
    adv = prl_token_advantages(np.array([o, 1 - o]), [d, d], [bounds, bounds], eta, "orm")[0]
    assert np.all(adv == adv[0])  # only the normalised outcome is left


def test_mode_and_eta_validation():
    with pytest.raises(ValueError, match="mode"):
        prl_token_advantages(np.array([1.0]), [np.zeros(1)], [[0]], 1.0, "bogus")
    with pytest.raises(ValueError, match="eta"):
        prl_token_advantages(np.array([1.0]), [np.zeros(1)], [[0]], 0.0, "prm")
    with pytest.raises(ValueError, match="mode"):
        PRLShaper.Config(mode="xyz")
    with pytest.raises(ValueError, match="eta"):
        PRLShaper.Config(eta=-1.0)
    with pytest.raises(ValueError, match="split"):
        PRLShaper.Config(split="fixed:zero")


@given(
    logp=st.lists(st.floats(-10, 0, allow_nan=False), min_size=1, max_size=20),
    ref=st.lists(st.floats(-10, 0, allow_nan=False), min_size=1, max_size=20),
)
def test_k3_matches_formula_and_is_nonnegative(logp, ref):
    n = min(len(logp), len(ref))
    lp, rf = np.array(logp[:n]), np.array(ref[:n])
    got = k3_kl(lp, rf)
    want = [math.exp(r - p) - (r - p) - 1 for p, r in zip(lp, rf)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert np.all(got >= 0)
    assert np.all(k3_kl(lp, lp) == 0)


# -- the shaper ---------------------------------------------------------------------------------
class FakeRef:
    """log pi_ref(t | context) = a hash of (previous token, t): wrong context => wrong value."""

    def __init__(self) -> None:
        self.calls: list[list[RefRequest]] = []

    @staticmethod
    def lp(prev: int, tok: int) -> float:
        return -0.05 - 0.1 * ((prev * 7 + tok * 3) % 11)

    def logprobs(self, requests):
        self.calls.append(list(requests))
        out = []
        for r in requests:
            seq = list(r.context_ids) + list(r.new_ids)
            n0 = len(r.context_ids)
            out.append(
                np.array(
                    [self.lp(seq[n0 + j - 1] if n0 + j else -1, t) for j, t in enumerate(r.new_ids)]
                )
            )
        return out

    def release(self, key) -> None:
        pass


def contexts(prompt_ids, steps_ids, steps_lp, slot=0, episode_id=0):
    """The StepContexts of one response, one per step, as the env would build them."""
    out = []
    for k in range(len(steps_ids)):
        out.append(
            StepContext(
                slot=slot,
                episode_id=episode_id,
                problem=PROBLEM,
                prompt="What is 1+1?",
                step_index=k,
                steps=tuple(f"s{i}" for i in range(k + 1)),
                step_token_ids=tuple(tuple(s) for s in steps_ids[: k + 1]),
                step_logprobs=tuple(tuple(s) for s in steps_lp[: k + 1]),
                prompt_token_ids=tuple(prompt_ids),
                is_last=k == len(steps_ids) - 1,
                outcome=1.0 if k == len(steps_ids) - 1 else None,
                verdict={"reason": "exact"} if k == len(steps_ids) - 1 else None,
            )
        )
    return out


def formula(prompt_ids, steps_ids, steps_lp, eta):
    """Naive: walk the whole sequence token by token, sum d over each step."""
    seq, terms = list(prompt_ids), []
    for ids, lps in zip(steps_ids, steps_lp):
        total = 0.0
        for tok, lp in zip(ids, lps):
            total += lp - FakeRef.lp(seq[-1] if seq else -1, tok)
            seq.append(tok)
        terms.append(-total / eta)
    return terms


PROMPT = [11, 12, 13]
STEPS = [[1, 2, 3], [4], [5, 6]]
LPS = [[-0.3, -1.2, -0.05], [-2.0], [-0.7, -0.4]]


def test_shaper_contract_and_fields():
    PRLShaper.validate_class()
    assert PRLShaper.hook_points() == ("step",)
    assert PRLShaper.enters == "advantage" and PRLShaper.services == ("ref_logprobs",)
    assert PRLShaper.config_fields() == {
        "eta": 200.0,
        "mode": "orm",
        "split": "fixed:256",
        "kl_coef": 0.0,
    }
    assert issubclass(PRLShaper, Shaper)


@pytest.mark.parametrize("eta", [1.0, 200.0])
def test_step_terms_equal_formula(eta):
    ref = FakeRef()
    shaper = PRLShaper(PRLShaper.Config(eta=eta), Services(ref_logprobs=ref))
    ctxs = contexts(PROMPT, STEPS, LPS)
    got = shaper.step_terms(ctxs)
    np.testing.assert_allclose(got, formula(PROMPT, STEPS, LPS, eta), rtol=1e-12)
    assert all(isinstance(x, float) and math.isfinite(x) for x in got)
    assert len(ref.calls) == 1  # one batched scorer call
    req = ref.calls[0][2]
    assert (
        req.key == (0, 0) and req.context_ids == (11, 12, 13, 1, 2, 3, 4) and req.new_ids == (5, 6)
    )


def test_whole_response_batch_equals_step_by_step():
    ctxs = contexts(PROMPT, STEPS, LPS) + contexts(
        [9], [[7, 8], [9]], [[-1.0, -0.1], [-0.2]], slot=1
    )
    batch = PRLShaper(services=Services(ref_logprobs=FakeRef())).step_terms(ctxs)
    shaper = PRLShaper(services=Services(ref_logprobs=FakeRef()))
    one = [shaper.step_terms([c])[0] for c in ctxs]
    assert batch == one  # identical numbers, not just close


def test_zero_when_old_equals_ref():
    lps = [[FakeRef.lp(13, 1), FakeRef.lp(1, 2), FakeRef.lp(2, 3)], [FakeRef.lp(3, 4)]]
    got = PRLShaper(services=Services(ref_logprobs=FakeRef())).step_terms(
        contexts(PROMPT, STEPS[:2], lps)
    )
    assert got == [0.0, 0.0] and all(math.copysign(1, x) == 1 for x in got)


@pytest.mark.parametrize("missing", ["logprobs", "token_ids"])
def test_missing_action_field_names_shaper_and_field(missing):
    ctx = contexts(PROMPT, STEPS[:1], LPS[:1])[0]
    if missing == "logprobs":
        ctx = StepContext(**{**ctx.__dict__, "step_logprobs": (None,)})
    else:
        ctx = StepContext(**{**ctx.__dict__, "step_token_ids": (None,)})
    with pytest.raises(ValueError, match=rf"prl.*{missing}"):
        PRLShaper(services=Services(ref_logprobs=FakeRef())).step_terms([ctx])


def test_missing_prompt_ids_needs_tokenizer():
    ctx = contexts(PROMPT, STEPS[:1], LPS[:1])[0]
    ctx = StepContext(**{**ctx.__dict__, "prompt_token_ids": None})
    with pytest.raises(ValueError, match="prl needs an env tokenizer"):
        PRLShaper(services=Services(ref_logprobs=FakeRef())).step_terms([ctx])


def test_missing_service_is_named():
    with pytest.raises(ValueError, match="ref_logprobs"):
        PRLShaper(services=Services()).step_terms(contexts(PROMPT, STEPS[:1], LPS[:1]))
