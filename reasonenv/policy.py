"""The Policy protocol every backend satisfies, and the scripted policy (torch-free).

Model-backed policies (HF, vLLM, OpenAI-compatible HTTP) live in :mod:`reasonenv.agents`.

A policy maps a batch of observations to a batch of step actions. Each observation belongs to a
*slot* (a sub-env index); ``reset(slots)`` tells the policy that those slots started new
episodes, so stateful backends (KV caches, token histories) can drop what they kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from reasonenv.segmentation import Segmenter


@runtime_checkable
class Policy(Protocol):
    """Anything that proposes the next reasoning step for a batch of observations."""

    def reset(self, slots: Sequence[int]) -> None:
        """Forget the state of ``slots``: their next observation starts a new episode."""
        ...

    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[Any]:
        """Return one action (str or ``{"text", "token_ids", "logprobs", "eos"}``) per observation."""
        ...


class ScriptedPolicy:
    """Replays responses produced by ``script(prompt) -> full response``, one step at a time.

    The response is cut with ``split`` (same rule as the env), so a scripted run steps exactly
    the segments the fast path scores.

    Example:
        >>> pol = ScriptedPolicy(lambda prompt: "2 + 3 = 5.\\n\\nThe answer is \\\\boxed{5}.")
        >>> pol.reset([0]); pol.act(["What is 2 + 3?"], [0])
        ['2 + 3 = 5.\\n\\n']
    """

    def __init__(self, script: Callable[[str], str], split: str = "\n\n") -> None:
        self.script = script
        self.segmenter = Segmenter(split)
        self._queues: dict[int, list[str]] = {}

    def reset(self, slots: Sequence[int]) -> None:
        for s in slots:
            self._queues.pop(s, None)

    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[Any]:
        actions: list[Any] = []
        for obs, slot in zip(observations, slots):
            if slot not in self._queues:
                text = obs if isinstance(obs, str) else obs["text"]
                self._queues[slot] = [s.text for s in self.segmenter.segment_text(self.script(text))]
            queue = self._queues[slot]
            actions.append(queue.pop(0) if queue else {"text": "", "eos": True})
        return actions
