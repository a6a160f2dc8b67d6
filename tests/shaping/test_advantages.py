"""The one composition rule: estimators against hand-written formulas (TRL's and verl's options),
every contribution kind on hand-made responses, and outcome dominance on the final advantages."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonenv.shaping.advantages import (
    ESTIMATORS,
    AdvantageConfig,
    ResponseTerms,
    clip_scale,
    compose_advantages,
    normalize_rewards,
    return_to_go,
    token_step_index,
)
from reasonenv.shaping.base import Shaper

OUTCOME = {"outcome": {"episode": "reward"}}


def naive_normalize(rows, scale="group", std="unbiased", eps=1e-6, estimator="grpo"):
    """TRL's GRPO advantages written out (mean per group; std per group, per batch or none)."""
    flat = [x for r in rows for x in r]

    def sd(xs):
        m = sum(xs) / len(xs)
        n = len(xs) - 1 if std == "unbiased" and len(xs) > 1 else len(xs)
        return math.sqrt(sum((x - m) ** 2 for x in xs) / n)

    out = []
    for r in rows:
        G = len(r)
        if estimator == "raw":
            out.append(list(r))
            continue
        if estimator == "rloo":
            out.append([x - (sum(r) - x) / (G - 1) if G > 1 else x for x in r])
            continue
        mean = sum(r) / G if G > 1 else 0.0
        if scale == "none":
            out.append([x - mean for x in r])
            continue
        s = (sd(r) if scale == "group" else sd(flat)) if G > 1 else 1.0
        out.append([(x - mean) / (s + eps) for x in r])
    return out


def group_of(outcomes, lengths=None):
    lengths = lengths or [(2,)] * len(outcomes)
    return [ResponseTerms(tuple(L), o, episode={"outcome": o}) for o, L in zip(outcomes, lengths)]


# -- estimators -------------------------------------------------------------------------------
def test_unbiased_std_is_the_default_like_trl_and_the_released_code():
    got = normalize_rewards(np.array([1.0, 0.0, 0.0, 0.0, 1.0]))
    np.testing.assert_allclose(got, [1.0954451, -0.7302967, -0.7302967, -0.7302967, 1.0954451], rtol=1e-5)


@settings(max_examples=150)
@given(data=st.data(), B=st.integers(1, 3), G=st.integers(1, 6),
       scale=st.sampled_from(["group", "batch", "none"]), std=st.sampled_from(["unbiased", "population"]),
       eps=st.sampled_from([1e-6, 1e-4]), estimator=st.sampled_from(["grpo", "rloo", "raw"]))
def test_estimators_match_the_formulas(data, B, G, scale, std, eps, estimator):
    rows = [data.draw(st.lists(st.floats(-3, 3, allow_nan=False), min_size=G, max_size=G)) for _ in range(B)]
    cfg = AdvantageConfig(estimator=estimator, scale=scale, std=std, eps=eps)
    np.testing.assert_allclose(normalize_rewards(np.array(rows), cfg),
                               naive_normalize(rows, scale, std, eps, estimator), rtol=1e-9, atol=1e-9)


def test_group_of_one_has_no_baseline():
    for est in ("grpo", "rloo", "raw"):
        got = normalize_rewards(np.array([[0.7]]), AdvantageConfig(estimator=est))
        want = 0.7 / (1 + 1e-6) if est == "grpo" else 0.7
        assert got[0, 0] == pytest.approx(want, rel=1e-12)
    assert normalize_rewards(np.array([[0.7]]), AdvantageConfig(scale="none"))[0, 0] == 0.7


@pytest.mark.parametrize("kw,match", [({"estimator": "ppo"}, "registered"), ({"scale": "row"}, "scale"),
                                      ({"std": "sample"}, "std"), ({"eps": float("nan")}, "eps")])
def test_bad_advantage_config_is_named(kw, match):
    with pytest.raises(ValueError, match=match):
        AdvantageConfig(**kw)


def test_registered_estimator_is_used_by_name():
    ESTIMATORS["double"] = lambda r, cfg: (np.zeros_like(r), np.full_like(r, 0.5))
    try:
        (adv,), _ = compose_advantages([group_of([1.0, 0.0])], OUTCOME, AdvantageConfig(estimator="double"))
        assert adv[0].tolist() == [2.0, 2.0] and adv[1].tolist() == [0.0, 0.0]
    finally:
        del ESTIMATORS["double"]


