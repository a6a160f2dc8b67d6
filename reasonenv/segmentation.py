"""Step segmentation: where does one reasoning step end?

A response is a token sequence (or, with no tokenizer, a character sequence treated as one
token per character). A step ends at the first token whose decoded characters complete the
delimiter ("\\n" or "\\n\\n") counted from the start of the step, or after a fixed number of
tokens. Boundaries are found on CHARACTER offsets and mapped to the token that contains the last
delimiter character, so merged BPE tokens such as ``".\\n\\n"`` still end a step. The scan is
causal: a token-level environment that sees one token at a time finds exactly the boundaries
that :func:`segment` finds on the whole response, and the last token always ends the last step.

Example:
    >>> seg = Segmenter("\\n\\n")
    >>> [s.text for s in seg.segment_text("a\\n\\nb\\n\\n\\nc")]
    ['a\\n\\n', 'b\\n\\n', '\\nc']
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_FIXED = re.compile(r"^fixed:(\d+)$")
DELIMITERS = {"newline": "\n", "double_newline": "\n\n", "\n": "\n", "\n\n": "\n\n"}


@dataclass(frozen=True)
class Step:
    """One segment of a response.

    Attributes:
        index: 0-based step index.
        text: The decoded text of the step.
        char_start: Offset of the first character in the response text.
        char_end: Offset one past the last character.
        token_start: Index of the first token (characters when no tokens were given).
        token_end: One past the last token; ``token_end - 1`` is the step's boundary position b_k.
    """

    index: int
    text: str
    char_start: int
    char_end: int
    token_start: int
    token_end: int


class Segmenter:
    """Cuts responses into steps by ``"\\n"``, ``"\\n\\n"`` or a fixed token count.

    Args:
        split: ``"\\n"``/``"newline"``, ``"\\n\\n"``/``"double_newline"``, or ``"fixed:N"`` for
            N tokens per step (PRL uses 64/128/256).

    Raises:
        ValueError: if ``split`` is none of those.
    """

    def __init__(self, split: str = "\n\n") -> None:
        self.split = split
        m = _FIXED.match(split) if isinstance(split, str) else None
        if m:
            self.fixed: int | None = int(m.group(1))
            if self.fixed <= 0:
                raise ValueError(f"segmentation split 'fixed:N' needs N >= 1, got {split!r}")
            self.delimiter: str | None = None
        elif split in DELIMITERS:
            self.fixed = None
            self.delimiter = DELIMITERS[split]
        else:
            raise ValueError(
                f"unknown segmentation split {split!r}; valid: '\\n', '\\n\\n', 'newline', "
                "'double_newline', 'fixed:N'"
            )

    def __repr__(self) -> str:
        return f"Segmenter({self.split!r})"

    # -- causal test used by token-level stepping -------------------------------------------
    def ends_step(self, step_text: str, n_tokens: int) -> bool:
        """Whether a step whose text so far is ``step_text`` (``n_tokens`` tokens) is complete.

        This is the causal rule: it looks only at the current step, never ahead.
        """
        if self.fixed is not None:
            return n_tokens >= self.fixed
        assert self.delimiter is not None
        return self.delimiter in step_text

    def ends_step_at(self, text: str, start: int, checked: int, n_tokens: int) -> bool:
        """Incremental :meth:`ends_step` for a step that grows one token at a time.

        Whether the step ``text[start:]`` (``n_tokens`` tokens) is complete, given that it was
        not complete as ``text[start:checked]``. Only the characters after ``checked`` (and the
        few before it that a delimiter can straddle) are read, so checking after every token
        costs time proportional to the new text, not to the step.

        Example:
            >>> seg = Segmenter("\\n\\n")
            >>> seg.ends_step_at("x\\n\\na\\n", 3, 4, 2), seg.ends_step_at("x\\n\\na\\n\\n", 3, 5, 3)
            (False, True)
        """
        if self.fixed is not None:
            return n_tokens >= self.fixed
        assert self.delimiter is not None
        return text.find(self.delimiter, max(start, checked - len(self.delimiter) + 1)) >= 0

    def ends_with_delta(self, tail: str, delta: str, n_tokens: int) -> tuple[bool, str]:
        r"""Incremental check for a sampler that only sees each token's new text.

        ``tail`` is the end of the current step so far (what this returned last time; ``""`` at
        the step's start), ``delta`` the new token's text. Returns whether the step is now
        complete, and the tail to pass next time (at most ``len(delimiter) - 1`` characters),
        so each token costs O(len(delta)) whatever the step's length.

        Example:
            >>> seg = Segmenter("\n\n")
            >>> seg.ends_with_delta("", "a\n", 1), seg.ends_with_delta("\n", "\nb", 2)
            ((False, '\n'), (True, 'b'))
        """
        if self.fixed is not None:
            return n_tokens >= self.fixed, ""
        assert self.delimiter is not None
        window = tail + delta
        keep = len(self.delimiter) - 1
        return self.delimiter in window, (window[-keep:] if keep else "")

    # -- whole-response segmentation --------------------------------------------------------
    def segment(self, text: str, token_char_ends: Sequence[int] | None = None) -> list[Step]:
        """Cut a whole response into steps, in time linear in its length.

        The steps are those the causal rule :meth:`ends_step` finds token by token, but each
        delimiter is searched once from the start of its step instead of rescanning the step
        at every token.

        Args:
            text: The decoded response.
            token_char_ends: For each token, the character offset one past its last character
                (non-decreasing, last value ``len(text)``). ``None`` treats each character as
                a token.

        Returns:
            The steps, in order; empty for an empty response.

        Example:
            >>> [(s.text, s.token_start, s.token_end) for s in
            ...  Segmenter("\\n").segment("ab\\ncd", [2, 3, 5])]
            [('ab\\n', 0, 2), ('cd', 2, 3)]
        """
        if token_char_ends is None:
            ends: Sequence[int] = range(1, len(text) + 1)
        else:
            ends = token_char_ends
            if len(ends) and ends[-1] != len(text):
                raise ValueError(
                    f"token_char_ends[-1]={ends[-1]} does not match len(text)={len(text)}"
                )
        if self.fixed is not None:
            cuts: list[int] = list(range(self.fixed, len(ends), self.fixed))
        else:
            cuts = self._delimiter_cuts(text, token_char_ends)
        if len(ends):
            cuts.append(len(ends))
        steps: list[Step] = []
        tok_start, char_start = 0, 0
        for tok_end in cuts:
            char_end = ends[tok_end - 1]
            steps.append(
                Step(len(steps), text[char_start:char_end], char_start, char_end, tok_start, tok_end)
            )
            tok_start, char_start = tok_end, char_end
        return steps

    def _delimiter_cuts(self, text: str, ends: Sequence[int] | None) -> list[int]:
        """Token index one past each step that a delimiter ends (the last step excluded).

        A step starting at character ``c`` ends at the first token whose text reaches past the
        first delimiter at or after ``c``; the next step starts where that token ends.
        """
        delim = self.delimiter
        assert delim is not None
        cuts: list[int] = []
        n_tok = len(text) if ends is None else len(ends)
        char_start = 0
        while True:
            q = text.find(delim, char_start)
            if q < 0:
                return cuts
            need = q + len(delim)  # the step is complete once a token ends at or past this
            # with one token per character the token is the delimiter's last character
            tok_end = need if ends is None else bisect_left(ends, need) + 1
            if tok_end >= n_tok:
                return cuts  # the last token ends the last step anyway
            cuts.append(tok_end)
            char_start = need if ends is None else ends[tok_end - 1]

    def segment_text(self, text: str) -> list[Step]:
        """Segment with one token per character (no tokenizer)."""
        if self.fixed is not None:
            raise ValueError(f"split {self.split!r} counts tokens: pass token_char_ends")
        return self.segment(text)


class IncrementalDecoder:
    """Decode a growing token sequence one token at a time, in O(1) decode work per token.

    Each token's text is the difference between decoding a short window that ends with it and
    the same window without it, so tokenizers that merge leading spaces or split multi-byte
    characters over several tokens are handled; a token that ends inside a character gets no
    text and the character is credited to the token that completes it.

    Attributes:
        ids: Token ids pushed so far.
        ends: Per token, the character offset one past its text in :attr:`text`.
        text: The decoded text so far.

    Example:
        >>> class Chars:  # a toy tokenizer: one character per id
        ...     def decode(self, ids, **kw): return "".join(map(chr, ids))
        >>> d = IncrementalDecoder(Chars())
        >>> d.extend([104, 105]).text, d.ends
        ('hi', [1, 2])
    """

    _WINDOW = 6

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.ends: list[int] = []
        self._pieces: list[str] = []  # joined on demand: appending to one str copies it each time
        self._n_chars = 0
        self._win = 0  # first id of the decode window
        self._win_len = 0  # characters the window (without pending ids) has produced

    @property
    def text(self) -> str:
        """The decoded text so far."""
        if len(self._pieces) != 1:
            self._pieces[:] = ["".join(self._pieces)]
        return self._pieces[0]

    def _decode(self, a: int, b: int) -> str:
        return self.tokenizer.decode(
            self.ids[a:b], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def push(self, token_id: int) -> str:
        """Append one token; return the new text it completed (possibly empty)."""
        self.ids.append(int(token_id))
        k = len(self.ids)
        piece = self._decode(self._win, k)
        if piece.endswith("\ufffd"):
            self.ends.append(self._n_chars)
            return ""
        delta = piece[self._win_len :]
        self._pieces.append(delta)
        self._n_chars += len(delta)
        self.ends.append(self._n_chars)
        self._win_len = len(piece)
        if k - self._win >= self._WINDOW:
            self._win = k - 2
            self._win_len = len(self._decode(self._win, k))
        return delta

    def extend(self, token_ids: Sequence[int]) -> IncrementalDecoder:
        """Push every id of ``token_ids``; returns ``self``."""
        for t in token_ids:
            self.push(t)
        return self


def token_char_ends(tokenizer: Any, token_ids: Sequence[int]) -> tuple[str, list[int]]:
    """Decode ``token_ids`` and return ``(text, ends)`` with each token's character end offset.

    ``text`` is what :class:`IncrementalDecoder` produces (for the usual byte-level and
    SentencePiece tokenizers it equals ``tokenizer.decode(token_ids)``), and ``ends`` is
    non-decreasing with ``ends[-1] == len(text)``, ready for :meth:`Segmenter.segment`.
    """
    d = IncrementalDecoder(tokenizer).extend(token_ids)
    return d.text, d.ends
