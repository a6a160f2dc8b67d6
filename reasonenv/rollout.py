"""Drive any policy through the env interface (the reset/step loop, batched over slots)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Episode:
    """One finished episode: what was said and what each step earned.

    Attributes:
        problem_id: The problem's id.
        steps: The text of each step.
        rewards: The env reward of each step.
        reward_terms: Each step's ``info["reward_terms"]``.
        outcome: The verified outcome (1.0 / 0.0).
        verdict: The grader's verdict as a dict.
        terminated: Ended on a final answer or EOS (False: truncated).
    """

    problem_id: str
    steps: list[str] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    reward_terms: list[dict[str, float]] = field(default_factory=list)
    outcome: float = 0.0
    verdict: dict[str, Any] = field(default_factory=dict)
    terminated: bool = False


def run_episodes(
    env: Any, policy: Any, num_episodes: int, *, seed: int | None = None,
    problems: Sequence[Any] | None = None,
) -> list[Episode]:
    """Run ``num_episodes`` episodes of a step-level ``env`` with ``policy`` (slot 0).

    Args:
        env: A ``reasonenv/MathSteps-v0`` env (or anything with the same step API).
        policy: Anything with ``reset(slots)`` and ``act(observations, slots)``.
        num_episodes: How many episodes.
        seed: Seed of the first reset (later resets continue the env's RNG).
        problems: Optional problems to use in order instead of drawing them.

    Example:
        >>> import gymnasium as gym, reasonenv
        >>> from reasonenv.policy import ScriptedPolicy
        >>> env = gym.make("reasonenv/MathSteps-v0")
        >>> eps = run_episodes(env, ScriptedPolicy(lambda p: "The answer is \\\\boxed{0}."), 2, seed=0)
        >>> len(eps)
        2
    """
    episodes: list[Episode] = []
    for n in range(num_episodes):
        options = {"problem": problems[n]} if problems is not None else None
        obs, info = env.reset(seed=seed if n == 0 else None, options=options)
        policy.reset([0])
        ep = Episode(problem_id=info["problem_id"])
        while True:
            (action,) = policy.act([obs], [0])
            obs, reward, terminated, truncated, info = env.step(action)
            ep.steps.append(action if isinstance(action, str) else action["text"])
            ep.rewards.append(float(reward))
            ep.reward_terms.append(dict(info.get("reward_terms", {})))
            if terminated or truncated:
                ep.outcome = float(info.get("outcome", 0.0))
                ep.verdict = dict(info.get("verdict", {}))
                ep.terminated = bool(terminated)
                break
        episodes.append(ep)
    return episodes


def run_group_env(venv: Any, policy: Any, *, seed: int | None = None, max_calls: int = 10_000) -> list[Any]:
    """Reset a :class:`~reasonenv.envs.group.GroupVectorEnv` and step it until every group ends.

    The policy is called once per vector step with the observations of the active sub-envs
    only (batched), and ``reset`` for every slot at the start.

    Returns:
        The :class:`~reasonenv.envs.group.GroupResult` of each group, in group order.
    """
    obs, _ = venv.reset(seed=seed)
    policy.reset(list(range(venv.num_envs)))
    results: dict[int, Any] = {}
    for _ in range(max_calls):
        live = [i for i in range(venv.num_envs) if not venv.done_mask[i]]
        acts = policy.act([obs[i] for i in live], live)
        actions: list[Any] = [""] * venv.num_envs
        for i, a in zip(live, acts):
            actions[i] = a
        obs, _, _, _, info = venv.step(actions)
        if "group_end" in info:
            for b, g in enumerate(info["group_end"]):
                if g is not None:
                    results[b] = g
        if len(results) == venv.num_problems:
            return [results[b] for b in range(venv.num_problems)]
    raise RuntimeError(f"groups did not finish within max_calls={max_calls}")
