"""Prompt templates: how a Problem becomes the text the policy continues."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reasonenv.problems.base import Problem

DEFAULT_INSTRUCTION = (
    "Solve the problem step by step. Separate the steps with a blank line and put the final "
    "answer in \\boxed{{}}.\n\n{question}"
)
PLAIN_TEMPLATE = "Question: {question}\nAnswer: Let's think step by step.\n"


@dataclass(frozen=True)
class PromptTemplate:
    """Turns a problem into prompt text.

    Args:
        template: A ``str.format`` template with a ``{question}`` field (``{{``/``}}`` for
            literal braces). The default asks for the final answer in ``\\boxed{}``.
        chat: Wrap the filled template as one user message through the tokenizer's chat
            template (``apply_chat_template(..., add_generation_prompt=True)``).
        system: Optional system message, used only with ``chat=True``.

    Example:
        >>> p = Problem(id="x", question="What is 2+3?", answer="5", source="demo")
        >>> PromptTemplate("Q: {question}\\nA:").render(p)
        'Q: What is 2+3?\\nA:'
    """

    template: str = DEFAULT_INSTRUCTION
    chat: bool = False
    system: str | None = None

    def __post_init__(self) -> None:
        if "{question}" not in self.template:
            raise ValueError(
                f"prompt template must contain '{{question}}', got template={self.template!r}"
            )

    def render(self, problem: Problem, tokenizer: Any | None = None) -> str:
        """Return the prompt text for ``problem``.

        Raises:
            ValueError: if ``chat=True`` and no tokenizer with a chat template is given.
        """
        text = self.template.format(question=problem.question)
        if not self.chat:
            return text
        if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(
                "prompt.chat=True needs a tokenizer with a chat_template; got "
                f"tokenizer={type(tokenizer).__name__ if tokenizer is not None else None}"
            )
        messages = [{"role": "user", "content": text}]
        if self.system:
            messages.insert(0, {"role": "system", "content": self.system})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @classmethod
    def coerce(cls, value: PromptTemplate | str | dict | None) -> PromptTemplate:
        """Build a template from a template, a template string, a kwargs dict, or None."""
        if value is None:
            return cls()
        if isinstance(value, PromptTemplate):
            return value
        if isinstance(value, str):
            return cls(template=value)
        if isinstance(value, dict):
            unknown = set(value) - {"template", "chat", "system"}
            if unknown:
                raise ValueError(
                    f"unknown prompt field(s) {sorted(unknown)}; valid: chat, system, template"
                )
            return cls(**value)
        raise TypeError(f"prompt must be a PromptTemplate, str, dict or None, got {value!r}")
