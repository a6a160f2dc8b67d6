"""reasonenv: math reasoning as Gymnasium environments with dense, pluggable process rewards.

Importing the package registers ``reasonenv/MathSteps-v0`` and ``reasonenv/MathTokens-v0``
with gymnasium. It never imports torch.

Example:
    >>> import gymnasium as gym
    >>> import reasonenv
    >>> env = gym.make("reasonenv/MathSteps-v0")
    >>> obs, info = env.reset(seed=0)
"""

from __future__ import annotations

from typing import Any

from reasonenv.envs import (
    ENV_IDS,
    GroupResult,
    GroupVectorEnv,
    MathStepsEnv,
    MathTokensEnv,
    PromptTemplate,
    make_group_env,
    register_envs,
)
from reasonenv.problems import Problem
from reasonenv.segmentation import Segmenter

__version__ = "0.1.0"

register_envs()


def evaluate(policy: Any, env_or_id: Any = "reasonenv/MathSteps-v0", **kwargs: Any) -> Any:
    """Evaluate ``policy`` through the env; see :func:`reasonenv.evaluation.evaluate.evaluate`."""
    from reasonenv.evaluation.evaluate import evaluate as _evaluate

    return _evaluate(policy, env_or_id, **kwargs)


def grade(response: str, reference: str, **kwargs: Any) -> Any:
    """Grade ``response`` against ``reference``; see :func:`reasonenv.grading.grade`."""
    from reasonenv.grading import grade as _grade

    return _grade(response, reference, **kwargs)


__all__ = [
    "ENV_IDS",
    "GroupResult",
    "GroupVectorEnv",
    "MathStepsEnv",
    "MathTokensEnv",
    "Problem",
    "PromptTemplate",
    "Segmenter",
    "__version__",
    "evaluate",
    "grade",
    "make_group_env",
]