# -- contributions ----------------------------------------------------------------------------
def test_every_contribution_kind_by_hand():
    """Two responses, G = 2: outcome [1, 0] -> A_hat = +-0.5 / (sqrt(0.5) + 1e-6)."""
    a = 0.5 / (math.sqrt(0.5) + 1e-6)
    r0 = ResponseTerms((2, 1), 1.0, episode={"outcome": 1.0, "ep_adv": 0.25},
                       step={"pav": [0.5, -1.0], "dense": [1.0, 2.0], "shown": [9.0, 9.0]},
                       token={"tok_adv": [0.1, 0.2, 0.3], "tok_rew": [1.0, 1.0, 1.0]},
                       group={"grp": 0.5})
    r1 = ResponseTerms((1,), 0.0, episode={"outcome": 0.0, "ep_adv": 0.0},
                       step={"pav": [2.0], "dense": [0.0], "shown": [9.0]},
                       token={"tok_adv": [0.0], "tok_rew": [4.0]}, group={"grp": -0.5})
    contributions = {"outcome": {"episode": "reward"}, "ep_adv": {"episode": "advantage"},
                     "pav": {"step": "advantage"}, "dense": {"step": "reward"},
                     "shown": {"step": "report"}, "tok_adv": {"token": "advantage"},
                     "tok_rew": {"token": "reward"}, "grp": {"group": "advantage"}}
    ((adv0, adv1),), _ = compose_advantages([[r0, r1]], contributions)
    # r0: A_hat + 0.25 + 0.5; step terms: pav [.5, .5, -1]; dense RTG [3, 3, 2]; tokens as given;
    # token reward RTG [3, 2, 1]; "shown" is report-only.
    base = a + 0.25 + 0.5
    np.testing.assert_allclose(adv0, [base + 0.5 + 3 + 0.1 + 3, base + 0.5 + 3 + 0.2 + 2,
                                      base - 1.0 + 2 + 0.3 + 1], rtol=1e-12)
    np.testing.assert_allclose(adv1, [-a + 0.0 - 0.5 + 2.0 + 0.0 + 0.0 + 4.0], rtol=1e-12)


def test_group_reward_terms_join_the_normalised_return():
    r = [ResponseTerms((1,), o, episode={"outcome": o}, group={"bonus": b})
         for o, b in [(1.0, 0.0), (0.0, 0.5), (0.0, -0.5)]]
    (adv,), _ = compose_advantages([r], {**OUTCOME, "bonus": {"group": "reward"}})
    np.testing.assert_allclose([x[0] for x in adv], naive_normalize([[1.0, 0.5, -0.5]])[0], rtol=1e-12)


class StepAndGroup(Shaper):
    name = "step_and_group"
    enters = "advantage"

    def step_terms(self, steps):
        return [1.0 if "good" in c.step_text else -1.0 for c in steps]

    def group_end(self, group):
        return [5.0 if "good" in r.response else -5.0 for r in group]


def test_a_shaper_with_step_and_group_hooks_keeps_every_term():
    """Through the real group env: its step terms (+-1) AND its group terms (+-5) reach the
    advantages (a composition that dropped group terms of step shapers gave [1, -1])."""
    import reasonenv
    from reasonenv.problems import Problem
    from reasonenv.shaping.advantages import terms_of_group

    venv = reasonenv.make_group_env("reasonenv/MathSteps-v0", num_problems=1, group_size=2,
                                    shapers=[{"name": "outcome", "weight": 0.0}, StepAndGroup()])
    venv.reset(seed=0, options={"problems": [Problem("p", "q", "1", "t")]})
    _, _, _, _, info = venv.step(["good \\boxed{2}", "bad \\boxed{3}"])
    g = info["group_end"][0]
    assert g.group_terms["step_and_group"] == [5.0, -5.0]
    terms = terms_of_group(g)
    assert terms[0].group == {"step_and_group": 5.0} and list(terms[0].step["step_and_group"]) == [1.0]


def test_step_and_group_terms_with_tokens():
    pytest.importorskip("transformers")
    import reasonenv
    from reasonenv.problems import Problem
    from reasonenv.shaping.advantages import terms_of_group
    from reasonenv.testing import tiny_tokenizer

    venv = reasonenv.make_group_env("reasonenv/MathSteps-v0", num_problems=1, group_size=2,
                                    tokenizer=tiny_tokenizer(),
                                    shapers=[{"name": "outcome", "weight": 0.0}, StepAndGroup()])
    venv.reset(seed=0, options={"problems": [Problem("p", "q", "1", "t")]})
    _, _, _, _, info = venv.step(["good \\boxed{2}", "bad \\boxed{3}"])
    g = info["group_end"][0]
    (adv,), _ = compose_advantages([terms_of_group(g)], venv.envs[0].unwrapped.pipeline.contributions())
    assert np.allclose(adv[0], 6.0) and np.allclose(adv[1], -6.0)


def test_mismatched_terms_are_named():
    with pytest.raises(ValueError, match="one size"):
        compose_advantages([group_of([1.0]), group_of([1.0, 0.0])], OUTCOME)
    bad = [ResponseTerms((2,), 1.0, token={"x": [1.0]}), ResponseTerms((1,), 0.0, token={"x": [1.0]})]
    with pytest.raises(ValueError, match=r"shaper 'x': 1 token terms for 2 tokens"):
        compose_advantages([bad], {"x": {"token": "advantage"}})


def test_pure_helpers():
    assert token_step_index([2, 0, 3]).tolist() == [0, 0, 2, 2, 2]
    assert return_to_go(np.array([1.0, -2.0, 4.0])).tolist() == [3.0, 2.0, 4.0]


