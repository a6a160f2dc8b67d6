from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import reasonenv
from reasonenv.problems import Problem
from tests.conftest import step_segments

PROBLEM = Problem(id="t/0", question="What is 2 + 3?", answer="5", source="test")


def make(env_id: str, tok=None, **kw):
    if env_id == "reasonenv/MathTokens-v0":
        kw.setdefault("tokenizer", tok)
    return gym.make(env_id, **kw)


def our_ids():
    return sorted(i for i in gym.registry if i.startswith("reasonenv/"))


def test_registry_holds_both_envs():
    assert our_ids() == sorted(reasonenv.ENV_IDS)


@pytest.mark.parametrize("env_id", our_ids())
def test_check_env_passes_without_warnings(env_id, tiny_tok):
    env = make(env_id, tiny_tok)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", our_ids())
def test_same_seed_same_episode(env_id, tiny_tok):
    def episode():
        env = make(env_id, tiny_tok)
        obs, info = env.reset(seed=123)
        trace = [(repr(obs), repr(sorted(info.items())))]
        rng = np.random.default_rng(0)
        for _ in range(5):
            a = "step one.\n\n" if env_id.endswith("Steps-v0") else int(rng.integers(len(tiny_tok)))
            obs, r, te, tr, info = env.step(a)
            trace.append((repr(obs), r, te, tr, repr(sorted(info.items()))))
            if te or tr:
                break
        return trace

    assert episode() == episode()


def test_different_seeds_draw_different_problems():
    env = gym.make("reasonenv/MathSteps-v0")
    ids = {env.reset(seed=s)[1]["problem_id"] for s in range(10)}
    assert len(ids) > 1


def test_observation_accepts_latex_and_unicode():
    env = gym.make("reasonenv/MathSteps-v0")
    env.reset(seed=0, options={"problem": PROBLEM})
    obs, *_ = env.step("Let $x = \\frac{1}{2}$, π ≈ 3.14 — fine.\n\n")
    assert env.observation_space.contains(obs)
    assert "\\frac{1}{2}" in obs and "π" in obs
    assert not gym.spaces.Text(max_length=10_000).contains(obs)  # why we need UnicodeText


@pytest.mark.parametrize(
    "steps,term,reward",
    [
        (["2 + 3 = 5.\n\n", "So \\boxed{5}."], True, 1.0),
        (["\\boxed{6}"], True, 0.0),
        (["The answer is 5.\n"], True, 1.0),
        (["#### 5\n"], True, 1.0),
        (["The answer is 5."], False, None),  # line not finished: no termination yet
    ],
)
def test_terminates_on_final_answer(steps, term, reward):
    env = gym.make("reasonenv/MathSteps-v0", max_steps=10)
    env.reset(seed=0, options={"problem": PROBLEM})
    for s in steps:
        obs, r, te, tr, info = env.step(s)
    assert te is term and tr is False
    if term:
        assert r == reward == info["outcome"]
        assert info["verdict"]["correct"] is bool(reward)
        assert info["reward_terms"] == {"outcome": reward}


def test_eos_terminates_and_is_graded():
    env = gym.make("reasonenv/MathSteps-v0")
    env.reset(seed=0, options={"problem": PROBLEM})
    _, r, te, tr, info = env.step({"text": "I think it is 5", "eos": True})
    assert te and not tr and r == 0.0 and info["verdict"]["reason"] == "no_answer"


@pytest.mark.parametrize("kw,n_steps,by", [({"max_steps": 3}, 3, "max_steps"), ({"max_tokens": 15}, 2, "max_tokens")])
def test_truncation_never_with_termination(kw, n_steps, by):
    env = gym.make("reasonenv/MathSteps-v0", **kw)
    env.reset(seed=0, options={"problem": PROBLEM})
    flags = []
    for _ in range(n_steps):
        _, r, te, tr, info = env.step("thinking.\n\n")
        flags.append((te, tr))
    assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])
    assert info["truncated_by"] == by and r == 0.0
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.step("more")


def test_final_answer_on_last_allowed_step_terminates_not_truncates():
    env = gym.make("reasonenv/MathSteps-v0", max_steps=1)
    env.reset(seed=0, options={"problem": PROBLEM})
    _, r, te, tr, _ = env.step("\\boxed{5}")
    assert (te, tr, r) == (True, False, 1.0)


def test_huge_step_is_cut_and_truncates():
    env = gym.make("reasonenv/MathSteps-v0", max_step_chars=100)
    env.reset(seed=0, options={"problem": PROBLEM})
    obs, r, te, tr, info = env.step("x" * 10_000 + "\\boxed{5}")
    assert tr and not te and info["truncated_by"] == "max_step_chars"
    assert len(obs) < 10_000 + 100


