"""PRL: its token terms against naive loops, the composed advantages against a transcription of
the released code's formula (verl fork), and the shaper through the pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonenv.plugins.prl import PRLShaper, prl_step_reward, prl_token_terms
from reasonenv.problems.base import Problem
from reasonenv.segmentation import Segmenter
from reasonenv.shaping.advantages import AdvantageConfig, ResponseTerms, compose_advantages
from reasonenv.shaping.base import EpisodeRecord, Shaper, StepContext
from reasonenv.shaping.pipeline import RewardPipeline, ShaperError
from reasonenv.shaping.protocols import RefRequest, Services

PROBLEM = Problem(id="t/0", question="What is 1+1?", answer="2", source="test")
FLOATS = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False, allow_infinity=False)


# -- the formulas, written out by hand ----------------------------------------------------------
def naive_kl_to_go(d):
    return [sum(d[j] for j in range(t, len(d))) for t in range(len(d))]


def naive_token_terms(d, lengths, eta, mode):
    out, start = [], 0
    s = naive_kl_to_go(list(d))
    for n in lengths:
        last = start + n - 1
        for t in range(start, start + n):
            out.append(-d[t] / eta if mode == "prm" else -s[last] / eta)
        start += n
    return out


def released_code_advantages(outcomes, d_list, lengths_list, eta, mode):
    """A transcription of what PRL's released code computes for ONE prompt group (the formula
    of verl/trainer/ppo/ray_trainer.py's PRL block and core_algos.compute_prm_outcome_advantage,
    re-derived element by element; not their code):

    orm: score_i = (o_i - mean) / (std + 1e-6) with torch.std (unbiased) and, for a group of
    one, mean 0 / std 1; prm: score_i = o_i. Token t gets score_i - S_t / eta; in orm mode only
    the step-end tokens keep their value and every token takes the value of the next kept
    token to its right (left fill by the next non-zero)."""
    n = len(outcomes)
    if mode == "orm":
        if n == 1:
            mean, std = 0.0, 1.0
        else:
            mean = sum(outcomes) / n
            std = math.sqrt(sum((o - mean) ** 2 for o in outcomes) / (n - 1))
        scores = [(o - mean) / (std + 1e-6) for o in outcomes]
    else:
        scores = list(outcomes)
    out = []
    for score, d, lengths in zip(scores, d_list, lengths_list):
        s = naive_kl_to_go(list(d))
        vals = [score - s[t] / eta for t in range(len(d))]
        if mode == "orm":
            ends = set(np.cumsum(lengths) - 1)
            kept = [v if t in ends else 0.0 for t, v in enumerate(vals)]
            vals = []
            for t in range(len(kept)):
                nxt = next((kept[j] for j in range(t, len(kept)) if kept[j] != 0), 0.0)
                vals.append(nxt)
        out.append(vals)
    return out


@st.composite
def response(draw, max_len=30):
    """(d, step lengths): random log-ratios cut into random non-empty steps."""
    n = draw(st.integers(1, max_len))
    d = np.array(draw(st.lists(FLOATS, min_size=n, max_size=n)))
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
    bounds = [0, *cuts, n]
    return d, [b - a for a, b in zip(bounds, bounds[1:])]


def prl_terms(outcomes, d_list, lengths_list, eta, mode, weight=1.0):
    """ResponseTerms of one group as the env delivers them for [outcome, prl]."""
    return [ResponseTerms(tuple(lengths), o, episode={"outcome": o},
                          token={"prl": weight * prl_token_terms(d, lengths, eta, mode)})
            for o, d, lengths in zip(outcomes, d_list, lengths_list)]


def compose_prl(outcomes, d_list, lengths_list, eta, mode):
    shaper = PRLShaper(PRLShaper.Config(eta=eta, mode=mode))
    contributions = {"outcome": {"episode": "reward"}, "prl": shaper.contributions()}
    cfg = AdvantageConfig(estimator=shaper.estimator or "grpo")
    (adv,), _ = compose_advantages([prl_terms(outcomes, d_list, lengths_list, eta, mode)],
                                   contributions, cfg)
    return adv


# -- pure functions -----------------------------------------------------------------------------
@settings(max_examples=150)
@given(r=response(), eta=st.sampled_from([1.0, 100.0, 200.0]), mode=st.sampled_from(["orm", "prm"]))
def test_token_terms_match_loops(r, eta, mode):
    d, lengths = r
    np.testing.assert_allclose(prl_token_terms(d, lengths, eta, mode),
                               naive_token_terms(d, lengths, eta, mode), rtol=1e-12, atol=1e-12)


def test_token_terms_merged_newline_token_by_hand():
    # Tokens "a", "b", ".\n\n", "c", "d\n\n", "e": the merged ".\n\n" (index 2) ends step 0.
    tokens = ["a", "b", ".\n\n", "c", "d\n\n", "e"]
    text = "".join(tokens)
    ends = np.cumsum([len(t) for t in tokens]).tolist()
    lengths = [s.token_end - s.token_start for s in Segmenter("\n\n").segment(text, ends)]
    assert lengths == [3, 2, 1]
    d = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    # S = [2.1, 2.0, 1.8, 1.5, 1.1, 0.6]; step ends at tokens 2, 4, 5; eta = 2.
    np.testing.assert_allclose(prl_token_terms(d, lengths, 2.0, "orm"),
                               [-0.9, -0.9, -0.9, -0.55, -0.55, -0.3])
    np.testing.assert_allclose(prl_token_terms(d, lengths, 2.0, "prm"), -d / 2.0)


@pytest.mark.parametrize("lengths", [[], [3], [2, 5], [7, -1]])
def test_token_terms_reject_lengths_that_do_not_cover_the_tokens(lengths):
    with pytest.raises(ValueError, match="step lengths"):
        prl_token_terms(np.zeros(6), lengths, 1.0, "orm")


def test_step_reward_return_to_go_is_kl_to_go_at_step_start():
    old, ref = np.array([-0.5, -1.0, -2.0, -0.1]), np.array([-1.0, -1.0, -1.0, -1.0])
    lengths = [1, 2, 1]
    starts = [0, 1, 3]
    rewards = [prl_step_reward(old[a:a + n], ref[a:a + n], 4.0) for a, n in zip(starts, lengths)]
    s = naive_kl_to_go(list(old - ref))
    for k, a in enumerate(starts):
        assert math.isclose(sum(rewards[k:]), -s[a] / 4.0, abs_tol=1e-12)


# -- parity with the released code --------------------------------------------------------------
def test_parity_hand_example_unbiased_std():
    # G = 2, outcomes [1, 0]: mean 0.5, unbiased std sqrt(0.5) -> A_hat = +-0.5 / (0.7071 + 1e-6).
    outcomes = [1.0, 0.0]
    d_list = [np.array([0.5, 0.5, 1.0]), np.array([2.0, -1.0])]
    lengths_list = [[1, 2], [2]]
    a_hat = 0.5 / (math.sqrt(0.5) + 1e-6)
    orm = compose_prl(outcomes, d_list, lengths_list, 1.0, "orm")
    # response 0: S = [2, 1.5, 1]; step 0 ends at 0 (S_0 = 2), step 1 at 2 (S_2 = 1).
    np.testing.assert_allclose(orm[0], [a_hat - 2.0, a_hat - 1.0, a_hat - 1.0], rtol=1e-12)
    # response 1: one step ending at 1, S_1 = -1.
    np.testing.assert_allclose(orm[1], [-a_hat + 1.0, -a_hat + 1.0], rtol=1e-12)
    prm = compose_prl(outcomes, d_list, lengths_list, 1.0, "prm")
    np.testing.assert_allclose(prm[0], [1 - 2.0, 1 - 1.5, 1 - 1.0], rtol=1e-12)
    np.testing.assert_allclose(prm[1], [0 - 1.0, 0 + 1.0], rtol=1e-12)
    for got, want in zip(orm, released_code_advantages(outcomes, d_list, lengths_list, 1.0, "orm")):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), g=st.integers(1, 6), eta=st.sampled_from([1.0, 100.0, 200.0]),
       mode=st.sampled_from(["orm", "prm"]))
def test_parity_with_the_released_code_on_random_groups(data, g, eta, mode):
    outcomes = [float(x) for x in data.draw(st.lists(st.integers(0, 1), min_size=g, max_size=g))]
    rs = [data.draw(response(max_len=12)) for _ in range(g)]
    got = compose_prl(outcomes, [r[0] for r in rs], [r[1] for r in rs], eta, mode)
    want = released_code_advantages(outcomes, [r[0] for r in rs], [r[1] for r in rs], eta, mode)
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, rtol=1e-12, atol=1e-13)


def test_group_of_one_is_the_raw_outcome_like_the_released_code():
    d = np.array([0.25, -0.5])
    (adv,) = compose_prl([1.0], [d], [[2]], 1.0, "orm")
    a_hat = 1.0 / (1.0 + 1e-6)  # mean 0, std 1 (plus the epsilon)
    np.testing.assert_allclose(adv, [a_hat - (-0.5), a_hat - (-0.5)], rtol=1e-12)


@given(logp=st.lists(st.floats(-20, 0, allow_nan=False), min_size=1, max_size=30),
       eta=st.sampled_from([1.0, 100.0, 200.0]), o=st.sampled_from([0.0, 1.0]))
def test_process_term_exactly_zero_when_policy_is_reference(logp, eta, o):
    d = np.array(logp) - np.array(logp)
    lengths = [1] * len(logp)
    assert np.all(prl_token_terms(d, lengths, eta, "orm") == 0.0)
    (adv,) = compose_prl([o], [d], [lengths], eta, "prm")
    assert np.all(adv == o)  # prm: exactly the raw outcome
    adv = compose_prl([o, 1 - o], [d, d], [lengths, lengths], eta, "orm")[0]
    assert np.all(adv == adv[0])  # orm: only the normalised outcome is left


def test_prm_mode_respects_the_configured_outcome_reward():
    """prm: R_i - S_t/eta with R_i the outcome shaper's weighted, penalised term (not the raw o)."""
    d, lengths = np.array([1.0, -1.0]), [2]
    shaper = PRLShaper(PRLShaper.Config(eta=2.0, mode="prm"))
    terms = [ResponseTerms((2,), 0.0, episode={"outcome": -0.5},  # format penalty 0.5
                           token={"prl": prl_token_terms(d, lengths, 2.0, "prm")})]
    (adv,), _ = compose_advantages([terms], {"outcome": {"episode": "reward"}, "prl": shaper.contributions()},
                                   AdvantageConfig(estimator="raw"))
    np.testing.assert_allclose(adv[0], [-0.5 - 0.0 / 2.0, -0.5 - (-1.0) / 2.0])


