"""``reasonenv/MathSteps-v0``: one action is one reasoning step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from reasonenv.envs.actions import StepAction, parse_action
from reasonenv.envs.prompts import PromptTemplate
from reasonenv.envs.spaces import UnicodeText
from reasonenv.problems.base import Problem
from reasonenv.segmentation import Segmenter, token_char_ends


@dataclass
class EpisodeState:
    """Everything the env knows about the running episode."""

    problem: Problem
    prompt: str
    steps: list[str] = field(default_factory=list)
    response: str = ""
    n_tokens: int = 0
    done: bool = False


@dataclass(frozen=True)
class StepRecord:
    """What one step produced: reward, flags and the info dict returned by ``step``."""

    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


class MathStepsEnv(gym.Env[str, Any]):
    """A math problem as an episode whose actions are reasoning steps.

    Each ``reset`` draws a problem (from ``problems``, with gymnasium's seeded ``np_random``)
    and returns the prompt as the observation. Each ``step`` appends one reasoning step, given
    as a ``str`` or as ``{"text": str, "token_ids": [...], "logprobs": [...], "eos": bool}``,
    and returns the prompt plus all steps so far. The episode terminates when the response
    holds a final answer (``\\boxed{}``, ``\\fbox{}``, "The answer is ...", ``#### n``) or the
    policy signals EOS, and is truncated (never both) after ``max_steps`` steps or
    ``max_tokens`` response tokens. The reward is the verified outcome (1.0 correct, else 0.0)
    on the last step and 0 before; ``info["reward_terms"]`` reports every term per step.

    Args:
        problems: A :class:`~reasonenv.problems.ProblemSource`, a list of problems, or a source
            spec string such as ``"procedural:arithmetic"`` or ``"gsm8k:test"``.
        prompt: A :class:`PromptTemplate`, template string or kwargs dict.
        tokenizer: Optional Hugging Face tokenizer: counts tokens, applies chat templates,
            decodes token ids and enables ``obs_mode="dict"``.
        split: Step segmentation used by :meth:`score_response` (``"\\n\\n"``, ``"\\n"``,
            ``"fixed:N"``).
        max_steps: Truncate after this many steps.
        max_tokens: Truncate once the response has this many tokens (characters when neither
            the action nor a tokenizer gives tokens).
        max_step_chars: Longest accepted step; longer steps are cut and the episode truncated.
        max_prompt_chars: Longest accepted prompt; longer prompts raise at reset.
        obs_mode: ``"text"`` (default) or ``"dict"`` = text plus padded prompt+response token ids.
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
        split: str = "\n\n",
        max_steps: int = 16,
        max_tokens: int = 512,
        max_step_chars: int = 8192,
        max_prompt_chars: int = 16384,
        obs_mode: str = "text",
        grader_timeout: float = 2.0,
        last_number_fallback: bool = False,
        render_mode: str | None = None,
    ) -> None:
        from reasonenv.problems import make_source

        for name, value in (("max_steps", max_steps), ("max_tokens", max_tokens),
                            ("max_step_chars", max_step_chars), ("max_prompt_chars", max_prompt_chars)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if obs_mode not in ("text", "dict"):
            raise ValueError(f"obs_mode must be 'text' or 'dict', got {obs_mode!r}")
        if obs_mode == "dict" and tokenizer is None:
            raise ValueError("obs_mode='dict' needs a tokenizer (token-id view)")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.source = make_source(problems)
        self.prompt_template = PromptTemplate.coerce(prompt)
        self.tokenizer = tokenizer
        self.segmenter = Segmenter(split)
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.max_step_chars = max_step_chars
        self.max_prompt_chars = max_prompt_chars
        self.obs_mode = obs_mode
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
        self._prompt_ids: list[int] = []
        self._response_ids: list[int] = []

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
        self.state = EpisodeState(problem=problem, prompt=prompt)
        if self.tokenizer is not None:
            self._prompt_ids = list(self.tokenizer.encode(prompt, add_special_tokens=False))
            self._response_ids = []
        info = {"problem_id": problem.id, "step_index": 0, "source": problem.source}
        return self._observation(), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Append one reasoning step; see the class docstring for the flags and reward."""
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        if self.state.done:
            raise RuntimeError("episode is over: call reset() before step()")
        record = self._apply(parse_action(action))
        if self.render_mode == "human":
            print(self.render())
        return self._observation(), record.reward, record.terminated, record.truncated, record.info

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
        graded once, and turned into the exact per-step records ``step`` would have returned.
        It does not change the env's episode state.

        Args:
            response: The full response text (decoded ``token_ids`` when those are given).
            token_ids: The response's tokens; needed for ``split="fixed:N"``.
            logprobs: The policy's log-prob of each token.
            problem: The problem; defaults to the current episode's.
            finished: The policy ended the response here (EOS after the last step), so the last
                step terminates the episode even without a final answer.
        """
        from reasonenv.envs.termination import final_answer_end

        if problem is None:
            if self.state is None:
                raise RuntimeError("score_response needs problem= or a reset() env")
            problem = self.state.problem
        ends = None
        if token_ids is not None:
            if self.tokenizer is None:
                raise ValueError("score_response(token_ids=...) needs the env to have a tokenizer")
            response, ends = token_char_ends(self.tokenizer, token_ids)
        steps = self.segmenter.segment(response, ends)
        # First step at which the cumulative response holds a complete final answer.
        stop = final_answer_end(response)
        actions = []
        for s in steps:
            ids = tuple(token_ids[s.token_start : s.token_end]) if token_ids is not None else None
            lps = tuple(logprobs[s.token_start : s.token_end]) if logprobs is not None else None
            eos = finished and s.index == len(steps) - 1
            actions.append(StepAction(text=s.text, token_ids=ids, logprobs=lps, eos=eos))
        return self._records_for(problem, actions, first_final_char=stop)

    # ------------------------------------------------------------------ internals
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
            return self.source[int(idx)]
        return self.source.sample(self.np_random)

    def _count_tokens(self, action: StepAction) -> int:
        if action.token_ids is not None:
            return len(action.token_ids)
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(action.text, add_special_tokens=False))
        return len(action.text)

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

    def _apply(self, action: StepAction) -> StepRecord:
        from reasonenv.envs.termination import has_final_answer

        st = self.state
        assert st is not None
        cut = len(action.text) > self.max_step_chars
        if cut:
            action = StepAction(text=action.text[: self.max_step_chars], eos=action.eos)
        st.steps.append(action.text)
        st.response += action.text
        st.n_tokens += self._count_tokens(action)
        if self.tokenizer is not None:
            ids = action.token_ids
            if ids is None:
                ids = tuple(self.tokenizer.encode(action.text, add_special_tokens=False))
            self._response_ids.extend(ids)
        terminated = self._is_eos(action) or has_final_answer(st.response)
        return self._finish_step(st.problem, action, terminated, cut)

    def _finish_step(
        self, problem: Problem, action: StepAction, terminated: bool, cut: bool
    ) -> StepRecord:
        st = self.state
        assert st is not None
        k = len(st.steps) - 1
        truncated = not terminated and (cut or len(st.steps) >= self.max_steps or st.n_tokens >= self.max_tokens)
        info: dict[str, Any] = {
            "problem_id": problem.id,
            "step_index": k,
            "step_tokens": self._count_tokens(action),
            "response_tokens": st.n_tokens,
        }
        reward = 0.0
        if terminated or truncated:
            st.done = True
            verdict = self._grade(st.response, problem.answer)
            reward = 1.0 if verdict.correct else 0.0
            info["verdict"] = verdict.to_dict()
            info["outcome"] = reward
            if truncated:
                info["truncated_by"] = (
                    "max_step_chars" if cut else "max_steps" if len(st.steps) >= self.max_steps else "max_tokens"
                )
        info["reward_terms"] = {"outcome": reward}
        return StepRecord(reward, terminated, truncated, info)

    def _records_for(
        self, problem: Problem, actions: list[StepAction], first_final_char: int | None
    ) -> list[StepRecord]:
        """Replay ``actions`` on a scratch state, using one pre-computed final-answer position."""
        from reasonenv.envs.termination import has_final_answer

        saved = self.state
        self.state = EpisodeState(problem=problem, prompt="")
        records: list[StepRecord] = []
        try:
            pos = 0
            for i, a in enumerate(actions):
                pos += len(a.text)
                cut = len(a.text) > self.max_step_chars
                if cut:
                    a = StepAction(text=a.text[: self.max_step_chars], eos=a.eos)
                self.state.steps.append(a.text)
                self.state.response += a.text
                self.state.n_tokens += self._count_tokens(a)
                if cut:  # the cut step may no longer hold the answer: check what was kept
                    final = has_final_answer(self.state.response)
                else:
                    final = first_final_char is not None and first_final_char <= pos
                rec = self._finish_step(problem, a, final or self._is_eos(a), cut)
                records.append(rec)
                if rec.terminated or rec.truncated:
                    break
        finally:
            self.state = saved
        return records

    def _grade(self, response: str, reference: str) -> Any:
        from reasonenv.grading import grade

        eos_text = getattr(self.tokenizer, "eos_token", None) if self.tokenizer is not None else None
        if eos_text and response.endswith(eos_text):
            response = response[: -len(eos_text)]  # the EOS marker is not part of the answer
        return grade(
            response,
            reference,
            timeout=self.grader_timeout,
            last_number_fallback=self.last_number_fallback,
        )

    def _observation(self) -> Any:
        st = self.state
        assert st is not None
        text = st.prompt + st.response
        if self.obs_mode == "text":
            return text
        ids = (self._prompt_ids + self._response_ids)[: self._max_obs_tokens]
        buf = np.zeros(self._max_obs_tokens, dtype=np.int64)
        buf[: len(ids)] = ids
        return {"text": text, "token_ids": buf, "length": np.array([len(ids)], dtype=np.int64)}