@pytest.mark.parametrize(
    "action,exc,match",
    [
        (42, TypeError, "action must be a str"),
        ({"txt": "a"}, ValueError, "unknown action key"),
        ({"text": 3}, TypeError, "action\\['text'\\]"),
        ({"text": "a", "logprobs": [-1.0]}, ValueError, "without action\\['token_ids'\\]"),
        ({"text": "a", "token_ids": [1, 2], "logprobs": [-1.0]}, ValueError, "has 1 entries"),
        ({"text": "a", "token_ids": [1], "logprobs": [0.5]}, ValueError, "log-probabilities"),
        ({"text": "a", "token_ids": ["x"]}, TypeError, "non-negative ints"),
    ],
)
def test_bad_actions_name_the_field(action, exc, match):
    env = gym.make("reasonenv/MathSteps-v0", disable_env_checker=True)
    env.reset(seed=0, options={"problem": PROBLEM})
    with pytest.raises(exc, match=match):
        env.step(action)


def test_bad_config_and_options_are_clear():
    with pytest.raises(ValueError, match="max_steps"):
        gym.make("reasonenv/MathSteps-v0", max_steps=0)
    with pytest.raises(ValueError, match="split"):
        gym.make("reasonenv/MathSteps-v0", split="tab")
    with pytest.raises(gym.error.Error):
        gym.make("reasonenv/MathStep-v0")
    env = gym.make("reasonenv/MathSteps-v0")
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"problm": PROBLEM})
    with pytest.raises(ValueError, match="question"):
        gym.make("reasonenv/MathSteps-v0", prompt="no placeholder here")


def test_problem_index_walks_a_finite_source():
    probs = [Problem(id=f"p{i}", question=f"What is {i}+0?", answer=str(i), source="list") for i in range(3)]
    env = gym.make("reasonenv/MathSteps-v0", problems=probs)
    assert [env.reset(options={"problem_index": i})[1]["problem_id"] for i in range(3)] == ["p0", "p1", "p2"]


def test_prompt_template_and_chat(tiny_tok):
    env = gym.make("reasonenv/MathSteps-v0", prompt="Q: {question}\nA:")
    obs, _ = env.reset(options={"problem": PROBLEM})
    assert obs == "Q: What is 2 + 3?\nA:"
    env = gym.make("reasonenv/MathSteps-v0", prompt={"chat": True}, tokenizer=tiny_tok)
    obs, _ = env.reset(options={"problem": PROBLEM})
    assert obs.startswith("<|user|>") and obs.endswith("<|assistant|>\n") and "\\boxed{}" in obs
    with pytest.raises(ValueError, match="chat"):
        gym.make("reasonenv/MathSteps-v0", prompt={"chat": True}).reset()


def test_default_prompt_asks_for_boxed():
    obs, _ = gym.make("reasonenv/MathSteps-v0").reset(options={"problem": PROBLEM})
    assert "\\boxed{}" in obs and PROBLEM.question in obs


def test_dict_observation_has_token_view(tiny_tok):
    env = gym.make("reasonenv/MathSteps-v0", tokenizer=tiny_tok, obs_mode="dict")
    obs, _ = env.reset(options={"problem": PROBLEM})
    n0 = int(obs["length"][0])
    assert tiny_tok.decode(obs["token_ids"][:n0]) == obs["text"]
    obs, *_ = env.step("2 + 3 = 5.\n\n")
    n1 = int(obs["length"][0])
    assert tiny_tok.decode(obs["token_ids"][:n1]) == obs["text"]


# --------------------------------------------------------------------- fast path
STEP_TEXT = st.sampled_from(
    ["Add them.\n\n", "2 + 3 = 5.\n\n", "hmm\n", "\\boxed{5}", "\\boxed{4}\n\n", "The answer is 5.\n",
     "#### 5\n", "So the answer is 5", " and \\boxed{", "5}", "π≈3\n\n\n", "x"]
)


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(STEP_TEXT, min_size=1, max_size=12), max_steps=st.integers(1, 8), max_tokens=st.integers(5, 200))
def test_fast_path_equals_stepping(parts, max_steps, max_tokens):
    env = gym.make("reasonenv/MathSteps-v0", max_steps=max_steps, max_tokens=max_tokens).unwrapped
    response = "".join(parts)
    fast = env.score_response(response, problem=PROBLEM)
    stepped = step_segments(env, response, PROBLEM)
    assert [(f.reward, f.terminated, f.truncated, f.info) for f in fast] == stepped


@settings(max_examples=30, deadline=None)
@given(parts=st.lists(STEP_TEXT, min_size=1, max_size=8), max_tokens=st.integers(2, 60))
def test_token_env_matches_its_fast_path(tiny_tok, parts, max_tokens):
    """Token-by-token stepping lands the same rewards on the same step ends as the fast path."""
    ids = tiny_tok.encode("".join(parts), add_special_tokens=False) + [tiny_tok.eos_token_id]
    tok_env = gym.make("reasonenv/MathTokens-v0", tokenizer=tiny_tok, max_tokens=max_tokens).unwrapped
    fast = tok_env.score_tokens(ids, problem=PROBLEM)
    tok_env.reset(options={"problem": PROBLEM})
    got = []
    for t in ids:
        _, r, te, tr, info = tok_env.step(t)
        if info.get("step_end"):
            info = {k: v for k, v in info.items() if k != "step_end"}
            got.append((r, te, tr, info))
        if te or tr:
            break
    assert got == [(f.reward, f.terminated, f.truncated, f.info) for f in fast]