# -- outcome dominance ------------------------------------------------------------------------
def test_clip_scale_hand_values():
    def margin(a0, a1):  # response 0 correct, response 1 incorrect
        return lambda c: (a0[0] + c * a1[0]) - (a0[1] + c * a1[1])

    assert clip_scale(margin([1.0, 0.0], [0.0, 0.5])) == 1.0
    c = clip_scale(margin([1.0, 0.0], [-2.0, 3.0]))
    assert math.isclose(c, 0.2, rel_tol=1e-8) and c < 0.2  # strictly inside the tie point
    assert clip_scale(margin([0.0, 1.0], [1.0, 0.0])) == 0.0  # broken at c = 0


def test_format_penalty_and_large_lambda_cannot_put_an_incorrect_response_on_top():
    """The case the old per-shaper clip missed: it checked dominance against GRPO(o) alone, but
    the final advantages carry the format penalty (correct but malformed: 1 - 0.5) and a PROGRS
    weight != 1."""
    outcome_terms = [0.5, 0.0, -0.5]  # correct+malformed, incorrect, incorrect+malformed
    bonus = [0.0, 2.0 * 0.9, 2.0 * -0.9]  # lam = 2, centred among the incorrect
    group = [ResponseTerms((3,), o, episode={"outcome": t}, group={"progrs": 1.5 * b})
             for o, t, b in zip([1.0, 0.0, 0.0], outcome_terms, bonus)]
    contributions = {**OUTCOME, "progrs": {"group": "advantage"}}
    (raw,), _ = compose_advantages([group], contributions)
    assert raw[1][0] > raw[0][0]  # unclipped, the incorrect response would outrank the correct one
    (adv,), stats = compose_advantages([group], contributions, clip_to_outcome=["progrs"])
    assert adv[0][0] > max(adv[1][0], adv[2][0]) and stats.clipped_groups == 1


@st.composite
def composed_group(draw):
    G = draw(st.integers(2, 6))
    correct = draw(st.lists(st.booleans(), min_size=G, max_size=G))
    pen = draw(st.sampled_from([0.0, 0.3, 0.5]))
    w_out = draw(st.sampled_from([1.0, 0.5, 2.0]))
    w_prog = draw(st.sampled_from([1.0, 0.3, 3.0]))
    lam = draw(st.sampled_from([0.1, 1.0, 10.0, 100.0]))
    inject = draw(st.sampled_from(["advantage", "reward"]))
    extra = draw(st.sampled_from(["none", "pav", "prl"]))
    resps = []
    for c in correct:
        K = draw(st.integers(1, 4))
        lengths = tuple(draw(st.lists(st.integers(1, 4), min_size=K, max_size=K)))
        malformed = draw(st.booleans())
        o = 1.0 if c else 0.0
        step, token = {}, {}
        if extra == "pav":
            step["pav"] = draw(st.lists(st.floats(-0.3, 0.3), min_size=K, max_size=K))
        if extra == "prl":
            token["prl"] = draw(st.lists(st.floats(-0.05, 0.05), min_size=sum(lengths), max_size=sum(lengths)))
        b = draw(st.floats(-1, 1))
        resps.append(ResponseTerms(lengths, o, episode={"outcome": w_out * (o - pen * malformed)},
                                   step=step, token=token, group={"progrs": w_prog * lam * b}))
    contributions = {**OUTCOME, "progrs": {"group": inject}, "pav": {"step": "advantage"},
                     "prl": {"token": "advantage"}}
    cfg = AdvantageConfig(scale=draw(st.sampled_from(["group", "none"])),
                          std=draw(st.sampled_from(["unbiased", "population"])))
    return resps, contributions, cfg


@settings(max_examples=300, deadline=None)
@given(composed_group())
def test_dominance_holds_on_the_final_advantages(case):
    group, contributions, cfg = case
    correct = np.array([r.outcome > 0.5 for r in group])
    (adv,), stats = compose_advantages([group], contributions, cfg, clip_to_outcome=["progrs"])
    mean = np.array([a.mean() for a in adv])
    without = [ResponseTerms(r.step_lengths, r.outcome, r.step, r.token, r.episode, {}) for r in group]
    (adv0,), _ = compose_advantages([without], contributions, cfg)
    mean0 = np.array([a.mean() for a in adv0])
    if correct.all() or not correct.any():
        assert stats.clipped_groups == 0
        return
    holds_without = mean0[~correct].max() < mean0[correct].min()
    if holds_without:  # PROGRS can always be scaled down far enough
        assert mean[~correct].max() < mean[correct].min()
        assert stats.unenforceable_groups == 0
    else:
        assert stats.clipped_groups == 0 or stats.unenforceable_groups == 1
    (unclipped,), _ = compose_advantages([group], contributions, cfg)
    um = np.array([a.mean() for a in unclipped])
    needed = not (um[~correct].max() < um[correct].min())
    assert stats.clipped_groups == int(needed)
