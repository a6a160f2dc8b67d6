"""The reward-shaper contract: what a shaper sees, when it is called, what it contributes.

A shaper contributes terms at up to four hook points; it overrides the methods it uses:

* **step** (causal): :meth:`Shaper.step_terms` gets a batch of :class:`StepContext` (one per
  sub-env that just took a step) and returns one float per context. The term is added to that
  step's env reward. It may only use information up to and including that step.
* **token**: :meth:`Shaper.token_terms` gets finished :class:`EpisodeRecord` and returns, per
  episode, one float per response token (PRL's KL-to-go needs this resolution). Token terms are
  for the trainer; they are not part of the env reward.
* **episode end**: :meth:`Shaper.episode_end` gets finished :class:`EpisodeRecord` and returns
  one float per episode, added to the episode's last step reward.
* **group end**: :meth:`Shaper.group_end` gets the G finished episodes of one problem group and
  returns one float per member. Episodes are over by then, so group terms are not env rewards:
  they are delivered with the group (``GroupResult.group_terms``) for the trainer.

``enters`` declares what each hook's term is to policy optimisation (one value for every hook,
or a mapping ``{hook: value}``):

* ``"reward"``: a reward. Episode and group terms join the episode return ``R_i`` that the
  advantage estimator normalises in the group; step and token terms are dense rewards and join
  as their return-to-go from the step (or token) on.
* ``"advantage"``: added after normalisation: episode and group terms to every token of the
  response, step terms to the tokens of their own step, token terms to their own token.
* ``"report"``: shown in the env reward and ``info`` but not used by the trainer (a shaper whose
  token hook carries the same signal at a finer grain reports its step terms this way).

:func:`reasonenv.shaping.compose.compose_advantages` applies this one rule to every shaper;
no trainer code names a shaper. Two more declarations feed it: ``clip_to_outcome`` (the
shaper's terms are scaled down per group so that no incorrect response ends with a higher
advantage than a correct one) and ``estimator`` (the advantage estimator the shaper's terms are
meant for, e.g. PRL's ``"prm"`` mode needs the un-normalised ``"raw"`` return).

Shapers are built by :func:`reasonenv.shaping.make_shaper` from ``{"name": ..., "weight": ...,
**kwargs}``; ``kwargs`` are checked against the shaper's ``Config`` dataclass, so an unknown key
fails with the list of valid ones. Services (reference log-probs, PRM, prover, grader) are
injected through :class:`~reasonenv.shaping.protocols.Services`; a shaper names the ones it needs
in ``services``. Reference log-probs are computed once per step by the pipeline when any
configured shaper names ``"ref_logprobs"`` and reach every shaper in
:attr:`StepContext.ref_logprobs` / :attr:`EpisodeRecord.step_ref_logprobs`.

Example:
    >>> from dataclasses import dataclass
    >>> class LengthPenalty(Shaper):
    ...     name = "length_penalty"
    ...     @dataclass
    ...     class Config:
    ...         per_char: float = 0.001  # penalty per character of the step
    ...     def step_terms(self, steps):
    ...         return [-self.config.per_char * len(s.step_text) for s in steps]
    >>> LengthPenalty(LengthPenalty.Config(per_char=0.01)).step_terms([StepContext.simple("abc")])
    [-0.03]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from reasonenv.problems.base import Problem

HOOK_POINTS = ("step", "token", "episode", "group")
ENTERS = ("reward", "advantage", "report")
_HOOK_METHODS = {"step": "step_terms", "token": "token_terms", "episode": "episode_end",
                 "group": "group_end"}
SERVICE_NAMES = ("ref_logprobs", "prm", "prover", "grader")


@dataclass(frozen=True)
class StepContext:
    """One step just taken by one sub-env.

    Attributes:
        slot: Index of the sub-env (0 for a single env); stable for the whole episode.
        episode_id: Distinguishes episodes that reuse a slot (increments on every reset).
        problem: The problem being solved.
        prompt: The prompt text the policy continued.
        step_index: 0-based index of this step.
        steps: Text of every step so far, this one last.
        step_token_ids: Per step so far, its token ids (None where the policy gave none).
        step_logprobs: Per step so far, log pi_old of its tokens (None where not given).
        prompt_token_ids: The prompt's token ids when the env has a tokenizer, else None.
        is_last: This step ends the episode (terminated or truncated).
        outcome: The verified outcome (1.0/0.0) when ``is_last``, else None.
        verdict: The grader's verdict dict when ``is_last``, else None.
        step_ref_logprobs: Per step so far, log pi_ref of its tokens, computed by the pipeline
            when a configured shaper needs ``ref_logprobs`` (else empty).
    """

    slot: int
    episode_id: int
    problem: Problem
    prompt: str
    step_index: int
    steps: tuple[str, ...]
    step_token_ids: tuple[tuple[int, ...] | None, ...]
    step_logprobs: tuple[tuple[float, ...] | None, ...]
    prompt_token_ids: tuple[int, ...] | None = None
    is_last: bool = False
    outcome: float | None = None
    verdict: Mapping[str, Any] | None = None
    step_ref_logprobs: tuple[tuple[float, ...] | None, ...] = ()

    @property
    def step_text(self) -> str:
        """This step's text."""
        return self.steps[-1]

    @property
    def token_ids(self) -> tuple[int, ...] | None:
        """This step's token ids."""
        return self.step_token_ids[-1]

    @property
    def logprobs(self) -> tuple[float, ...] | None:
        """log pi_old of this step's tokens."""
        return self.step_logprobs[-1]

    @property
    def ref_logprobs(self) -> tuple[float, ...] | None:
        """log pi_ref of this step's tokens (None when the pipeline did not compute them)."""
        return self.step_ref_logprobs[-1] if self.step_ref_logprobs else None

    @property
    def prefix(self) -> str:
        """Response text before this step."""
        return "".join(self.steps[:-1])

    @classmethod
    def simple(cls, step_text: str, *, prompt: str = "", problem: Problem | None = None) -> StepContext:
        """A one-step context for docs and tests."""
        problem = problem or Problem(id="demo", question=prompt, answer="", source="demo")
        return cls(0, 0, problem, prompt, 0, (step_text,), (None,), (None,))


