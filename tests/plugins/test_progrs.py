"""PROGRS: centring, coherence, both injections; the dominance clip through the composition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonenv.plugins.progrs import (
    PROGRSShaper,
    aggregate,
    centred_bonus,
    coherence_penalty,
)
from reasonenv.problems.base import Problem
from reasonenv.shaping.advantages import ResponseTerms, compose_advantages
from reasonenv.shaping.base import EpisodeRecord
from reasonenv.shaping.protocols import Services

PROBLEM = Problem(id="t/0", question="What is 1+1?", answer="2", source="test")
UNIT = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


class FakePRM:
    """Step text "0.7" scores median 0.7; quantiles 0.1/0.9 are 0.2 below/above (clipped)."""

    quantiles = (0.1, 0.5, 0.9)

    def __init__(self) -> None:
        self.calls = 0

    def score(self, items):
        self.calls += 1
        out = []
        for _question, steps in items:
            med = np.array([float(s) for s in steps]).reshape(-1)
            out.append(np.stack([np.clip(med - 0.2, 0, 1), med, np.clip(med + 0.2, 0, 1)], axis=1))
        return out


def record(i: int, q: list[float], outcome: float) -> EpisodeRecord:
    steps = tuple(repr(float(x)) for x in q)
    return EpisodeRecord(
        slot=i,
        episode_id=0,
        problem=PROBLEM,
        prompt="p",
        steps=steps,
        step_token_ids=(None,) * len(steps),
        step_logprobs=(None,) * len(steps),
        prompt_token_ids=None,
        outcome=outcome,
        verdict={"reason": "exact" if outcome else "mismatch"},
        terminated=True,
    )


# -- naive references ---------------------------------------------------------------------------
def naive_std(xs):
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def naive_coherence(q, windows):
    total = 0.0
    for w in windows:
        if w > len(q):
            continue
        stds = [naive_std(q[t : t + w]) for t in range(len(q) - w + 1)]
        total += sum(stds) / len(stds)
    return total


def naive_score(q, agg, gamma, windows):
    p = {"mean": sum(q) / len(q), "min": min(q), "last": q[-1]}[agg]
    return p - gamma * naive_coherence(q, windows)


def naive_grpo(o, eps=1e-6):
    m = sum(o) / len(o)
    return [(x - m) / (naive_std(o) + eps) for x in o]


@st.composite
def group(draw, min_g=2, max_g=8):
    g = draw(st.integers(min_g, max_g))
    qs = [draw(st.lists(UNIT, min_size=1, max_size=10)) for _ in range(g)]
    outcomes = [float(x) for x in draw(st.lists(st.integers(0, 1), min_size=g, max_size=g))]
    return qs, outcomes


# -- pure functions -----------------------------------------------------------------------------
@given(
    q=st.lists(UNIT, min_size=0, max_size=12),
    windows=st.sampled_from([(2, 4, 8), (1, 3), (5,), ()]),
)
def test_coherence_matches_loops(q, windows):
    got = coherence_penalty(np.array(q), windows)
    assert math.isclose(got, naive_coherence(q, windows), rel_tol=1e-9, abs_tol=1e-12)
    assert got >= 0 and isinstance(got, float)


def test_coherence_hand_values():
    assert coherence_penalty(np.array([0.5, 0.5, 0.5, 0.5]), (2, 4, 8)) == 0.0
    # w=2: stds 0.5, 0.5 -> 0.5; w=4, 8 longer than K=3 -> 0
    assert coherence_penalty(np.array([0.0, 1.0, 0.0]), (2, 4, 8)) == 0.5
    assert coherence_penalty(np.array([0.3]), (2, 4, 8)) == 0.0


def test_aggregate_modes():
    q = np.array([0.4, 0.1, 0.7])
    assert math.isclose(aggregate(q, "mean"), 0.4)
    assert aggregate(q, "min") == 0.1 and aggregate(q, "last") == 0.7
    assert aggregate(np.array([]), "mean") == 0.0
    with pytest.raises(ValueError, match="agg"):
        aggregate(q, "max")


@given(s=st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=10), data=st.data())
def test_centring_incorrect_sum_to_zero(s, data):
    correct = np.array(data.draw(st.lists(st.booleans(), min_size=len(s), max_size=len(s))))
    s = np.array(s)
    b = centred_bonus(s, correct)
    assert abs(b[~correct].sum()) < 1e-9
    assert np.all(b[correct] == 0.0)  # correct members get 0 by default
    if (~correct).any():
        np.testing.assert_allclose(b[~correct], s[~correct] - s[~correct].mean(), atol=1e-12)
    bc = centred_bonus(s, correct, center_correct=True)
    assert abs(bc[correct].sum()) < 1e-9 and abs(bc[~correct].sum()) < 1e-9
    np.testing.assert_array_equal(bc[~correct], b[~correct])


# -- the shaper ---------------------------------------------------------------------------------
def shaper(**kw) -> PROGRSShaper:
    return PROGRSShaper(PROGRSShaper.Config(**kw), Services(prm=FakePRM()))


def test_contract():
    PROGRSShaper.validate_class()
    assert PROGRSShaper.hook_points() == ("group",)
    assert PROGRSShaper.config_fields() == {
        "lam": 0.1,
        "gamma": 0.5,
        "windows": (2, 4, 8),
        "agg": "mean",
        "quantile": 0.5,
        "center_correct": False,
        "inject": "advantage",
    }
    assert shaper().enters == "advantage" and shaper(inject="reward").enters == "reward"
    assert PROGRSShaper.clip_to_outcome and shaper().contributions() == {"group": "advantage"}


@settings(max_examples=150)
@given(
    grp=group(),
    lam=st.sampled_from([0.0, 0.1, 1.0, 10.0]),
    gamma=st.sampled_from([0.0, 0.5, 2.0]),
    agg=st.sampled_from(["mean", "min", "last"]),
    center_correct=st.booleans(),
    inject=st.sampled_from(["advantage", "reward"]),
)
def test_group_end_formula_and_dominance(grp, lam, gamma, agg, center_correct, inject):
    qs, outcomes = grp
    sh = shaper(lam=lam, gamma=gamma, agg=agg, center_correct=center_correct, inject=inject)
    terms = sh.group_end([record(i, q, o) for i, (q, o) in enumerate(zip(qs, outcomes))])
    assert len(terms) == len(qs) and all(isinstance(t, float) and math.isfinite(t) for t in terms)
    # naive bonus
    s = [naive_score(q, agg, gamma, (2, 4, 8)) for q in qs]
    wrong = [i for i, o in enumerate(outcomes) if o == 0]
    right = [i for i, o in enumerate(outcomes) if o == 1]
    b = [0.0] * len(qs)
    for idx in [wrong] + ([right] if center_correct else []):
        for i in idx:
            b[i] = s[i] - sum(s[j] for j in idx) / len(idx)
    np.testing.assert_allclose(terms, [lam * x for x in b], atol=1e-9)  # unclipped here
    if not center_correct:
        assert all(terms[i] == 0.0 for i in right)
    # the invariant, as the trainer applies the term: composed, then clipped if needed
    group = [ResponseTerms((1,), o, episode={"outcome": o}, group={"progrs": t})
             for o, t in zip(outcomes, terms)]
    (adv,), stats = compose_advantages([group], {"outcome": {"episode": "reward"},
                                                 "progrs": sh.contributions()},
                                       clip_to_outcome=["progrs"])
    final = [float(a[0]) for a in adv]
    if wrong and right:
        assert max(final[i] for i in wrong) < min(final[j] for j in right)
    # clipped only when needed
    if inject == "advantage":
        raw = [x + t for x, t in zip(naive_grpo_unbiased(outcomes), terms)]
    else:
        raw = naive_grpo_unbiased([o + t for o, t in zip(outcomes, terms)])
    needed = bool(wrong and right) and max(raw[i] for i in wrong) >= min(raw[j] for j in right)
    assert stats.clipped_groups == int(needed)


def naive_grpo_unbiased(o, eps=1e-6):
    m = sum(o) / len(o)
    sd = math.sqrt(sum((x - m) ** 2 for x in o) / (len(o) - 1))
    return [(x - m) / (sd + eps) for x in o]


def test_lam_zero_gives_zeros():
    sh = shaper(lam=0.0)
    recs = [record(0, [0.9, 0.1], 1.0), record(1, [0.2, 0.8, 0.3], 0.0), record(2, [0.5], 0.0)]
    assert sh.group_end(recs) == [0.0, 0.0, 0.0]


def test_hand_group_and_reward_level_clip():
    sh = shaper(lam=0.1, gamma=0.0)
    recs = [record(0, [0.9], 1.0), record(1, [0.2], 0.0), record(2, [0.6], 0.0)]
    np.testing.assert_allclose(sh.group_end(recs), [0.0, -0.02, 0.02], atol=1e-12)
    # reward level, lam large: incorrect 0 + lam*0.2 reaches correct 1 + 0 at lam = 5, so the
    # composition scales the bonus by c = 5/10 (just inside).
    sh = shaper(lam=10.0, gamma=0.0, inject="reward")
    terms = sh.group_end(recs)
    np.testing.assert_allclose(terms, [0.0, -2.0, 2.0], atol=1e-12)
    group = [ResponseTerms((1,), r.outcome, episode={"outcome": r.outcome}, group={"progrs": t})
             for r, t in zip(recs, terms)]
    (adv,), stats = compose_advantages([group], {"outcome": {"episode": "reward"},
                                                 "progrs": sh.contributions()},
                                       clip_to_outcome=["progrs"])
    assert stats.clipped_groups == 1 and math.isclose(stats.scale_sum, 0.5, rel_tol=1e-8)
    assert adv[2][0] < adv[0][0]


def test_quantile_choice_and_error():
    recs = [record(0, [0.9], 1.0), record(1, [0.5], 0.0), record(2, [0.1], 0.0)]
    hi = shaper(quantile=0.9, gamma=0.0).group_end(recs)
    med = shaper(quantile=0.5, gamma=0.0).group_end(recs)
    np.testing.assert_allclose(med, [0.0, 0.02, -0.02], atol=1e-12)
    np.testing.assert_allclose(hi, [0.0, 0.02, -0.02], atol=1e-12)  # 0.7 vs 0.3: same spread
    lo = shaper(quantile=0.1, gamma=0.0).group_end(recs)  # 0.3 vs 0.0 (clipped at 0)
    np.testing.assert_allclose(lo, [0.0, 0.015, -0.015], atol=1e-12)
    with pytest.raises(ValueError, match=r"quantile=0\.75.*\(0\.1, 0\.5, 0\.9\)"):
        shaper(quantile=0.75)


def test_one_batched_prm_call_per_group():
    prm = FakePRM()
    sh = PROGRSShaper(services=Services(prm=prm))
    sh.group_end([record(i, [0.1 * i, 0.5], float(i % 2)) for i in range(5)])
    assert prm.calls == 1


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"agg": "max"}, "agg"),
        ({"inject": "loss"}, "inject"),
        ({"lam": -1.0}, "lam"),
        ({"windows": (0, 2)}, "window"),
        ({"quantile": 1.5}, "quantile"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        PROGRSShaper.Config(**kw)