# --------------------------------------------------------------------- token env
def test_token_env_sb3_check_env(tiny_tok):
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env = gym.make("reasonenv/MathTokens-v0", tokenizer=tiny_tok, max_tokens=16, max_prompt_tokens=128)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_checker.check_env(env.unwrapped, warn=True)


def test_token_env_eos_and_budget(tiny_tok):
    env = gym.make("reasonenv/MathTokens-v0", tokenizer=tiny_tok, max_tokens=4)
    env.reset(options={"problem": PROBLEM})
    _, r, te, tr, info = env.step(tiny_tok.eos_token_id)
    assert te and not tr and info["step_end"]
    env.reset(options={"problem": PROBLEM})
    a = tiny_tok.encode("a", add_special_tokens=False)[0]
    flags = [env.step(a)[2:4] for _ in range(4)]
    assert flags == [(False, False)] * 3 + [(False, True)]
    with pytest.raises(ValueError, match="token id"):
        env.reset()
        env.unwrapped.step(10**9)


# --------------------------------------------------------------------- group env
def test_group_env_shares_problems_and_reports_groups_once():
    from reasonenv.policy import ScriptedPolicy
    from reasonenv.rollout import run_group_env

    venv = reasonenv.make_group_env("reasonenv/MathSteps-v0", num_problems=2, group_size=3,
                                    problems="procedural:arithmetic?difficulty=1")
    obs, info = venv.reset(seed=0)
    assert obs[0] == obs[1] == obs[2] and obs[3] == obs[4] == obs[5] and obs[0] != obs[3]
    answers = {p.question: p.answer for p in venv.problems}

    def script(prompt):  # member count of steps differs: 1, 2 or 3 steps; some wrong
        ans = next(a for q, a in answers.items() if q in prompt)
        return "Think.\n\n" * (len(prompt) % 3) + f"\\boxed{{{ans}}}"

    results = run_group_env(venv, ScriptedPolicy(script), seed=0)
    assert [g.group for g in results] == [0, 1]
    for g, p in zip(results, venv.problems):
        assert g.problem_id == p.id and g.outcomes.tolist() == [1.0, 1.0, 1.0]
        assert g.returns.tolist() == [1.0, 1.0, 1.0]


def test_group_env_idle_members_and_autoreset():
    venv = reasonenv.make_group_env("reasonenv/MathSteps-v0", num_problems=1, group_size=2)
    venv.reset(seed=1)
    first = venv.problems[0].id
    _, rew, te, tr, info = venv.step(["\\boxed{0}", "thinking\n\n"])
    assert te.tolist() == [True, False] and "group_end" not in info
    _, rew, te, tr, info = venv.step(["ignored", "\\boxed{x}"])
    assert info["active"].tolist() == [False, True] and rew[0] == 0.0
    assert info["_group_end"].tolist() == [True]
    g = info["group_end"][0]
    assert g.problem_id == first and len(g.step_rewards[1]) == 2
    obs, rew, te, tr, info = venv.step(["x", "y"])  # next-step autoreset: actions ignored
    assert not info["active"].any() and "group_end" not in info
    assert info["_problem_id"].tolist() == [True, True]  # both members were reset ...
    assert info["problem_id"][0] == venv.problems[0].id == info["problem_id"][1]  # ... on one problem
    assert all(e.unwrapped.state.steps == [] for e in venv.envs)  # with fresh episodes
    assert obs[0] == obs[1] and not venv.done_mask.any()


def test_group_env_without_autoreset_reports_once():
    venv = reasonenv.make_group_env("reasonenv/MathSteps-v0", num_problems=1, group_size=1, autoreset=False)
    venv.reset(seed=0)
    _, _, _, _, info = venv.step(["\\boxed{1}"])
    assert "group_end" in info
    _, _, _, _, info = venv.step(["more"])
    assert "group_end" not in info and venv.all_done()


def test_make_group_env_rejects_unknown_ids():
    with pytest.raises(gym.error.Error):
        reasonenv.make_group_env("reasonenv/Nope-v0", num_problems=1, group_size=2)


def test_eos_text_is_not_part_of_the_graded_answer(tiny_tok):
    env = gym.make("reasonenv/MathSteps-v0", tokenizer=tiny_tok)
    env.reset(options={"problem": PROBLEM})
    ids = tiny_tok.encode("The answer is 5.", add_special_tokens=False) + [tiny_tok.eos_token_id]
    _, r, te, _, info = env.step({"text": tiny_tok.decode(ids), "token_ids": ids})
    assert te and r == 1.0 and info["verdict"]["extracted"] == "5"
