"""Shapers through the real env with model-backed services (tiny in-process models)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import reasonenv
from reasonenv.problems import Problem
from reasonenv.rollout import run_episodes

torch = pytest.importorskip("torch")

PROBLEM = Problem(id="e/0", question="What is 2 + 3?", answer="5", source="t")


@pytest.fixture(scope="module")
def ref_scorer(tiny_tok, tiny_lm):
    from reasonenv.models.ref_scorer import HFRefScorer

    return HFRefScorer(tiny_lm, tiny_tok)


def test_prl_term_is_zero_when_policy_is_the_reference(tiny_tok, tiny_lm, ref_scorer):
    """pi_old == pi_ref (first update): the PRL process term vanishes at every step."""
    from reasonenv.agents import HFPolicy, HFPolicyConfig

    policy = HFPolicy(tiny_lm, tiny_tok, HFPolicyConfig(temperature=1.0, max_step_tokens=10, seed=1))
    env = gym.make("reasonenv/MathSteps-v0", tokenizer=tiny_tok, shapers=["prl"],
                   services={"ref_model": ref_scorer}, max_steps=4, max_tokens=40)
    (ep,) = run_episodes(env, policy, 1, problems=[PROBLEM])
    prl = [t["prl"] for t in ep.reward_terms]
    assert len(prl) >= 1 and prl == pytest.approx([0.0] * len(prl), abs=1e-5)


def test_prl_stepping_equals_fast_path_with_the_hf_scorer(tiny_tok, tiny_lm, ref_scorer):
    """Cached step-by-step reference scoring == one forward over the whole response."""
    from reasonenv.agents import HFPolicy, HFPolicyConfig
    from reasonenv.testing import tiny_model

    other = tiny_model(tiny_tok, seed=5)  # a policy that differs from the reference
    # fixed 8-token steps, so the policy's steps are exactly the segmenter's
    policy = HFPolicy(other, tiny_tok,
                      HFPolicyConfig(temperature=1.0, max_step_tokens=8, seed=2, split="fixed:8"))
    env = gym.make("reasonenv/MathSteps-v0", tokenizer=tiny_tok, split="fixed:8",
                   shapers=[{"name": "prl", "eta": 2.0}],
                   services={"ref_model": ref_scorer}, max_steps=5, max_tokens=40).unwrapped
    obs, _ = env.reset(options={"problem": PROBLEM})
    policy.reset([0])
    ids, lps, stepped = [], [], []
    while True:
        (a,) = policy.act([obs], [0])
        ids += a["token_ids"]
        lps += a["logprobs"]
        obs, r, te, tr, info = env.step(a)
        stepped.append(info["reward_terms"]["prl"])
        if te or tr:
            break
    fast = env.score_response(tiny_tok.decode(ids), token_ids=ids, logprobs=lps,
                              finished=bool(te))
    assert any(abs(x) > 1e-3 for x in stepped)  # the policies differ, so the term is not 0
    assert [f.info["reward_terms"]["prl"] for f in fast] == pytest.approx(stepped, abs=1e-4)


def test_prl_without_logprobs_names_the_missing_field(tiny_tok, ref_scorer):
    env = gym.make("reasonenv/MathSteps-v0", tokenizer=tiny_tok, shapers=["prl"],
                   services={"ref_model": ref_scorer})
    env.reset(options={"problem": PROBLEM})
    with pytest.raises(reasonenv.shaping.pipeline.ShaperError, match="prl.*logprobs"):
        env.step("2 + 3 = 5\n\n")


def test_missing_service_is_a_clear_error_at_make():
    with pytest.raises(ValueError, match="progrs.*prm"):
        gym.make("reasonenv/MathSteps-v0", shapers=["progrs"])
    with pytest.raises(ValueError, match="tokenizer"):
        gym.make("reasonenv/MathSteps-v0", shapers=["prl"], services={"ref_model": "hash"})


def test_unknown_shaper_name_lists_valid_ones():
    with pytest.raises(ValueError, match="outcome.*pav.*prl.*progrs"):
        gym.make("reasonenv/MathSteps-v0", shapers=["prll"])


def test_progrs_in_group_env_keeps_correct_above_incorrect():
    from reasonenv.shaping.advantages import compose_advantages, terms_of_group
    from reasonenv.testing import tiny_tokenizer

    venv = reasonenv.make_group_env("reasonenv/MathSteps-v0", num_problems=1, group_size=4,
                                    tokenizer=tiny_tokenizer(),
                                    shapers=[{"name": "progrs", "lam": 1000.0}],
                                    services={"prm": "heuristic"})
    venv.reset(seed=0, options={"problems": [PROBLEM]})
    plans = [["\\boxed{5}"], ["a\n\n", "b\n\n", "\\boxed{4}"], ["ok\n\n", "\\boxed{5}"],
             ["x\n\n", "\\boxed{7}"]]
    g = None
    while g is None:
        _, _, _, _, info = venv.step([p.pop(0) if p else "" for p in plans])
        g = info["group_end"][0] if "group_end" in info else None
    assert g.outcomes.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert g.enters["progrs"] == "advantage"
    bonus = g.group_terms["progrs"]
    assert bonus[0] == bonus[2] == 0.0  # correct responses get no bonus by default
    assert bonus[1] + bonus[3] == pytest.approx(0.0, abs=1e-9)  # centred among the incorrect
    pipe = venv.envs[0].unwrapped.pipeline
    (adv,), stats = compose_advantages([terms_of_group(g)], pipe.contributions(),
                                       clip_to_outcome=["progrs"])
    mean = np.array([a.mean() for a in adv])
    assert mean[[0, 2]].min() > mean[[1, 3]].max()  # lam=1000 would break dominance: clipped
    assert stats.clipped_groups == 1 and 0 < stats.scale_sum < 1
