"""Spaces for text observations and actions."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

# Characters used only by ``sample``; ``contains`` accepts any Unicode string.
_SAMPLE_CHARSET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 +-*/=()[]{}\\^_.,$\n"
)


class UnicodeText(spaces.Text):
    """A text space that accepts any Unicode string up to ``max_length`` characters.

    Gymnasium's :class:`~gymnasium.spaces.Text` only accepts characters from a fixed charset,
    which rejects LaTeX (``\\frac``, ``\\boxed``) and non-ASCII text. This subclass keeps the
    length bounds but accepts every character; ``sample`` draws from a small math charset.

    Example:
        >>> space = UnicodeText(max_length=64)
        >>> space.contains("\\\\boxed{\\\\frac{1}{2}} — π")
        True
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed: Any = None) -> None:
        super().__init__(
            max_length=max_length, min_length=min_length, charset=_SAMPLE_CHARSET, seed=seed
        )

    def contains(self, x: Any) -> bool:
        """True for any ``str`` whose length lies within the bounds."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, UnicodeText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )


def token_observation_space(vocab_size: int, max_len: int) -> spaces.Dict:
    """Numeric observation of a token-level env: padded token ids and the used length."""
    return spaces.Dict(
        {
            "token_ids": spaces.Box(low=0, high=vocab_size - 1, shape=(max_len,), dtype=np.int64),
            "length": spaces.Box(low=0, high=max_len, shape=(1,), dtype=np.int64),
        }
    )