def test_mode_and_eta_validation():
    with pytest.raises(ValueError, match="mode"):
        prl_token_terms(np.zeros(1), [1], 1.0, "bogus")
    with pytest.raises(ValueError, match="mode"):
        PRLShaper.Config(mode="xyz")
    with pytest.raises(ValueError, match="eta"):
        PRLShaper.Config(eta=-1.0)
    with pytest.raises(ValueError, match="split"):
        PRLShaper.Config(split="fixed:zero")
    with pytest.raises(TypeError):
        PRLShaper.Config(kl_coef=0.1)  # the trainer's algo.kl_coef is the one KL coefficient


# -- the shaper through the pipeline ------------------------------------------------------------
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
            out.append(np.array([self.lp(seq[n0 + j - 1] if n0 + j else -1, t)
                                 for j, t in enumerate(r.new_ids)]))
        return out

    def release(self, key) -> None:
        pass


def contexts(prompt_ids, steps_ids, steps_lp, slot=0, episode_id=0):
    """The StepContexts of one response, one per step, as the env builds them (no ref yet)."""
    return [StepContext(slot=slot, episode_id=episode_id, problem=PROBLEM, prompt="What is 1+1?",
                        step_index=k, steps=tuple(f"s{i}" for i in range(k + 1)),
                        step_token_ids=tuple(tuple(s) for s in steps_ids[: k + 1]),
                        step_logprobs=tuple(tuple(s) for s in steps_lp[: k + 1]),
                        prompt_token_ids=tuple(prompt_ids), is_last=k == len(steps_ids) - 1)
            for k in range(len(steps_ids))]


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