@dataclass(frozen=True)
class EpisodeRecord:
    """A finished episode, as episode-end and group-end hooks see it.

    Attributes:
        slot: Sub-env index.
        episode_id: As in :class:`StepContext`.
        problem: The problem.
        prompt: The prompt text.
        steps: Text of every step.
        step_token_ids: Per step, token ids or None.
        step_logprobs: Per step, log pi_old or None.
        prompt_token_ids: Prompt token ids or None.
        outcome: Verified outcome (1.0/0.0).
        verdict: The grader's verdict dict.
        terminated: Ended on a final answer or EOS (False: truncated).
        step_terms: Per shaper name, its weighted step terms, one per step.
        step_ref_logprobs: Per step, log pi_ref of its tokens (see :class:`StepContext`).
        episode_terms: Per shaper with an episode hook, its weighted episode-end term (filled
            by the pipeline once the episode-end hooks ran).
        token_terms: Per shaper with a token hook, its weighted terms, one per response token.
    """

    slot: int
    episode_id: int
    problem: Problem
    prompt: str
    steps: tuple[str, ...]
    step_token_ids: tuple[tuple[int, ...] | None, ...]
    step_logprobs: tuple[tuple[float, ...] | None, ...]
    prompt_token_ids: tuple[int, ...] | None
    outcome: float
    verdict: Mapping[str, Any]
    terminated: bool
    step_terms: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    step_ref_logprobs: tuple[tuple[float, ...] | None, ...] = ()
    episode_terms: Mapping[str, float] = field(default_factory=dict)
    token_terms: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def response(self) -> str:
        """The full response text."""
        return "".join(self.steps)

    @property
    def step_lengths(self) -> tuple[int, ...]:
        """Tokens per step (0 for a step without token ids)."""
        return tuple(len(ids) if ids is not None else 0 for ids in self.step_token_ids)

    @property
    def response_token_ids(self) -> tuple[int, ...] | None:
        """All response token ids, or None when a step has none."""
        return _concat(self.step_token_ids)

    @property
    def logprobs(self) -> tuple[float, ...] | None:
        """log pi_old of every response token, or None when a step has none."""
        return _concat(self.step_logprobs)

    @property
    def ref_logprobs(self) -> tuple[float, ...] | None:
        """log pi_ref of every response token, or None when not computed for every step."""
        if len(self.step_ref_logprobs) != len(self.steps):
            return None
        return _concat(self.step_ref_logprobs)


def _concat(parts: Sequence[Sequence[Any] | None]) -> tuple[Any, ...] | None:
    if any(p is None for p in parts):
        return None
    return tuple(x for p in parts for x in p)  # type: ignore[union-attr]


