"""The env stays consistent when something fails, and bad input is one clear error naming the
field: atomic steps (single and group env), action batches, templates, problem indices,
action fields, shaper results."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest

import reasonenv
from reasonenv.problems import Problem
from reasonenv.shaping import Shaper
from reasonenv.shaping.pipeline import ShaperError

PROBLEM = Problem(id="p", question="What is 2 + 2?", answer="4", source="t")


class Flaky(Shaper):
    """Raises on demand (at the step, episode or group hook) or returns a bad value."""

    name = "t_flaky"
    enters = "reward"

    @dataclass
    class Config:
        pass

    def __init__(self, config=None, services=None):
        super().__init__(config, services)
        self.fail_at: str | None = None
        self.value: object = 0.5

    def step_terms(self, steps):
        if self.fail_at == "step":
            raise RuntimeError("step boom")
        return [self.value] * len(steps)

    def episode_end(self, episodes):
        if self.fail_at == "episode":
            raise RuntimeError("episode boom")
        return [0.0] * len(episodes)

    def group_end(self, group):
        if self.fail_at == "group":
            raise RuntimeError("group boom")
        return [0.0] * len(group)


def snapshot(env):
    st = env.unwrapped.state
    return (list(st.steps), list(st.step_ids), list(st.step_terms), st.response, st.n_tokens, st.done)


@pytest.mark.parametrize("where,step", [("step", "2 + 2 = 4.\n\n"), ("episode", "\\boxed{4}")])
def test_a_failed_step_is_not_kept_and_can_be_retried(where, step):
    flaky = Flaky()
    env = gym.make("reasonenv/MathSteps-v0", shapers=[flaky])
    env.reset(seed=0, options={"problem": PROBLEM})
    env.step("Let me think.\n\n")
    before = snapshot(env)
    flaky.fail_at = where
    with pytest.raises(ShaperError, match=rf"t_flaky.*{where} boom"):
        env.step(step)
    assert snapshot(env) == before  # nothing of the failed step stayed
    flaky.fail_at = None
    _, _, te, _, info = env.step(step)  # the retry is an ordinary step
    assert info["step_index"] == 1 and len(env.unwrapped.state.steps) == 2


def test_a_failed_grader_is_not_kept():
    calls = {"n": 0}

    def grader(pairs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("grader down")
        from reasonenv.grading import grade_batch

        return grade_batch(pairs)

    env = gym.make("reasonenv/MathSteps-v0", services={"grader": grader})
    env.reset(seed=0, options={"problem": PROBLEM})
    with pytest.raises(RuntimeError, match="grader down"):
        env.step("\\boxed{4}")
    assert env.unwrapped.state.steps == [] and not env.unwrapped.state.done
    _, r, te, _, _ = env.step("\\boxed{4}")
    assert te and r == 1.0


@pytest.mark.parametrize("where", ["step", "episode", "group"])
def test_the_group_env_step_is_atomic(where):
    flaky = Flaky()
    venv = reasonenv.make_group_env("reasonenv/MathSteps-v0", num_problems=1, group_size=2, shapers=[flaky])
    venv.reset(seed=0, options={"problems": [PROBLEM]})
    venv.step(["a\n\n", "\\boxed{4}"])  # member 1 finishes early
    before = [snapshot(e) for e in venv.envs], venv.done_mask.tolist()
    flaky.fail_at = where
    with pytest.raises(ShaperError, match=f"{where} boom"):
        venv.step(["\\boxed{5}", "ignored"])
    assert ([snapshot(e) for e in venv.envs], venv.done_mask.tolist()) == before
    flaky.fail_at = None
    _, _, _, _, info = venv.step(["\\boxed{5}", "ignored"])
    g = info["group_end"][0]
    assert g.outcomes.tolist() == [0.0, 1.0] and len(g.step_rewards[0]) == 2


def test_group_env_rejects_bad_action_batches_and_needs_reset():
    venv = reasonenv.make_group_env("reasonenv/MathSteps-v0", num_problems=1, group_size=2)
    with pytest.raises(gym.error.ResetNeeded):
        venv.step(["a", "b"])
    venv.reset(seed=0)
    with pytest.raises(TypeError, match=r"actions must be a sequence of 2 actions.*got str"):
        venv.step("ab")
    with pytest.raises(TypeError, match="got int"):
        venv.step(3)
    with pytest.raises(ValueError, match="expected 2 actions, got 3"):
        venv.step(["a", "b", "c"])
    with pytest.raises(TypeError, match=r"actions\[1\]: action must be a str or a mapping"):
        venv.step(["a", 5])
    assert all(e.unwrapped.state.steps == [] for e in venv.envs)  # nothing applied


@pytest.mark.parametrize("template,match", [
    ("Solve {question} and put it in \\boxed{}.", "does not format"),
    ("Q: {question} {answer}", r"unknown field\(s\) \['answer'\]"),
    ("no field here", "must contain '{question}'"),
    ("{{question}} escaped", "must contain '{question}'"),
])
def test_bad_prompt_templates_fail_at_make_naming_the_template(template, match):
    with pytest.raises(ValueError, match=match) as exc:
        gym.make("reasonenv/MathSteps-v0", prompt=template)
    assert "template=" in str(exc.value) and "\n" not in str(exc.value)


def test_a_doubled_brace_template_works():
    env = gym.make("reasonenv/MathSteps-v0", prompt="{question} Answer in \\boxed{{}}.")
    obs, _ = env.reset(options={"problem": PROBLEM})
    assert obs.endswith("Answer in \\boxed{}.")


def test_problem_index_out_of_range_names_the_size():
    env = gym.make("reasonenv/MathSteps-v0", problems=[PROBLEM, PROBLEM])
    with pytest.raises(ValueError, match=r"problem_index'\]=2 is out of range.*has 2 problems"):
        env.reset(options={"problem_index": 2})
    with pytest.raises(ValueError, match=r"problem_index'\]=-1 is out of range"):
        env.reset(options={"problem_index": -1})
    with pytest.raises(TypeError, match="must be an int"):
        env.reset(options={"problem_index": "0"})
    env = gym.make("reasonenv/MathSteps-v0", problems="procedural:arithmetic?seed=0")
    with pytest.raises(ValueError, match="unbounded"):
        env.reset(options={"problem_index": -3})
    assert env.reset(options={"problem_index": 7})[1]["problem_id"]


@pytest.mark.parametrize("action,match", [
    ({"text": "ab", "token_ids": [1, True]}, r"token_ids'\] must hold non-negative ints, found True"),
    ({"text": "ab", "token_ids": [1, 2], "logprobs": [-0.1, "x"]}, r"logprobs'\] must hold numbers, found 'x'"),
    ({"text": "ab", "token_ids": [1, 2], "logprobs": [-0.1, None]}, r"logprobs'\] must hold numbers, found None"),
    ("bad \ud800 text", r"lone surrogate '\\ud800' at index 4"),
    ({"text": "x\udfff"}, r"action\['text'\] holds a lone surrogate"),
])
def test_bad_action_fields_are_named(action, match):
    env = gym.make("reasonenv/MathSteps-v0")
    env.reset(seed=0)
    with pytest.raises((TypeError, ValueError), match=match):
        env.step(action)
    assert env.unwrapped.state.steps == []


def test_token_ids_must_decode_to_the_text():
    pytest.importorskip("transformers")
    from reasonenv.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    env = gym.make("reasonenv/MathSteps-v0", tokenizer=tok)
    env.reset(seed=0, options={"problem": PROBLEM})
    ids = tok.encode("2 + 2 = 4.\n\n", add_special_tokens=False)
    with pytest.raises(ValueError, match=r"token_ids'\] decode to '2 \+ 2 = 4.\\n\\n', not action\['text'\] 'hello'"):
        env.step({"text": "hello", "token_ids": ids})
    _, _, _, _, info = env.step({"text": "2 + 2 = 4.\n\n", "token_ids": ids})
    assert info["step_tokens"] == len(ids)
    more = tok.encode("So \\boxed{4}", add_special_tokens=False)
    _, r, te, _, _ = env.step({"text": "So \\boxed{4}", "token_ids": more})
    assert te and r == 1.0


@pytest.mark.parametrize("value,match", [("0.5", r"returned '0.5' \(str\)"), (True, r"returned True \(bool\)"),
                                         (float("nan"), "non-finite"), (None, "returned None")])
def test_shaper_results_must_be_real_numbers(value, match):
    flaky = Flaky()
    flaky.value = value
    env = gym.make("reasonenv/MathSteps-v0", shapers=[flaky])
    env.reset(seed=0)
    with pytest.raises(ShaperError, match=match):
        env.step("a\n\n")
    flaky.value = np.float32(0.25)  # numpy scalars are numbers
    _, r, _, _, info = env.step("a\n\n")
    assert info["reward_terms"]["t_flaky"] == 0.25


def test_shaper_constructor_errors_and_time_budget_name_the_shaper():
    from reasonenv.shaping import make_shaper

    class Broken(Shaper):
        name = "t_broken"

        def __init__(self, config=None, services=None):
            raise KeyError("needs a thing")

        def step_terms(self, steps):
            return [0.0] * len(steps)

    with pytest.raises(ValueError, match=r"shaper 't_broken' could not be built: KeyError"):
        make_shaper(Broken)

    class Slow(Flaky):
        name = "t_slow"
        time_budget = 0.0

    env = gym.make("reasonenv/MathSteps-v0", shapers=[Slow()])
    env.reset(seed=0)
    with pytest.raises(ShaperError, match=r"t_slow.*over its time_budget=0.0 s"):
        env.step("a\n\n")
    assert env.unwrapped.state.steps == []


def test_token_text_check_takes_two_decodes_per_step_and_keeps_the_incremental_verdict():
    from reasonenv.envs.actions import check_token_text
    from reasonenv.segmentation import IncrementalDecoder
    from reasonenv.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    ids = tok.encode("Let x = 12.\n\nThen 3 * x = 36, so the answer is \\boxed{36}.", add_special_tokens=False)
    calls = []
    real = tok.decode
    tok.decode = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        for cut in range(1, len(ids) - 1):
            prev, step = ids[:cut], ids[cut:cut + 5]
            d = IncrementalDecoder(tok).extend(prev[-6:])
            start = len(d.text)
            text = d.extend(step).text[start:]  # what the policy's decoder produced
            calls.clear()
            check_token_text(tok, prev, step, text)  # accepted ...
            assert len(calls) == 2  # ... with two decodes, not two per token
            with pytest.raises(ValueError, match="decode to"):
                check_token_text(tok, prev, step, text + "!")
    finally:
        tok.decode = real
