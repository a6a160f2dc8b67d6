"""The step transition shared by the single env, the group env and the whole-response fast path.

A step goes through three phases so that grading and shaper work can be batched across
sub-envs, and so that a failure loses nothing:

1. ``env.begin_step(action)`` checks the action and computes what the step would do (the new
   response, its token count, the termination and truncation flags) as a :class:`PendingStep`,
   without touching the episode.
2. :func:`evaluate_steps` grades every episode that would end (one batched grader call), asks
   the pipeline for reference log-probs and step terms (one call per shaper for the whole
   batch) and runs the episode-end and token hooks of the episodes that end. It mutates no
   episode, so when a grader or shaper raises, every env is exactly as before the call and
   the caller may retry or reset.
3. ``env.commit_step(pending, outcome)`` applies the step and returns the
   ``(reward, terminated, truncated, info)`` of ``gymnasium.Env.step`` as a :class:`StepRecord`.

:func:`step_batch` runs 2 and 3 for envs that share one reward pipeline. Any env satisfying
:class:`SteppingEnv` can be driven this way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reasonenv.problems.base import Problem
from reasonenv.shaping.base import EpisodeRecord, StepContext


@dataclass
class EpisodeState:
    """Everything the env knows about the running episode (changed only by commits)."""

    problem: Problem
    prompt: str
    slot: int = 0
    episode_id: int = 0
    prompt_ids: tuple[int, ...] | None = None
    steps: list[str] = field(default_factory=list)
    step_ids: list[tuple[int, ...] | None] = field(default_factory=list)
    step_lps: list[tuple[float, ...] | None] = field(default_factory=list)
    step_ref_lps: list[tuple[float, ...] | None] = field(default_factory=list)
    step_terms: list[dict[str, float]] = field(default_factory=list)
    response: str = ""
    n_tokens: int = 0
    done: bool = False
    scan: Any = None  # the env's incremental final-answer scanner state (FinalAnswerScan)


@dataclass
class PendingStep:
    """One step computed against its episode but not applied yet.

    Attributes:
        state: The episode it extends.
        text: The step's text (cut to ``max_step_chars`` if it was longer).
        token_ids: Its token ids (from the action, or the env's tokenizer), or None.
        logprobs: log pi_old of its tokens from the action, or None.
        step_tokens: Tokens in the step (characters when there are no token ids).
        terminated: The step ends the episode with a final answer or EOS.
        truncated: The step ends the episode on a budget (never both flags).
        truncated_by: ``"max_steps"``, ``"max_tokens"`` or ``"max_step_chars"`` when truncated.
        response: The whole response after this step.
        response_tokens: Response tokens after this step.
        step_index: 0-based index of the step in its episode.
        scan: The final-answer scanner state after this step (env-specific).
    """

    state: EpisodeState
    text: str
    token_ids: tuple[int, ...] | None
    logprobs: tuple[float, ...] | None
    step_tokens: int
    terminated: bool
    truncated: bool
    truncated_by: str | None
    response: str
    response_tokens: int
    step_index: int
    scan: Any = None
    applied: bool = False

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    def apply(self) -> None:
        """Append the step to its episode state (what a commit does first; idempotent)."""
        if self.applied:
            return
        st = self.state
        st.steps.append(self.text)
        st.step_ids.append(self.token_ids)
        st.step_lps.append(self.logprobs)
        st.response = self.response
        st.n_tokens = self.response_tokens
        st.scan = self.scan
        st.done = self.done
        self.applied = True


@dataclass(frozen=True)
class StepOutcome:
    """What grading and shaping produced for one pending step.

    Attributes:
        verdict: The grader's verdict when the step ends the episode, else None.
        terms: ``{shaper: weighted step term}`` (every configured shaper).
        ref_logprobs: log pi_ref of the step's tokens when the pipeline computed them.
        episode: The finished episode's record (with episode and token terms) on its last step.
    """

    verdict: Any
    terms: dict[str, float]
    ref_logprobs: tuple[float, ...] | None = None
    episode: EpisodeRecord | None = None


@dataclass(frozen=True)
class StepRecord:
    """What one step produced: reward, flags and the info dict returned by ``step``."""

    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    episode: EpisodeRecord | None = None  # the finished episode, on its last step


class SteppingEnv(Protocol):
    """What :func:`evaluate_steps` and :func:`step_batch` need from an env."""

    pipeline: Any

    def begin_step(self, action: Any) -> PendingStep:
        """Check ``action`` and compute the step without applying it."""
        ...

    def grade_many(self, items: Sequence[tuple[str, Problem]]) -> list[Any]:
        """Grade ``(response, problem)`` pairs in one batch."""
        ...

    def commit_step(self, pending: PendingStep, outcome: StepOutcome) -> StepRecord:
        """Apply a graded, shaped step and return what ``step`` returns."""
        ...


def step_context(state: EpisodeState, pending: PendingStep, k: int, verdict: Any | None,
                 ref: Sequence[tuple[float, ...] | None] = ()) -> StepContext:
    """The :class:`StepContext` of step ``k`` of ``state``'s episode, ``pending`` being step
    ``k`` (applied to ``state`` already or not)."""
    if pending.applied:
        steps, ids, lps = state.steps[: k + 1], state.step_ids[: k + 1], state.step_lps[: k + 1]
    else:
        steps = [*state.steps, pending.text]
        ids, lps = [*state.step_ids, pending.token_ids], [*state.step_lps, pending.logprobs]
    return StepContext(
        slot=state.slot,
        episode_id=state.episode_id,
        problem=state.problem,
        prompt=state.prompt,
        step_index=k,
        steps=tuple(steps),
        step_token_ids=tuple(ids),
        step_logprobs=tuple(lps),
        prompt_token_ids=state.prompt_ids,
        is_last=pending.done,
        outcome=(1.0 if verdict.correct else 0.0) if verdict is not None else None,
        verdict=verdict.to_dict() if verdict is not None else None,
        step_ref_logprobs=tuple(ref),
    )


def episode_record(ctx: StepContext, terminated: bool, step_terms: Sequence[dict[str, float]],
                   verdict: Any) -> EpisodeRecord:
    """The finished episode whose last step is ``ctx``, with its per-step terms."""
    names = list(step_terms[0]) if step_terms else []
    return EpisodeRecord(
        slot=ctx.slot,
        episode_id=ctx.episode_id,
        problem=ctx.problem,
        prompt=ctx.prompt,
        steps=ctx.steps,
        step_token_ids=ctx.step_token_ids,
        step_logprobs=ctx.step_logprobs,
        prompt_token_ids=ctx.prompt_token_ids,
        outcome=1.0 if verdict.correct else 0.0,
        verdict=verdict.to_dict(),
        terminated=terminated,
        step_terms={n: tuple(t.get(n, 0.0) for t in step_terms) for n in names},
        step_ref_logprobs=ctx.step_ref_logprobs,
    )


def evaluate_steps(envs: Sequence[SteppingEnv], pendings: Sequence[PendingStep]) -> list[StepOutcome]:
    """Grade and shape a batch of pending (not yet applied) steps; mutates no episode.

    Raises:
        ValueError: The envs do not share one reward pipeline.
        reasonenv.shaping.pipeline.ShaperError: A shaper failed (nothing was applied).
    """
    if not pendings:
        return []
    pipeline = envs[0].pipeline
    if any(e.pipeline is not pipeline for e in envs):
        raise ValueError("step_batch needs envs that share one RewardPipeline")
    done = [i for i, p in enumerate(pendings) if p.done]
    verdicts: list[Any | None] = [None] * len(pendings)
    if done:
        graded = envs[0].grade_many([(pendings[i].response, pendings[i].state.problem) for i in done])
        for i, v in zip(done, graded):
            verdicts[i] = v
    contexts = [step_context(p.state, p, p.step_index, v, p.state.step_ref_lps)
                for p, v in zip(pendings, verdicts)]
    refs = pipeline.ref_logprobs(contexts)
    if pipeline.needs_ref_logprobs:
        contexts = [_with_ref(c, p, r) for c, p, r in zip(contexts, pendings, refs)]
    terms = pipeline.step_terms(contexts)
    records: list[EpisodeRecord | None] = [None] * len(pendings)
    if done:
        ends = [episode_record(contexts[i], pendings[i].terminated,
                               [*pendings[i].state.step_terms, terms[i]], verdicts[i]) for i in done]
        for i, rec in zip(done, pipeline.finish_episodes(ends)):
            records[i] = rec
    return [StepOutcome(v, t, r, e) for v, t, r, e in zip(verdicts, terms, refs, records)]


def _with_ref(ctx: StepContext, p: PendingStep, ref: tuple[float, ...] | None) -> StepContext:
    from dataclasses import replace

    return replace(ctx, step_ref_logprobs=(*p.state.step_ref_lps, ref))


def step_batch(envs: Sequence[SteppingEnv], pendings: Sequence[PendingStep]) -> list[StepRecord]:
    """Grade, shape and commit a batch of pending steps of envs that share one pipeline."""
    outcomes = evaluate_steps(envs, pendings)
    return [env.commit_step(p, o) for env, p, o in zip(envs, pendings, outcomes)]


def step_info(p: PendingStep, outcome: StepOutcome) -> tuple[float, dict[str, Any]]:
    """``(reward, info)`` of a committed step: the reward is the sum of its step terms and, on
    the last step, the episode-end terms (each reported under its shaper in ``reward_terms``)."""
    terms = dict(outcome.terms)
    if outcome.episode is not None:
        for name, v in outcome.episode.episode_terms.items():
            terms[name] = terms.get(name, 0.0) + v
    info: dict[str, Any] = {
        "problem_id": p.state.problem.id,
        "step_index": p.step_index,
        "step_tokens": p.step_tokens,
        "response_tokens": p.response_tokens,
    }
    if p.done:
        info["verdict"] = outcome.verdict.to_dict()
        info["outcome"] = 1.0 if outcome.verdict.correct else 0.0
        if p.truncated:
            info["truncated_by"] = p.truncated_by
    info["reward_terms"] = terms
    return float(sum(terms.values())), info
