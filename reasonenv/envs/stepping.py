"""The step transition shared by the single env, the group env and the fast path.

A step goes through three phases so that grading and shaper work can be batched across
sub-envs: :meth:`MathStepsEnv._begin` applies the action and decides the flags, then
:func:`step_batch` grades every episode that ended (one batched grader call), asks the
pipeline for step terms (one call per shaper for the whole batch) and episode-end terms, and
:meth:`MathStepsEnv._finish` turns that into ``(reward, terminated, truncated, info)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from reasonenv.envs.actions import StepAction
from reasonenv.envs.termination import FinalAnswerScan
from reasonenv.problems.base import Problem
from reasonenv.shaping.base import EpisodeRecord, StepContext

if TYPE_CHECKING:
    from reasonenv.envs.math_steps import MathStepsEnv


@dataclass
class EpisodeState:
    """Everything the env knows about the running episode."""

    problem: Problem
    prompt: str
    slot: int = 0
    episode_id: int = 0
    prompt_ids: tuple[int, ...] | None = None
    steps: list[str] = field(default_factory=list)
    step_ids: list[tuple[int, ...] | None] = field(default_factory=list)
    step_lps: list[tuple[float, ...] | None] = field(default_factory=list)
    step_terms: list[dict[str, float]] = field(default_factory=list)
    response: str = ""
    n_tokens: int = 0
    done: bool = False
    final_scan: FinalAnswerScan = field(default_factory=FinalAnswerScan)  # of ``response``


@dataclass
class Pending:
    """A step applied to the state, waiting for its grade and shaper terms."""

    state: EpisodeState
    action: StepAction
    step_tokens: int
    terminated: bool
    truncated: bool
    truncated_by: str | None
    step_index: int = 0  # index of this step in its episode
    response_tokens: int = 0  # response tokens up to and including this step

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


@dataclass(frozen=True)
class StepRecord:
    """What one step produced: reward, flags and the info dict returned by ``step``."""

    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    episode: EpisodeRecord | None = None  # the finished episode, on its last step


def make_context(p: Pending, verdict: Any | None) -> StepContext:
    st = p.state
    return StepContext(
        slot=st.slot,
        episode_id=st.episode_id,
        problem=st.problem,
        prompt=st.prompt,
        step_index=len(st.steps) - 1,
        steps=tuple(st.steps),
        step_token_ids=tuple(st.step_ids),
        step_logprobs=tuple(st.step_lps),
        prompt_token_ids=st.prompt_ids,
        is_last=p.done,
        outcome=(1.0 if verdict.correct else 0.0) if verdict is not None else None,
        verdict=verdict.to_dict() if verdict is not None else None,
    )


def make_record(p: Pending, verdict: Any) -> EpisodeRecord:
    st = p.state
    names = list(st.step_terms[0]) if st.step_terms else []
    return EpisodeRecord(
        slot=st.slot,
        episode_id=st.episode_id,
        problem=st.problem,
        prompt=st.prompt,
        steps=tuple(st.steps),
        step_token_ids=tuple(st.step_ids),
        step_logprobs=tuple(st.step_lps),
        prompt_token_ids=st.prompt_ids,
        outcome=1.0 if verdict.correct else 0.0,
        verdict=verdict.to_dict(),
        terminated=p.terminated,
        step_terms={n: tuple(t.get(n, 0.0) for t in st.step_terms) for n in names},
    )


def step_batch(envs: Sequence[MathStepsEnv], pendings: Sequence[Pending]) -> list[StepRecord]:
    """Grade, shape and finish a batch of applied steps that share one reward pipeline."""
    pipeline = envs[0].pipeline
    if any(e.pipeline is not pipeline for e in envs):
        raise ValueError("step_batch needs envs that share one RewardPipeline")
    done = [i for i, p in enumerate(pendings) if p.done]
    verdicts: list[Any | None] = [None] * len(pendings)
    if done:
        graded = envs[0].grade_many([(pendings[i].state.response, pendings[i].state.problem) for i in done])
        for i, v in zip(done, graded):
            verdicts[i] = v
    contexts = [make_context(p, v) for p, v in zip(pendings, verdicts)]
    terms = pipeline.step_terms(contexts)
    for p, t in zip(pendings, terms):
        p.state.step_terms.append(t)
    if done:
        ends = pipeline.episode_end([make_record(pendings[i], verdicts[i]) for i in done])
        for i, extra in zip(done, ends):
            for name, v in extra.items():
                terms[i][name] = terms[i].get(name, 0.0) + v
            pendings[i].state.step_terms[-1] = terms[i]
    out = [env._finish(p, v, t) for env, p, v, t in zip(envs, pendings, verdicts, terms)]
    for i in done:  # final records, with every step's terms (episode-end ones included)
        out[i] = replace(out[i], episode=make_record(pendings[i], verdicts[i]))
    return out
