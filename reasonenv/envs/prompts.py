"""Prompt templates: how a Problem becomes the text the policy continues."""

from __future__ import annotations

import string
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
        if not isinstance(self.template, str):
            raise TypeError(f"prompt template must be a str, got {type(self.template).__name__}")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None]
        except ValueError as e:
            raise ValueError(
                f"prompt template={self.template!r} does not format (ValueError: {e}); "
                "write literal braces doubled, e.g. \\boxed{{}} for \\boxed{}"
            ) from None
        if any(f == "" or f.isdigit() for f in fields):
            raise ValueError(
                f"prompt template={self.template!r} does not format: it has a positional field "
                "'{}'; write literal braces doubled, e.g. \\boxed{{}} for \\boxed{}"
            )
        other = sorted(set(fields) - {"question"})
        if other:
            raise ValueError(
                f"prompt template={self.template!r} has unknown field(s) {other}; the only field "
                "is {question} (write literal braces doubled: {{ and }})"
            )
        try:
            self.template.format(question="")
        except (ValueError, IndexError, KeyError) as e:
            raise ValueError(
                f"prompt template={self.template!r} does not format ({type(e).__name__}: {e}); "
                "write literal braces doubled, e.g. \\boxed{{}} for \\boxed{}"
            ) from None
        if "question" not in fields:
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
