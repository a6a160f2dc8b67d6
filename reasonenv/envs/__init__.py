"""Gymnasium environments: step level, token level, and the B x G group vector env."""

from reasonenv.envs.group import GroupResult, GroupVectorEnv, make_group_env
from reasonenv.envs.math_steps import MathStepsEnv, StepRecord
from reasonenv.envs.math_tokens import MathTokensEnv
from reasonenv.envs.prompts import PromptTemplate
from reasonenv.envs.spaces import UnicodeText

ENV_IDS = ("reasonenv/MathSteps-v0", "reasonenv/MathTokens-v0")


def register_envs() -> None:
    """Register the environments with gymnasium (idempotent)."""
    import gymnasium as gym

    entries = {
        "reasonenv/MathSteps-v0": "reasonenv.envs.math_steps:MathStepsEnv",
        "reasonenv/MathTokens-v0": "reasonenv.envs.math_tokens:MathTokensEnv",
    }
    for env_id, entry in entries.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry, disable_env_checker=False)


__all__ = [
    "ENV_IDS",
    "GroupResult",
    "GroupVectorEnv",
    "MathStepsEnv",
    "MathTokensEnv",
    "PromptTemplate",
    "StepRecord",
    "UnicodeText",
    "make_group_env",
    "register_envs",
]