class Shaper:
    """Base class of every reward shaper (built-in or plugin).

    Subclasses set the class attributes, define a ``Config`` dataclass (its fields are the
    shaper's keyword arguments, each with a default), and override one or more of
    :meth:`step_terms`, :meth:`token_terms`, :meth:`episode_end`, :meth:`group_end`.

    Class attributes (an instance may override ``enters``, ``estimator`` and ``bounds`` from
    its config, e.g. PROGRS's ``inject``):
        name: Registry name (lowercase, unique).
        enters: What the terms are to policy optimisation: ``"reward"``, ``"advantage"`` or
            ``"report"`` for every hook, or a mapping ``{hook: value}`` (see the module doc).
        services: Names of the services it needs (subset of ``SERVICE_NAMES``).
        bounds: ``(low, high)`` of every step/episode/group term it returns, where known
            (checked in the contract test), else None.
        clip_to_outcome: Scale this shaper's terms down per group (after all terms are
            composed) so that no incorrect response ends with a higher advantage than a
            correct one (PROGRS).
        estimator: The advantage estimator the terms are meant for (None: any); the trainer
            uses it when ``algo.advantage.estimator`` is not set and fails on a conflict.
        time_budget: Seconds one hook call may take (None: no limit); a slower call raises
            :class:`~reasonenv.shaping.pipeline.ShaperError` naming the shaper.
    """

    name: ClassVar[str] = ""
    enters: ClassVar[str | Mapping[str, str]] = "reward"
    services: ClassVar[tuple[str, ...]] = ()
    bounds: ClassVar[tuple[float, float] | None] = None
    clip_to_outcome: ClassVar[bool] = False
    estimator: ClassVar[str | None] = None
    time_budget: ClassVar[float | None] = None

    @dataclass
    class Config:
        """No options."""

    def __init__(self, config: Any = None, services: Any = None) -> None:
        self.config = config if config is not None else self.Config()
        self.svc = services

    # -- hook points (override what the shaper uses) ----------------------------------------
    def step_terms(self, steps: Sequence[StepContext]) -> list[float]:
        """Causal per-step terms, one per context. Default: not used (returns zeros)."""
        return [0.0] * len(steps)

    def token_terms(self, episodes: Sequence[EpisodeRecord]) -> list[Sequence[float]]:
        """Per finished episode, one term per response token. Default: not used."""
        return [[0.0] * sum(e.step_lengths) for e in episodes]

    def episode_end(self, episodes: Sequence[EpisodeRecord]) -> list[float]:
        """Terms added to each episode's last step. Default: not used."""
        return [0.0] * len(episodes)

    def group_end(self, group: Sequence[EpisodeRecord]) -> list[float]:
        """One term per member of a finished group. Default: not used."""
        return [0.0] * len(group)

    def reset_slot(self, slot: int) -> None:
        """Called when ``slot`` starts a new episode (drop any per-episode state)."""

    def stats(self) -> dict[str, float]:
        """Diagnostics to log (e.g. how often PROGRS clipped lambda). Default: none."""
        return {}

    # -- introspection -----------------------------------------------------------------------
    @classmethod
    def hook_points(cls) -> tuple[str, ...]:
        """The hook points this class overrides, in ``HOOK_POINTS`` order."""
        return tuple(p for p, m in _HOOK_METHODS.items() if getattr(cls, m) is not getattr(Shaper, m))

    def contributions(self) -> dict[str, str]:
        """``{hook: enters}`` for every hook this shaper uses (what the composition applies).

        Example:
            >>> class Both(Shaper):
            ...     name = "both"
            ...     enters = {"step": "advantage", "group": "reward"}
            ...     def step_terms(self, steps): return [0.0] * len(steps)
            ...     def group_end(self, group): return [0.0] * len(group)
            >>> Both().contributions()
            {'step': 'advantage', 'group': 'reward'}
        """
        return {hook: _enters_of(self.enters, hook, self.name) for hook in type(self).hook_points()}

    @classmethod
    def config_fields(cls) -> dict[str, Any]:
        """``{field: default}`` of the shaper's Config."""
        return {
            f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
            for f in dataclasses.fields(cls.Config)
        }

    @classmethod
    def validate_class(cls) -> None:
        """Raise ``TypeError`` if the class breaks the contract (used at registration)."""
        if not isinstance(cls.name, str) or not cls.name or cls.name != cls.name.strip():
            raise TypeError(f"shaper class {cls.__qualname__} needs a non-empty str `name`")
        hooks = cls.hook_points()
        if isinstance(cls.enters, Mapping):
            extra = sorted(set(cls.enters) - set(hooks))
            if extra:
                raise TypeError(
                    f"shaper {cls.name!r}: enters names hook(s) {extra} it does not override; "
                    f"its hooks: {list(hooks)}"
                )
        for hook in hooks:
            _enters_of(cls.enters, hook, cls.name, exc=TypeError)
        unknown = set(cls.services) - set(SERVICE_NAMES)
        if unknown:
            raise TypeError(f"shaper {cls.name!r}: unknown service(s) {sorted(unknown)}; valid: {SERVICE_NAMES}")
        if not dataclasses.is_dataclass(cls.Config):
            raise TypeError(f"shaper {cls.name!r}: Config must be a dataclass")
        if not hooks:
            raise TypeError(
                f"shaper {cls.name!r} overrides none of step_terms, token_terms, episode_end, group_end"
            )


def _enters_of(enters: Any, hook: str, name: str, exc: type[Exception] = ValueError) -> str:
    """The ``enters`` value for ``hook`` (a plain value applies to every hook)."""
    value = enters.get(hook, "reward") if isinstance(enters, Mapping) else enters
    if value not in ENTERS:
        raise exc(f"shaper {name!r}: enters={value!r} for hook {hook!r}, must be one of {ENTERS}")
    return value
