"""``reasonenv/MathTokens-v0``: one action is one token id; numeric observations."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from reasonenv.envs.math_steps import MathStepsEnv
from reasonenv.envs.spaces import token_observation_space
from reasonenv.envs.termination import FinalAnswerScan, final_answer_end
from reasonenv.segmentation import IncrementalDecoder


class MathTokensEnv(gym.Env[dict, int]):
    """A math problem as an episode whose actions are token ids.

    Built for numeric RL libraries (stable-baselines3): the action space is
    ``Discrete(len(tokenizer))`` and the observation is ``{"token_ids": (max_len,) int64,
    "length": (1,) int64}`` holding the prompt and the response so far, zero-padded. Tokens are
    decoded incrementally and cut into steps by the same segmenter as the step env; rewards land
    on the token that ends a step (the outcome on the last step). The episode terminates on the
    EOS token or once a final answer is complete, and truncates at ``max_tokens``.

    Args:
        tokenizer: A Hugging Face tokenizer; default the built-in character-level one
            (:func:`reasonenv.tokenizers.char_tokenizer`, 102 ids), which suits numeric RL.
        problems: Problem source or spec, as for :class:`MathStepsEnv`.
        prompt: Prompt template (see :class:`~reasonenv.envs.prompts.PromptTemplate`).
        split: Step segmentation (``"\\n\\n"``, ``"\\n"``, ``"fixed:N"``); default as in
            :class:`MathStepsEnv`.
        shapers: Reward shapers (see :class:`MathStepsEnv`); step terms land on step-end tokens.
        services: Services for the shapers.
        slot: Index inside a group env.
        max_tokens: Response token budget.
        max_prompt_tokens: Longest prompt; longer prompts raise at reset.
        grader_timeout: Seconds allowed for grading.

    Example:
        >>> import gymnasium as gym, reasonenv
        >>> env = gym.make("reasonenv/MathTokens-v0")  # character-level tokenizer
        >>> obs, info = env.reset(seed=0)
        >>> env.action_space
        Discrete(102)
        >>> from reasonenv.testing import tiny_tokenizer
        >>> env = gym.make("reasonenv/MathTokens-v0", tokenizer=tiny_tokenizer())
        >>> obs, info = env.reset(seed=0)
        >>> obs["token_ids"].shape == env.observation_space["token_ids"].shape
        True
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        tokenizer: Any = None,
        problems: Any = "procedural:arithmetic",
        *,
        prompt: Any = None,
        split: str | None = None,
        max_tokens: int = 256,
        max_prompt_tokens: int = 256,
        shapers: Any = None,
        services: Any = None,
        slot: int = 0,
        grader_timeout: float = 2.0,
        last_number_fallback: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if tokenizer is None:
            from reasonenv.tokenizers import char_tokenizer

            tokenizer = char_tokenizer()
        # The step env holds the problem source, prompt and grading logic; we drive it.
        self._inner = MathStepsEnv(
            problems, prompt=prompt, tokenizer=tokenizer, split=split, max_steps=max_tokens,
            max_tokens=max_tokens, grader_timeout=grader_timeout,
            last_number_fallback=last_number_fallback, shapers=shapers, services=services,
            slot=slot,
        )
        self.tokenizer = tokenizer
        self.segmenter = self._inner.segmenter
        self.max_tokens = max_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.render_mode = render_mode
        self.vocab_size = len(tokenizer)
        self.max_len = max_prompt_tokens + max_tokens
        self.action_space = gym.spaces.Discrete(self.vocab_size)
        self.observation_space = token_observation_space(self.vocab_size, self.max_len)
        self._buf = np.zeros(self.max_len, dtype=np.int64)
        self._len = 0
        self._prompt_len = 0
        self._decoder: IncrementalDecoder | None = None
        self._step_start_tok = 0
        self._step_start_char = 0
        self._step_lps: list[float] = []
        self._scan = FinalAnswerScan()
        self._done = True

    @property
    def source(self) -> Any:
        """The problem source (shared with the inner step env)."""
        return self._inner.source

    @property
    def pipeline(self) -> Any:
        """The reward pipeline (shared with the inner step env)."""
        return self._inner.pipeline

    @property
    def last_episode(self) -> Any:
        """The last finished episode's record."""
        return self._inner.last_episode

    @property
    def state(self) -> Any:
        """The inner step env's episode state (problem, prompt, steps, response)."""
        return self._inner.state

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode; options as for :meth:`MathStepsEnv.reset`."""
        super().reset(seed=seed)
        self._inner.np_random = self.np_random  # one seeded generator for both
        _, info = self._inner.reset(options=options)
        ids = list(self._inner.state.prompt_ids or ())
        if len(ids) > self.max_prompt_tokens:
            raise ValueError(
                f"prompt of problem {info['problem_id']!r} has {len(ids)} tokens, over "
                f"max_prompt_tokens={self.max_prompt_tokens}"
            )
        self._buf[:] = 0
        self._buf[: len(ids)] = ids
        self._len = self._prompt_len = len(ids)
        self._decoder = IncrementalDecoder(self.tokenizer)
        self._step_start_tok = self._step_start_char = 0
        self._step_lps = []
        self._scan = FinalAnswerScan()
        self._done = False
        return self._obs(), info

    def step(self, action: int, logprob: float | None = None):
        """Append one token. ``logprob`` (optional) is the policy's log-prob of it."""
        if self._done or self._decoder is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be a token id in [0, {self.vocab_size}), got {action!r}")
        tok = int(action)
        d = self._decoder
        checked = d.ends[-1] if d.ends else 0  # characters before this token
        d.push(tok)
        self._buf[self._len] = tok
        self._len += 1
        if logprob is not None:
            self._step_lps.append(float(logprob))
        n_resp = len(d.ids)
        eos = tok == getattr(self.tokenizer, "eos_token_id", None)
        # Both checks read only this token's text, so a long response costs O(length) overall.
        self._scan = self._scan.advance(d.text)
        final = self._scan.end is not None
        ends_step = self.segmenter.ends_step_at(
            d.text, self._step_start_char, checked, n_resp - self._step_start_tok
        )
        out_of_budget = n_resp >= self.max_tokens
        if not (ends_step or eos or final or out_of_budget):
            return self._obs(), 0.0, False, False, {"step_index": len(self._inner.state.steps), "step_end": False}
        step_text = d.text[self._step_start_char :]
        ids = tuple(d.ids[self._step_start_tok :])
        lps = tuple(self._step_lps) if len(self._step_lps) == len(ids) else None
        act = {"text": step_text, "token_ids": ids, "eos": eos}
        if lps is not None:
            act["logprobs"] = lps
        # The inner env sees the same step text and tokens, so it terminates on EOS or a final
        # answer and truncates once its token count reaches max_tokens, exactly as we would.
        _, reward, terminated, truncated, info = self._inner.step(act)
        self._step_start_tok, self._step_start_char = n_resp, len(d.text)
        self._step_lps = []
        info["step_end"] = True
        self._done = terminated or truncated
        return self._obs(), reward, terminated, truncated, info

    def score_tokens(
        self,
        token_ids: Any,
        *,
        logprobs: Any = None,
        problem: Any = None,
    ) -> list[Any]:
        """Fast path: score a whole sampled response as token-by-token stepping would.

        The tokens are cut where stepping would stop (the EOS token, the token completing the
        first final answer, or ``max_tokens``), then segmented and scored in one pass by the
        step env's :meth:`~reasonenv.envs.math_steps.MathStepsEnv.score_response`.

        Returns:
            One :class:`~reasonenv.envs.math_steps.StepRecord` per step end.
        """
        ids = [int(t) for t in token_ids][: self.max_tokens]
        d = IncrementalDecoder(self.tokenizer).extend(ids)
        stop = final_answer_end(d.text)
        eos_id = getattr(self.tokenizer, "eos_token_id", None)
        n, finished = len(ids), False
        for k, t in enumerate(ids):
            if t == eos_id or (stop is not None and d.ends[k] >= stop):
                n, finished = k + 1, True
                break
        text = d.text[: d.ends[n - 1]] if n else ""
        lps = list(logprobs)[:n] if logprobs is not None else None
        return self._inner.score_response(
            text, token_ids=ids[:n], logprobs=lps, problem=problem, finished=finished
        )

    def render(self) -> str | None:
        """The prompt and response text so far (``"ansi"``)."""
        if self.render_mode != "ansi" or self._inner.state is None:
            return None
        return self._inner.state.prompt + (self._decoder.text if self._decoder else "")

    def _obs(self) -> dict[str, np.ndarray]:
        return {"token_ids": self._buf.copy(), "length": np.array([self._len], dtype=np.int64)}
