"""One contract every registered shaper (built-in or plugin) must pass, through the real env."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import reasonenv
from reasonenv.problems import Problem
from reasonenv.shaping.fake_services import FunctionSampler, HashRefScorer, HeuristicPRM
from reasonenv.shaping.protocols import RefRequest, Services
from reasonenv.shaping.prover import MCProver
from reasonenv.shaping.registry import list_shapers

PROBLEM = Problem(id="c/0", question="What is 2 + 3?", answer="5", source="contract")
RESPONSES = [
    "First, 2 + 3 = 5.\n\nThe answer is \\boxed{5}.",
    "Hmm.\n\nI guess \\boxed{4}",
    "Let me think\n\nabout it\n\nmore",
]


def _sampler_fn(prompt: str, i: int, seed: int) -> str:
    return "\\boxed{5}" if (seed + i + len(prompt)) % 3 == 0 else "\\boxed{4}"


def make_services() -> Services:
    return Services(
        ref_logprobs=HashRefScorer(seed=1),
        prm=HeuristicPRM(),
        prover=MCProver(FunctionSampler(_sampler_fn), seed=0),
    )


SHAPERS = sorted(info.name for info in list_shapers())


def test_builtins_are_registered():
    assert {"outcome", "prl", "progrs", "pav"} <= set(SHAPERS)


def policy_actions(tok, env, response: str):
    """Split a response into step actions with token ids and (behaviour) log-probs."""
    ids = tok.encode(response, add_special_tokens=False)
    lps = HashRefScorer(seed=7).logprobs(
        [RefRequest(None, tuple(env.state.prompt_ids), tuple(ids))]
    )[0].tolist()
    text, ends = reasonenv.segmentation.token_char_ends(tok, ids)
    steps = env.segmenter.segment(text, ends)
    return ids, lps, [
        {"text": s.text, "token_ids": ids[s.token_start:s.token_end],
         "logprobs": lps[s.token_start:s.token_end], "eos": s.index == len(steps) - 1}
        for s in steps
    ]


def make_env(tok, shapers, services):
    return gym.make("reasonenv/MathSteps-v0", tokenizer=tok, shapers=shapers, services=services,
                    split="\n\n", max_steps=12, max_tokens=400).unwrapped


def step_through(env, tok, response):
    env.reset(options={"problem": PROBLEM})
    ids, lps, actions = policy_actions(tok, env, response)
    out = []
    for a in actions:
        _, r, te, tr, info = env.step(a)
        out.append((r, te, tr, info))
        if te or tr:
            break
    return ids, lps, out


@pytest.mark.parametrize("name", SHAPERS)
def test_contract(name, tiny_tok):
    from reasonenv.shaping.registry import get_shaper_class

    cls = get_shaper_class(name)
    cls.validate_class()
    assert cls.hook_points()
    services = make_services()
    env = make_env(tiny_tok, [{"name": name}], services)
    base = make_env(tiny_tok, [{"name": name, "weight": 0.0}], make_services())
    plain = make_env(tiny_tok, [], make_services())
    for response in RESPONSES:
        ids, lps, stepped = step_through(env, tiny_tok, response)
        # 1. every term finite, within declared bounds, reward = sum of terms
        for r, _, _, info in stepped:
            terms = info["reward_terms"]
            assert name in terms and all(math.isfinite(v) for v in terms.values())
            assert r == pytest.approx(sum(terms.values()))
            if cls.bounds is not None:
                lo, hi = cls.bounds
                assert lo - 1e-9 <= terms[name] <= hi + 1e-9
        # 2. the whole-response fast path gives the same per-step records
        env.reset(options={"problem": PROBLEM})
        fast = env.score_response(tiny_tok.decode(ids), token_ids=ids, logprobs=lps)
        assert len(fast) == len(stepped)
        for f, (r, te, tr, info) in zip(fast, stepped):
            assert (f.terminated, f.truncated) == (te, tr)
            assert f.reward == pytest.approx(r, abs=1e-9)
            assert f.info["reward_terms"] == pytest.approx(info["reward_terms"], abs=1e-9)
        # 3. weight 0 equals no shaper at all (for the env reward); outcome is always
        #    configured, so silencing it leaves nothing
        _, _, zero = step_through(base, tiny_tok, response)
        _, _, none = step_through(plain, tiny_tok, response)
        expect = [0.0] * len(zero) if name == "outcome" else [n[0] for n in none]
        assert [z[0] for z in zero] == expect
        assert all(z[3]["reward_terms"][name] == 0.0 for z in zero)


@pytest.mark.parametrize("name", SHAPERS)
def test_contract_in_group_env(name, tiny_tok):
    """Group-end terms arrive once per group, finite, one per member."""
    venv = reasonenv.make_group_env(
        "reasonenv/MathSteps-v0", num_problems=1, group_size=len(RESPONSES), tokenizer=tiny_tok,
        shapers=[{"name": name}], services=make_services(), split="\n\n", max_steps=12,
    )
    venv.reset(seed=0, options={"problems": [PROBLEM]})
    env0 = venv.envs[0].unwrapped
    plans = [policy_actions(tiny_tok, env0, r)[2] for r in RESPONSES]
    result = None
    for _ in range(20):
        acts = [plans[i].pop(0) if plans[i] else "" for i in range(venv.num_envs)]
        _, rewards, _, _, info = venv.step(acts)
        assert np.isfinite(rewards).all()
        if "group_end" in info:
            result = info["group_end"][0]
            break
    assert result is not None
    assert result.outcomes.tolist() == [1.0, 0.0, 0.0]
    assert name in result.enters
    for terms in result.group_terms.values():
        assert len(terms) == len(RESPONSES) and all(math.isfinite(t) for t in terms)
