"""A vector env of B problems x G samples: the unit GRPO-style training works in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from reasonenv.envs.math_steps import MathStepsEnv
from reasonenv.envs.stepping import evaluate_steps
from reasonenv.problems.base import Problem


@dataclass
class GroupResult:
    """A finished group: G responses to one problem.

    Attributes:
        group: Group index in ``[0, B)``.
        problem_id: The shared problem's id.
        outcomes: Verified outcome (1.0/0.0) of each member, shape ``(G,)``.
        returns: Sum of each member's step rewards, shape ``(G,)``.
        step_rewards: Per member, the list of per-step rewards.
        reward_terms: Per member, the list of per-step ``reward_terms`` dicts.
        verdicts: Per member, the final verdict dict.
        responses: Per member, the full response text.
        group_terms: Per group-end shaper (e.g. ``progrs``), one weighted term per member.
        enters: Per shaper, where its terms enter optimisation (``"mixed"`` when its hooks differ).
        episodes: Per member, the finished :class:`~reasonenv.shaping.base.EpisodeRecord` (step,
            episode and token terms kept apart, reference log-probs where computed).
        contributions: Per shaper, ``{hook: enters}`` (what the advantage composition applies).
    """

    group: int
    problem_id: str
    outcomes: np.ndarray
    returns: np.ndarray
    step_rewards: list[list[float]] = field(default_factory=list)
    reward_terms: list[list[dict[str, float]]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    group_terms: dict[str, list[float]] = field(default_factory=dict)
    enters: dict[str, str] = field(default_factory=dict)
    episodes: list[Any] = field(default_factory=list)
    contributions: dict[str, dict[str, str]] = field(default_factory=dict)


class GroupVectorEnv(VectorEnv):
    """``num_problems`` groups of ``group_size`` sub-envs; each group shares one problem.

    Sub-env ``i`` belongs to group ``i // group_size``. A reset draws one problem per group
    (from the vector env's seeded ``np_random``) and resets every member on it. Members that
    finish early are idle (``info["active"]`` False, reward 0, actions ignored) until their whole
    group has finished; the step on which the last member finishes reports the group once, in
    ``info["group_end"][b]`` (a :class:`GroupResult`, masked by ``info["_group_end"]``). With
    ``autoreset=True`` the group is reset on a new problem on the next ``step`` (gymnasium's
    next-step autoreset: the actions of that step are ignored for its members).

    Example:
        >>> import reasonenv
        >>> venv = reasonenv.make_group_env("reasonenv/MathSteps-v0", num_problems=2, group_size=3)
        >>> obs, info = venv.reset(seed=0)
        >>> len(obs), obs[0] == obs[2], info["problem_id"][0] == info["problem_id"][3]
        (6, True, False)
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self, env_fns: Sequence[Any], num_problems: int, group_size: int, *, autoreset: bool = True
    ) -> None:
        if num_problems < 1 or group_size < 1:
            raise ValueError(f"num_problems and group_size must be >= 1, got {num_problems}, {group_size}")
        if len(env_fns) != num_problems * group_size:
            raise ValueError(f"need {num_problems * group_size} env_fns, got {len(env_fns)}")
        self.envs = [fn() for fn in env_fns]
        self.num_problems = num_problems
        self.group_size = group_size
        self.num_envs = num_problems * group_size
        self.autoreset = autoreset
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.spec = self.envs[0].spec
        self._done = np.zeros(self.num_envs, dtype=bool)
        self._needs_reset = np.zeros(num_problems, dtype=bool)
        self._reported = np.zeros(num_problems, dtype=bool)
        self._obs: list[Any] = [None] * self.num_envs
        self._traj: list[dict[str, list]] = [self._empty_traj() for _ in range(self.num_envs)]
        self._problems: list[Problem | None] = [None] * num_problems
        self._sub_seed_base = 0

    # ------------------------------------------------------------------ API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Reset every group.

        Options:
            problems: a list of B :class:`Problem` (evaluation picks the problems itself).
        """
        super().reset(seed=seed)
        options = dict(options or {})
        problems = options.pop("problems", None)
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; valid: problems")
        if problems is not None and len(problems) != self.num_problems:
            raise ValueError(f"options['problems'] needs {self.num_problems} problems, got {len(problems)}")
        self._sub_seed_base = int(self.np_random.integers(2**31 - 1))
        infos: dict[str, Any] = {}
        for b in range(self.num_problems):
            self._reset_group(b, problems[b] if problems is not None else None, infos)
        return tuple(self._obs), infos

    def step(
        self, actions: Sequence[Any]
    ) -> tuple[tuple[Any, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every active sub-env with its action; idle and resetting members ignore theirs.

        The batch is atomic: when an action is bad, or the grader or a shaper (step, episode,
        token or group hook) raises, no sub-env changes and the call can be retried.

        Raises:
            gymnasium.error.ResetNeeded: Before the first ``reset``.
            TypeError / ValueError: ``actions`` is not a sequence of ``num_envs`` actions, or one
                of them is bad (the message names its index).
        """
        if self._problems[0] is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if isinstance(actions, (str, bytes)) or not isinstance(actions, Sequence):
            raise TypeError(
                f"actions must be a sequence of {self.num_envs} actions (one per sub-env), got "
                f"{type(actions).__name__}: {actions!r:.80}"
            )
        if len(actions) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions, got {len(actions)}")
        resetting = set(np.flatnonzero(self._needs_reset).tolist())
        live = [i for i in range(self.num_envs)
                if (i // self.group_size) not in resetting and not self._done[i]]
        pendings, outcomes = self._evaluate_live(live, actions)
        # Groups that finish with this step: their group-end terms, before anything is applied.
        done_after = self._done.copy()
        for i, p in zip(live, pendings):
            done_after[i] = p.done
        finishing = {}
        for b in range(self.num_problems):
            members = slice(b * self.group_size, (b + 1) * self.group_size)
            if b not in resetting and done_after[members].all() and not self._reported[b]:
                episodes = [self._traj[i]["episode"] for i in range(members.start, members.stop)]
                for i, o in zip(live, outcomes):
                    if members.start <= i < members.stop and o.episode is not None:
                        episodes[i - members.start] = o.episode
                finishing[b] = (episodes, self._pipeline.group_end(episodes))
        # Everything succeeded: apply.
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terms = np.zeros(self.num_envs, dtype=bool)
        truncs = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        active = np.zeros(self.num_envs, dtype=bool)
        for b in resetting:
            self._reset_group(b, None, infos)
        for i, p, o in zip(live, pendings, outcomes):
            env = self.envs[i].unwrapped
            rec = env.commit_step(p, o)
            active[i] = True
            self._obs[i] = env.current_observation()
            rewards[i], terms[i], truncs[i] = rec.reward, rec.terminated, rec.truncated
            tj = self._traj[i]
            tj["rewards"].append(rec.reward)
            tj["terms"].append(dict(rec.info.get("reward_terms", {})))
            if rec.terminated or rec.truncated:
                self._done[i] = True
                tj["verdict"] = rec.info.get("verdict", {})
                tj["outcome"] = float(rec.info.get("outcome", 0.0))
                tj["episode"] = rec.episode
                tj["response"] = rec.episode.response if rec.episode is not None else ""
            self._add_info(infos, rec.info, i)
        group_end = np.full(self.num_problems, None, dtype=object)
        for b, (_episodes, gterms) in finishing.items():
            group_end[b] = self._group_result(b, gterms)
            self._reported[b] = True
            self._needs_reset[b] = self.autoreset
        infos["active"] = active
        if finishing:
            infos["group_end"] = group_end
            infos["_group_end"] = np.array([g is not None for g in group_end])
        return tuple(self._obs), rewards, terms, truncs, infos

    def close_extras(self, **kwargs: Any) -> None:
        """Close every sub-env."""
        for env in self.envs:
            env.close()

    @property
    def problems(self) -> list[Problem | None]:
        """The problem each group is working on."""
        return list(self._problems)

    @property
    def done_mask(self) -> np.ndarray:
        """Which sub-envs have finished their current episode, shape ``(B*G,)``."""
        return self._done.copy()

    def all_done(self) -> bool:
        """True when every group has finished (useful with ``autoreset=False``)."""
        return bool(self._done.all())

    # ------------------------------------------------------------------ internals
    def _evaluate_live(self, live: list[int], actions: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        """Begin and evaluate (grade, shape) the live sub-envs' steps in one batch; applies nothing."""
        if not live:
            return [], []
        inner = [self.envs[i].unwrapped for i in live]
        if not all(isinstance(e, MathStepsEnv) for e in inner):
            raise TypeError("GroupVectorEnv steps MathSteps-v0 sub-envs (got "
                            f"{sorted({type(e).__name__ for e in inner})})")
        pendings = []
        for env, i in zip(inner, live):
            try:
                pendings.append(env.begin_step(actions[i]))
            except (TypeError, ValueError) as e:
                raise type(e)(f"actions[{i}]: {e}") from e
        return pendings, evaluate_steps(inner, pendings)

    @staticmethod
    def _empty_traj() -> dict[str, Any]:
        return {"rewards": [], "terms": [], "verdict": {}, "outcome": 0.0, "response": "",
                "episode": None}

    def _reset_group(self, b: int, problem: Problem | None, infos: dict[str, Any]) -> None:
        if problem is None:
            problem = self.envs[b * self.group_size].unwrapped.source.sample(self.np_random)
        self._problems[b] = problem
        self._needs_reset[b] = False
        self._reported[b] = False
        for i in range(b * self.group_size, (b + 1) * self.group_size):
            obs, info = self.envs[i].reset(
                seed=self._sub_seed_base + i, options={"problem": problem}
            )
            self._obs[i] = obs
            self._done[i] = False
            self._traj[i] = self._empty_traj()
            self._add_info(infos, info, i)

    @property
    def _pipeline(self) -> Any:
        return self.envs[0].unwrapped.pipeline

    def _group_result(self, b: int, group_terms: dict[str, list[float]]) -> GroupResult:
        idx = range(b * self.group_size, (b + 1) * self.group_size)
        tjs = [self._traj[i] for i in idx]
        problem = self._problems[b]
        pipeline = self._pipeline
        episodes = [t["episode"] for t in tjs]
        return GroupResult(
            group=b,
            problem_id=problem.id if problem is not None else "",
            outcomes=np.array([t["outcome"] for t in tjs]),
            returns=np.array([sum(t["rewards"]) for t in tjs]),
            step_rewards=[list(t["rewards"]) for t in tjs],
            reward_terms=[list(t["terms"]) for t in tjs],
            verdicts=[t["verdict"] for t in tjs],
            responses=[t["response"] for t in tjs],
            group_terms=group_terms,
            enters=pipeline.enters(),
            contributions=pipeline.contributions(),
            episodes=episodes,
        )


def make_group_env(
    env_id: str,
    num_problems: int = 1,
    group_size: int = 8,
    *,
    autoreset: bool = True,
    **env_kwargs: Any,
) -> GroupVectorEnv:
    """Build a :class:`GroupVectorEnv` of ``num_problems x group_size`` copies of ``env_id``.

    Args:
        env_id: A registered id such as ``"reasonenv/MathSteps-v0"``.
        num_problems: B, the number of problems stepped in parallel.
        group_size: G, the number of samples per problem.
        autoreset: Reset a finished group on a new problem at the next step.
        **env_kwargs: Passed to ``gymnasium.make`` for every sub-env; ``shapers`` and
            ``services`` are built once into a pipeline that all sub-envs share.

    Raises:
        gymnasium.error.Error: for an unknown ``env_id`` (the message lists close matches).
    """
    from reasonenv.shaping.pipeline import RewardPipeline

    gym.spec(env_id)  # fail early with gymnasium's own "not found" error
    shapers = env_kwargs.pop("shapers", None)
    services = env_kwargs.pop("services", None)
    # One pipeline for all sub-envs: services (reference model, PRM, prover) load once and
    # shaper calls are batched across the whole B x G batch.
    pipeline = shapers if isinstance(shapers, RewardPipeline) else RewardPipeline(shapers, services)
    fns = [
        (lambda i=i: gym.make(env_id, shapers=pipeline, slot=i, **env_kwargs))
        for i in range(num_problems * group_size)
    ]
    return GroupVectorEnv(fns, num_problems, group_size, autoreset=autoreset)
