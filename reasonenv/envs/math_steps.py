"""``reasonenv/MathSteps-v0``: one action is one reasoning step."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from reasonenv.envs.actions import StepAction, check_token_text, parse_action
from reasonenv.envs.prompts import PromptTemplate
from reasonenv.envs.spaces import UnicodeText
from reasonenv.envs.stepping import (
    EpisodeState,
    PendingStep,
    StepOutcome,
    StepRecord,
    episode_record,
    step_batch,
    step_context,
    step_info,
)
from reasonenv.envs.termination import FinalAnswerScan, final_answer_end
from reasonenv.problems.base import Problem
from reasonenv.segmentation import Segmenter, token_char_ends

# Episode ids for whole-response scoring never collide with live episodes' (>= 0).
_SCRATCH_IDS = itertools.count(-1, -1)


class MathStepsEnv(gym.Env[str, Any]):
    """A math problem as an episode whose actions are reasoning steps.

    Each ``reset`` draws a problem (from ``problems``, with gymnasium's seeded ``np_random``)
    and returns the prompt as the observation. Each ``step`` appends one reasoning step, given
    as a ``str`` or as ``{"text": str, "token_ids": [...], "logprobs": [...], "eos": bool}``,
    and returns the prompt plus all steps so far. The episode terminates when the response
    holds a final answer (``\\boxed{}``, ``\\fbox{}``, "The answer is ...", ``#### n``) or the
    policy signals EOS, and is truncated (never both) after ``max_steps`` steps or
    ``max_tokens`` response tokens. The reward is the verified outcome (1.0 correct, else 0.0)
    plus the terms of the configured reward shapers; ``info["reward_terms"]`` reports every
    weighted term per step and the reward is their sum.

    Args:
        problems: A :class:`~reasonenv.problems.ProblemSource`, a list of problems, or a source
            spec string such as ``"procedural:arithmetic"`` or ``"gsm8k:test"``.
        prompt: A :class:`PromptTemplate`, template string or kwargs dict.
        tokenizer: Optional Hugging Face tokenizer: counts tokens, applies chat templates,
            decodes token ids and enables ``obs_mode="dict"``.
        split: Step segmentation used by :meth:`score_response` and token-level stepping
            (``"\\n\\n"``, ``"\\n"``, ``"fixed:N"``). Default: what a shaper asks for (PRL:
            ``fixed:256``), else ``"\\n\\n"``.
        max_steps: Truncate after this many steps.
        max_tokens: Truncate once the response has this many tokens (characters when neither
            the action nor a tokenizer gives tokens).
        max_step_chars: Longest accepted step; longer steps are cut and the episode truncated.
        max_prompt_chars: Longest accepted prompt; longer prompts raise at reset.
        obs_mode: ``"text"`` (default) or ``"dict"`` = text plus padded prompt+response token ids.
        shapers: Reward shapers: names, ``{"name", "weight", **kwargs}`` dicts or instances
            (``outcome`` is always included), or a shared :class:`RewardPipeline`.
        services: Services the shapers need (:class:`~reasonenv.shaping.protocols.Services` or a
            dict for :func:`~reasonenv.shaping.service_factory.build_services`).
        slot: This env's index inside a group env (keys per-episode service caches).
        grader_timeout: Seconds allowed for grading one answer (worker process, hard limit).
        last_number_fallback: Grade the last number when no final answer is marked.
        render_mode: ``None``, ``"ansi"`` or ``"human"``.

    Example:
        >>> import gymnasium as gym, reasonenv
        >>> env = gym.make("reasonenv/MathSteps-v0", problems="procedural:arithmetic")
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step("Let me add.\\n\\n")
        >>> terminated, reward
        (False, 0.0)
    """

    metadata = {"render_modes": ["ansi", "human"]}

    def __init__(
        self,
        problems: Any = "procedural:arithmetic",
        *,
        prompt: PromptTemplate | str | dict | None = None,
        tokenizer: Any | None = None,
        split: str | None = None,
        max_steps: int = 16,
        max_tokens: int = 512,
        max_step_chars: int = 8192,
        max_prompt_chars: int = 16384,
        obs_mode: str = "text",
        shapers: Any = None,
        services: Any = None,
        slot: int = 0,
        grader_timeout: float = 2.0,
        last_number_fallback: bool = False,
        render_mode: str | None = None,
    ) -> None:
        from reasonenv.grading import check_timeout
        from reasonenv.problems import make_source
        from reasonenv.shaping.pipeline import RewardPipeline

        for name, value in (("max_steps", max_steps), ("max_tokens", max_tokens),
                            ("max_step_chars", max_step_chars), ("max_prompt_chars", max_prompt_chars)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        check_timeout(grader_timeout, field="grader_timeout")
        if obs_mode not in ("text", "dict"):
            raise ValueError(f"obs_mode must be 'text' or 'dict', got {obs_mode!r}")
        if obs_mode == "dict" and tokenizer is None:
            raise ValueError("obs_mode='dict' needs a tokenizer (token-id view)")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.source = make_source(problems)
        self.prompt_template = PromptTemplate.coerce(prompt)
        self.tokenizer = tokenizer
        if isinstance(shapers, RewardPipeline):
            self.pipeline = shapers
        else:
            self.pipeline = RewardPipeline(shapers if shapers is None or isinstance(shapers, (list, tuple)) else [shapers], services)
        wanted, explicit = self.pipeline.preferred_split()
        if split is not None and wanted is not None and explicit and split != wanted:
            raise ValueError(f"env split={split!r} conflicts with a shaper's split={wanted!r}")
        self.segmenter = Segmenter(split or wanted or "\n\n")
        self._check_services_fit()
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.max_step_chars = max_step_chars
        self.max_prompt_chars = max_prompt_chars
        self.obs_mode = obs_mode
        self.slot = slot
        self.grader_timeout = grader_timeout
        self.last_number_fallback = last_number_fallback
        self.render_mode = render_mode
        self.action_space = UnicodeText(max_length=max_step_chars)
        text_space = UnicodeText(max_length=max_prompt_chars + max_steps * max_step_chars)
        if obs_mode == "text":
            self.observation_space = text_space
        else:
            from reasonenv.envs.spaces import token_observation_space

            self._max_obs_tokens = max_prompt_chars + max_tokens
            tok_space = token_observation_space(len(tokenizer), self._max_obs_tokens)
            self.observation_space = gym.spaces.Dict({"text": text_space, **tok_space.spaces})
        self.state: EpisodeState | None = None
        self._episodes = 0
        self._last_episode: Any = None

    def _check_services_fit(self) -> None:
        needs_tokens = [s.name for s in self.pipeline.slots if "ref_logprobs" in type(s.shaper).services]
        if needs_tokens and self.tokenizer is None:
            raise ValueError(f"shaper(s) {needs_tokens} score tokens: pass tokenizer= to the env")

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start an episode on a new problem.

        Options:
            problem: a :class:`Problem` to use instead of drawing one.
            problem_index: index into a finite source (evaluation walks benchmarks this way).
        """
        super().reset(seed=seed)
        problem = self._choose_problem(options or {})
        prompt = self.prompt_template.render(problem, self.tokenizer)
        if len(prompt) > self.max_prompt_chars:
            raise ValueError(
                f"prompt of problem {problem.id!r} has {len(prompt)} characters, over "
                f"max_prompt_chars={self.max_prompt_chars}"
            )
        if self.state is not None and not self.state.done:
            self.pipeline.release(self.slot, self.state.episode_id)
        prompt_ids = None
        if self.tokenizer is not None:
            prompt_ids = tuple(self.tokenizer.encode(prompt, add_special_tokens=False))
        self.state = EpisodeState(problem=problem, prompt=prompt, slot=self.slot,
                                  episode_id=self._episodes, prompt_ids=prompt_ids)
        self._episodes += 1
        self.pipeline.reset_slot(self.slot)
        info = {"problem_id": problem.id, "step_index": 0, "source": problem.source}
        return self.current_observation(), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Append one reasoning step; see the class docstring for the flags and reward.

        A step whose grader or shaper raises is not applied: the episode is left as it was.
        """
        (record,) = step_batch([self], [self.begin_step(action)])
        self._last_episode = record.episode
        if self.render_mode == "human":
            print(self.render())
        return self.current_observation(), record.reward, record.terminated, record.truncated, record.info

    @property
    def last_episode(self) -> Any:
        """The :class:`~reasonenv.shaping.base.EpisodeRecord` of the last finished episode."""
        return self._last_episode

    def render(self) -> str | None:
        """Return (``"ansi"``) or print (``"human"``) the prompt and the steps so far."""
        if self.render_mode is None or self.state is None:
            return None
        return self.state.prompt + self.state.response

    # ------------------------------------------------------------------ fast path
    def score_response(
        self,
        response: str,
        *,
        token_ids: Sequence[int] | None = None,
        logprobs: Sequence[float] | None = None,
        problem: Problem | None = None,
        finished: bool = True,
    ) -> list[StepRecord]:
        """Score a complete response at once, as if it had been stepped step by step.

        The response is cut by the env's segmenter (on token boundaries when ``token_ids`` and
        a tokenizer are given), cut again after the first step that completes a final answer,
        graded once, and every shaper is called once for all its steps. The records equal
        what ``step`` returns step by step. The env's own episode is left untouched.

        Args:
            response: The full response text (decoded ``token_ids`` when those are given).
            token_ids: The response's tokens; needed for ``split="fixed:N"`` and token shapers.
            logprobs: The policy's log-prob of each token.
            problem: The problem; defaults to the current episode's.
            finished: The policy ended the response here (EOS after the last step), so the last
                step terminates the episode even without a final answer.
        """
        if problem is None:
            if self.state is None:
                raise RuntimeError("score_response needs problem= or a reset() env")
            problem = self.state.problem
        ends = None
        if token_ids is not None:
            if self.tokenizer is None:
                raise ValueError("score_response(token_ids=...) needs the env to have a tokenizer")
            response, ends = token_char_ends(self.tokenizer, token_ids)
        if logprobs is not None and (token_ids is None or len(logprobs) != len(token_ids)):
            raise ValueError("score_response: logprobs needs token_ids of the same length")
        steps = self.segmenter.segment(response, ends)
        stop = final_answer_end(response)
        prompt = self.prompt_template.render(problem, self.tokenizer)
        prompt_ids = None
        if self.tokenizer is not None:
            prompt_ids = tuple(self.tokenizer.encode(prompt, add_special_tokens=False))
        scratch = EpisodeState(problem=problem, prompt=prompt, slot=self.slot,
                               episode_id=next(_SCRATCH_IDS), prompt_ids=prompt_ids)
        pendings: list[PendingStep] = []
        for s in steps:
            ids = tuple(token_ids[s.token_start : s.token_end]) if token_ids is not None else None
            lps = tuple(logprobs[s.token_start : s.token_end]) if logprobs is not None else None
            eos = finished and s.index == len(steps) - 1
            p = self._pending(StepAction(text=s.text, token_ids=ids, logprobs=lps, eos=eos),
                              scratch, final_at=stop)
            p.apply()  # the scratch episode is ours: the next step builds on this one
            pendings.append(p)
            if p.done:
                break
        return self._shape_episode(pendings)

    # ------------------------------------------------------------------ transition
    def begin_step(self, action: Any) -> PendingStep:
        """Check ``action`` and compute this step against the running episode, without
        applying it (see :mod:`reasonenv.envs.stepping`).

        Raises:
            gymnasium.error.ResetNeeded: No episode is running.
            ValueError / TypeError: A bad action (the message names the field).
        """
        if self.state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self.state.done:
            raise gym.error.ResetNeeded("episode is over: call reset() before step()")
        act = parse_action(action)
        if act.token_ids is not None and self.tokenizer is not None:
            prev = [t for ids in self.state.step_ids for t in (ids or ())] or list(self.state.prompt_ids or ())
            check_token_text(self.tokenizer, prev, act.token_ids, act.text)
        return self._pending(act, self.state)

    def commit_step(self, pending: PendingStep, outcome: StepOutcome) -> StepRecord:
        """Apply a graded, shaped step to the episode and return what ``step`` returns."""
        pending.apply()
        st = pending.state
        st.step_ref_lps.append(outcome.ref_logprobs)
        st.step_terms.append(dict(outcome.terms))
        reward, info = step_info(pending, outcome)
        return StepRecord(reward, pending.terminated, pending.truncated, info, outcome.episode)

    # ------------------------------------------------------------------ internals
    def _shape_episode(self, pendings: list[PendingStep]) -> list[StepRecord]:
        """Grade once and call each shaper once for all steps of one applied scratch episode."""
        if not pendings:
            return []
        st = pendings[-1].state
        n = len(pendings)
        last = pendings[-1]
        verdict = self.grade_many([(st.response, st.problem)])[0] if last.done else None
        # Each step's context as it was when that step was taken.
        contexts = [step_context(st, p, k, verdict if k == n - 1 else None)
                    for k, p in enumerate(pendings)]
        refs = self.pipeline.ref_logprobs(contexts)
        if self.pipeline.needs_ref_logprobs:
            from dataclasses import replace

            contexts = [replace(c, step_ref_logprobs=tuple(refs[: k + 1])) for k, c in enumerate(contexts)]
        terms = self.pipeline.step_terms(contexts)
        episode = None
        if last.done:
            (episode,) = self.pipeline.finish_episodes(
                [episode_record(contexts[-1], last.terminated, terms, verdict)])
        records = []
        for k, p in enumerate(pendings):
            outcome = StepOutcome(verdict if k == n - 1 else None, terms[k], refs[k],
                                  episode if k == n - 1 else None)
            reward, info = step_info(p, outcome)
            records.append(StepRecord(reward, p.terminated, p.truncated, info, outcome.episode))
        st.step_terms = [dict(t) for t in terms]
        st.step_ref_lps = list(refs)
        return records

    def _choose_problem(self, options: dict[str, Any]) -> Problem:
        unknown = set(options) - {"problem", "problem_index"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; valid: problem, problem_index")
        if "problem" in options:
            p = options["problem"]
            if not isinstance(p, Problem):
                raise TypeError(f"options['problem'] must be a Problem, got {type(p).__name__}")
            return p
        if "problem_index" in options:
            idx = options["problem_index"]
            if not hasattr(self.source, "__getitem__"):
                raise ValueError(f"source {self.source.name!r} is not indexable (problem_index={idx!r})")
            if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
                raise TypeError(f"options['problem_index'] must be an int, got {idx!r}")
            size = len(self.source) if hasattr(self.source, "__len__") else None
            if idx < 0 or (size is not None and idx >= size):
                where = f"0..{size - 1}" if size is not None else ">= 0"
                raise ValueError(
                    f"options['problem_index']={idx} is out of range: source {self.source.name!r} "
                    f"has {size if size is not None else 'unbounded'} problems (valid: {where})"
                )
            return self.source[int(idx)]
        return self.source.sample(self.np_random)

    def _is_eos(self, action: StepAction) -> bool:
        if action.eos:
            return True
        tok = self.tokenizer
        if tok is not None:
            eos_id = getattr(tok, "eos_token_id", None)
            if action.token_ids and eos_id is not None and action.token_ids[-1] == eos_id:
                return True
            eos_text = getattr(tok, "eos_token", None)
            if eos_text and action.text.endswith(eos_text):
                return True
        return False

    def _pending(self, action: StepAction, st: EpisodeState, final_at: Any = "scan") -> PendingStep:
        """Compute ``action`` as the next step of ``st`` and decide the flags (no grading, no
        shaping, no mutation).

        ``final_at`` is the pre-computed final-answer end of the whole response (fast path) or
        ``"scan"`` to look at the response so far (stepping).
        """
        cut = len(action.text) > self.max_step_chars
        if cut:
            action = StepAction(text=action.text[: self.max_step_chars], eos=action.eos)
        ids = action.token_ids
        if ids is None and self.tokenizer is not None:
            ids = tuple(self.tokenizer.encode(action.text, add_special_tokens=False))
        n_step = len(ids) if ids is not None else len(action.text)
        response = st.response + action.text
        n_tokens = st.n_tokens + n_step
        scan = st.scan
        if final_at == "scan" or cut:  # only the new text is read (FinalAnswerScan)
            scan = (scan or FinalAnswerScan()).advance(response)
            final = scan.end is not None
        else:
            final = final_at is not None and final_at <= len(response)
        terminated = self._is_eos(action) or final
        by = None
        if not terminated:
            if cut:
                by = "max_step_chars"
            elif len(st.steps) + 1 >= self.max_steps:
                by = "max_steps"
            elif n_tokens >= self.max_tokens:
                by = "max_tokens"
        return PendingStep(st, action.text, ids, action.logprobs, n_step, terminated,
                           by is not None, by, response, n_tokens, len(st.steps), scan)

    def grade_many(self, items: Sequence[tuple[str, Problem]]) -> list[Any]:
        """Grade ``(response, problem)`` pairs in one batch (the services' grader if set)."""
        from reasonenv.grading import grade_batch

        eos_text = getattr(self.tokenizer, "eos_token", None) if self.tokenizer is not None else None
        pairs = []
        for response, problem in items:
            if eos_text and response.endswith(eos_text):
                response = response[: -len(eos_text)]  # the EOS marker is not part of the answer
            pairs.append((response, problem.answer))
        grader = self.pipeline.services.grader
        if grader is not None and grader is not grade_batch:
            return list(grader(pairs))  # a user-supplied grader
        return grade_batch(pairs, timeout=self.grader_timeout,
                           last_number_fallback=self.last_number_fallback)

    def current_observation(self) -> Any:
        """The observation of the running episode (what ``reset``/``step`` return)."""
        st = self.state
        assert st is not None
        text = st.prompt + st.response
        if self.obs_mode == "text":
            return text
        ids = list(st.prompt_ids or ()) + [t for s in st.step_ids for t in (s or ())]
        ids = ids[: self._max_obs_tokens]
        buf = np.zeros(self._max_obs_tokens, dtype=np.int64)
        buf[: len(ids)] = ids
        return {"text": text, "token_ids": buf, "length": np.array([len(ids)], dtype=np.int64)}
