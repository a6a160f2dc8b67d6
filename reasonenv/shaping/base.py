"""The reward-shaper contract: what a shaper sees, when it is called, what it returns.

A shaper contributes reward terms at up to three points of an episode:

* **step** (causal): :meth:`Shaper.step_terms` gets a batch of :class:`StepContext` (one per
  sub-env that just took a step) and returns one float per context. The term is added to that
  step's env reward. It may only use information up to and including that step.
* **episode end**: :meth:`Shaper.episode_end` gets a batch of finished :class:`EpisodeRecord`
  and returns one float per episode, added to the episode's last step reward.
* **group end**: :meth:`Shaper.group_end` gets the G finished episodes of one problem group and
  returns one float per member. Episodes are over by then, so group terms are not env rewards:
  they are delivered with the group (``GroupResult.group_terms``) for the trainer.

``enters`` says where the term belongs in policy optimisation: ``"reward"`` terms are added to
the reward before group normalisation, ``"advantage"`` terms are added after it. Every term is
reported per step in ``info["reward_terms"]`` under the shaper's name.

Shapers are built by :func:`reasonenv.shaping.make_shaper` from ``{"name": ..., "weight": ...,
**kwargs}``; ``kwargs`` are checked against the shaper's ``Config`` dataclass, so an unknown key
fails with the list of valid ones. Services (reference log-probs, PRM, prover, grader) are
injected through :class:`~reasonenv.shaping.protocols.Services`; a shaper names the ones it needs
in ``services``.

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

HOOK_POINTS = ("step", "episode", "group")
ENTERS = ("reward", "advantage")
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
        step_terms: Per shaper name, the per-step terms already given (weighted as applied).
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

    @property
    def response(self) -> str:
        """The full response text."""
        return "".join(self.steps)


class Shaper:
    """Base class of every reward shaper (built-in or plugin).

    Subclasses set the class attributes, define a ``Config`` dataclass (its fields are the
    shaper's keyword arguments, each with a default), and override one or more of
    :meth:`step_terms`, :meth:`episode_end`, :meth:`group_end`.

    Class attributes:
        name: Registry name (lowercase, unique).
        enters: ``"reward"`` (before group normalisation) or ``"advantage"`` (after).
        services: Names of the services it needs (subset of ``SERVICE_NAMES``).
        bounds: ``(low, high)`` of every term it returns, where known (checked in the contract
            test), else None.
    """

    name: ClassVar[str] = ""
    enters: ClassVar[str] = "reward"
    services: ClassVar[tuple[str, ...]] = ()
    bounds: ClassVar[tuple[float, float] | None] = None

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
        methods = {"step": "step_terms", "episode": "episode_end", "group": "group_end"}
        return tuple(p for p, m in methods.items() if getattr(cls, m) is not getattr(Shaper, m))

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
        if cls.enters not in ENTERS:
            raise TypeError(f"shaper {cls.name!r}: enters={cls.enters!r}, must be one of {ENTERS}")
        unknown = set(cls.services) - set(SERVICE_NAMES)
        if unknown:
            raise TypeError(f"shaper {cls.name!r}: unknown service(s) {sorted(unknown)}; valid: {SERVICE_NAMES}")
        if not dataclasses.is_dataclass(cls.Config):
            raise TypeError(f"shaper {cls.name!r}: Config must be a dataclass")
        if not cls.hook_points():
            raise TypeError(f"shaper {cls.name!r} overrides none of step_terms, episode_end, group_end")
