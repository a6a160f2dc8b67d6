"""The env rejects an unusable ``grader_timeout`` at construction, in one line naming it."""

from __future__ import annotations

import math

import gymnasium as gym
import pytest

import reasonenv  # noqa: F401  (registers the envs)


@pytest.mark.parametrize("env_id", ["reasonenv/MathSteps-v0", "reasonenv/MathTokens-v0"])
@pytest.mark.parametrize("value", [0, -2, math.nan, math.inf, "2", True], ids=repr)
def test_bad_grader_timeout_is_rejected_at_make(env_id: str, value: object, tiny_tok) -> None:
    kw = {"tokenizer": tiny_tok} if "Tokens" in env_id else {}
    with pytest.raises(ValueError) as info:
        gym.make(env_id, grader_timeout=value, **kw)
    msg = str(info.value)
    assert msg.startswith("grader_timeout ") and repr(value) in msg and "\n" not in msg


def test_good_grader_timeout_is_kept() -> None:
    env = gym.make("reasonenv/MathSteps-v0", grader_timeout=0.5)
    assert env.unwrapped.grader_timeout == 0.5