def with_ref(pipe, ctxs):
    """What the env does: one batched ref call for the steps, each step seeing earlier ones."""
    from dataclasses import replace

    refs = pipe.ref_logprobs(ctxs)
    return [replace(c, step_ref_logprobs=tuple(refs[: k + 1])) for k, c in enumerate(ctxs)], refs


def test_shaper_contract_and_fields():
    PRLShaper.validate_class()
    assert PRLShaper.hook_points() == ("step", "token")
    assert PRLShaper.services == ("ref_logprobs",) and issubclass(PRLShaper, Shaper)
    assert PRLShaper.config_fields() == {"eta": 200.0, "mode": "orm", "split": "fixed:256"}
    orm, prm = PRLShaper(), PRLShaper(PRLShaper.Config(mode="prm"))
    assert orm.contributions() == {"step": "report", "token": "advantage"} and orm.estimator is None
    assert prm.contributions() == {"step": "report", "token": "reward"} and prm.estimator == "raw"


@pytest.mark.parametrize("eta", [1.0, 200.0])
def test_step_terms_equal_formula_and_the_pipeline_scores_once(eta):
    ref = FakeRef()
    pipe = RewardPipeline([{"name": "prl", "eta": eta}], Services(ref_logprobs=ref))
    ctxs, _ = with_ref(pipe, contexts(PROMPT, STEPS, LPS))
    got = [t["prl"] for t in pipe.step_terms(ctxs)]
    np.testing.assert_allclose(got, formula(PROMPT, STEPS, LPS, eta), rtol=1e-12)
    assert len(ref.calls) == 1  # one batched scorer call for the batch of steps
    req = ref.calls[0][2]
    assert req.key == (0, 0) and req.context_ids == (11, 12, 13, 1, 2, 3, 4) and req.new_ids == (5, 6)


def test_token_terms_of_a_finished_episode():
    pipe = RewardPipeline([{"name": "prl", "eta": 2.0}], Services(ref_logprobs=FakeRef()))
    ctxs, refs = with_ref(pipe, contexts(PROMPT, STEPS, LPS))
    last = ctxs[-1]
    rec = EpisodeRecord(0, 0, PROBLEM, last.prompt, last.steps, last.step_token_ids,
                        last.step_logprobs, last.prompt_token_ids, 1.0, {"reason": "exact"}, True,
                        step_ref_logprobs=tuple(refs))
    (done,) = pipe.finish_episodes([rec])
    d = np.concatenate([np.subtract(lp, r) for lp, r in zip(LPS, refs)])
    np.testing.assert_allclose(done.token_terms["prl"], naive_token_terms(d, [3, 1, 2], 2.0, "orm"))
    assert set(done.episode_terms) == {"outcome"}  # prl has no episode hook


def test_zero_when_old_equals_ref():
    lps = [[FakeRef.lp(13, 1), FakeRef.lp(1, 2), FakeRef.lp(2, 3)], [FakeRef.lp(3, 4)]]
    pipe = RewardPipeline(["prl"], Services(ref_logprobs=FakeRef()))
    ctxs, _ = with_ref(pipe, contexts(PROMPT, STEPS[:2], lps))
    got = [t["prl"] for t in pipe.step_terms(ctxs)]
    assert got == [0.0, 0.0] and all(math.copysign(1, x) == 1 for x in got)


@pytest.mark.parametrize("missing", ["logprobs", "token_ids"])
def test_missing_action_field_names_shaper_and_field(missing):
    ctx = contexts(PROMPT, STEPS[:1], LPS[:1])[0]
    field = "step_logprobs" if missing == "logprobs" else "step_token_ids"
    ctx = StepContext(**{**ctx.__dict__, field: (None,), "step_ref_logprobs": ((-1.0, -1.0, -1.0),)})
    with pytest.raises(ValueError, match=rf"prl.*{missing}"):
        PRLShaper().step_terms([ctx])


def test_missing_prompt_ids_needs_tokenizer():
    ctx = contexts(PROMPT, STEPS[:1], LPS[:1])[0]
    ctx = StepContext(**{**ctx.__dict__, "prompt_token_ids": None})
    pipe = RewardPipeline(["prl"], Services(ref_logprobs=FakeRef()))
    with pytest.raises(ValueError, match=r"\['prl'\] need reference log-probs: the env needs a tokenizer"):
        pipe.ref_logprobs([ctx])


def test_missing_service_is_named():
    with pytest.raises(ValueError, match="ref_logprobs"):
        RewardPipeline(["prl"], Services())


def test_step_without_reference_is_a_named_error():
    ctx = contexts(PROMPT, STEPS[:1], LPS[:1])[0]
    pipe = RewardPipeline(["prl"], Services(ref_logprobs=FakeRef()))
    with pytest.raises(ShaperError, match="no reference log-probs for step 0"):
        pipe.step_terms([ctx])
