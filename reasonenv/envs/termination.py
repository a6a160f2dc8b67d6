"""When does a response hold its final answer?  A causal, prefix-monotone rule.

:func:`final_answer_end` returns the smallest ``p`` such that ``text[:p]`` already contains a
complete final-answer marker. Completion depends only on the characters up to ``p`` (the space
form needs one more, the whitespace that ends it), so a text that has a final answer keeps it
as it grows, with the same end. That is what lets the step-by-step env and the whole-response
fast path stop at the same step.

Markers (the first complete one ends the search):
    * ``\\boxed{...}`` / ``\\fbox{...}``: complete at the brace that closes the FIRST such box
      (escaped braces ``\\{`` ``\\}`` do not count); a first box that never closes hides
      every later marker of this kind, since those sit inside it.
    * ``\\boxed 5`` (space form): complete at the first whitespace or ``$`` after the token.
    * ``The answer is X`` / ``The final answer is X``: complete at the end of that line
      (a newline must follow; an unfinished last line is completed by EOS instead).
    * GSM8K ``#### n``: complete at the end of that line.

Both paths read the text through :class:`FinalAnswerScan`, which scans each character once
however the text arrives (whole, or one step at a time) and keeps only what it needs to resume:
an open box's brace depth, an answer line still waiting for its newline, a marker cut off by
the end of the text. Checking after every step therefore costs O(total length), not O(length)
per step.
"""

from __future__ import annotations

import re

# \boxed{ / \fbox{, or the start of one cut off by the end of the text: the whole word and
# only whitespace up to the end (group "word" without "open"), or a prefix of the word.
_BOX_SEEK = re.compile(
    r"\\(?:(?P<word>boxed|fbox)\s*(?:(?P<open>\{)|\Z)|(?:b(?:o(?:x(?:ed?)?)?)?|f(?:b(?:ox?)?)?)?\Z)"
)
# Inside a box: an escape (a backslash and the character it escapes, or a backslash at the
# end whose character is still to come) or a brace.
_BRACE_OR_ESCAPE = re.compile(r"\\.?|[{}]", re.DOTALL)
# "\boxed " starting the space form, or a prefix of "\boxed" cut off by the end of the text.
_BOX_SPACE_SEEK = re.compile(r"\\(?:(?P<space>boxed )|(?:b(?:o(?:x(?:ed?)?)?)?)?\Z)")
_BOX_SPACE_FIRST = re.compile(r"[^\s{$]")  # first character of the space form's token
_RUN = re.compile(r"[^\s$]*")  # the rest of that token
_PHRASE_HEAD = re.compile(r"(?i)\bthe (?:final )?answer is\b")
_PHRASE_HEAD_MAX = len("the final answer is")
_WS = re.compile(r"\s*")
_SPACES = re.compile(r" *")
_BLANKS = re.compile(r"[ \t]*")
_NONSPACE = re.compile(r"\S")

_SEEK, _WAIT, _TAIL = 0, 1, 2  # marker modes: find a start / start cut off at the end / finish it


class _Marker:
    """One kind of marker: a mode, a position to resume from and at most one more field."""

    __slots__ = ("mode", "pos")

    def clone(self) -> _Marker:
        new = object.__new__(type(self))
        new.mode, new.pos = self.mode, self.pos
        for name in type(self).__slots__:  # the subclass's own field
            setattr(new, name, getattr(self, name))
        return new

    def scan(self, text: str) -> int | None:
        """Read ``text`` from where the last call stopped; the marker's end once complete."""
        raise NotImplementedError


class _Box(_Marker):
    """``\\boxed{`` / ``\\fbox{``: complete one past the brace that closes the first box."""

    __slots__ = ("depth",)

    def __init__(self) -> None:
        self.mode, self.pos, self.depth = _SEEK, 0, 0  # _WAIT: whitespace after the word

    def scan(self, text: str) -> int | None:
        n = len(text)
        if self.mode == _WAIT:
            k = _WS.match(text, self.pos).end()
            if k == n:
                self.pos = n
                return None
            if text[k] == "{":
                self.mode, self.pos, self.depth = _TAIL, k + 1, 1
            else:  # not a box; no backslash since the word, so the search resumes here
                self.mode, self.pos = _SEEK, k
        if self.mode == _SEEK:
            m = _BOX_SEEK.search(text, self.pos)
            if m is None:
                self.pos = n
                return None
            if m.group("open"):
                self.mode, self.pos, self.depth = _TAIL, m.end(), 1
            elif m.group("word"):
                self.mode, self.pos = _WAIT, n
                return None
            else:  # a prefix of the word at the end: look at it again next time
                self.pos = m.start()
                return None
        pos = self.pos
        for m in _BRACE_OR_ESCAPE.finditer(text, pos):
            c = m.group()
            if c == "{":
                self.depth += 1
            elif c == "}":
                self.depth -= 1
                if self.depth == 0:
                    return m.end()
            elif len(c) == 1:  # a backslash at the end escapes the next text's first char
                self.pos = n + 1
                return None
        self.pos = max(pos, n)
        return None


class _BoxSpace(_Marker):
    """``\\boxed 5``: complete at the whitespace or ``$`` that ends the token."""

    __slots__ = ()

    def __init__(self) -> None:
        self.mode, self.pos = _SEEK, 0  # _WAIT: spaces after "\boxed"; _TAIL: in the token

    def scan(self, text: str) -> int | None:
        n = len(text)
        pos = self.pos
        while True:
            if self.mode == _SEEK:
                m = _BOX_SPACE_SEEK.search(text, pos)
                if m is None:
                    self.pos = n
                    return None
                if m.group("space") is None:  # a prefix of "\boxed" at the end
                    self.pos = m.start()
                    return None
                self.mode, pos = _WAIT, m.end()
            if self.mode == _WAIT:
                pos = _SPACES.match(text, pos).end()
                if pos == n:
                    self.pos = n
                    return None
                if _BOX_SPACE_FIRST.match(text, pos) is None:
                    self.mode = _SEEK  # no backslash since "\boxed": resume here
                    continue
                self.mode, pos = _TAIL, pos + 1
            pos = _RUN.match(text, pos).end()
            if pos < n:
                return pos
            self.pos = n
            return None


class _Phrase(_Marker):
    """``The (final) answer is X``: complete one past the newline that ends the line."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.mode, self.pos, self.seen = _SEEK, 0, False  # _TAIL: in the line; seen: non-space

    def scan(self, text: str) -> int | None:
        n = len(text)
        while True:
            if self.mode == _SEEK:
                m = _PHRASE_HEAD.search(text, self.pos)
                if m is None:  # a head cut off by the end starts in its last few characters
                    self.pos = max(self.pos, n - _PHRASE_HEAD_MAX)
                    return None
                if m.end() == n:  # the closing \b depends on the next character
                    self.pos = m.start()
                    return None
                self.mode, self.pos, self.seen = _TAIL, m.end(), False
            nl = text.find("\n", self.pos)
            stop = n if nl < 0 else nl
            if not self.seen and _NONSPACE.search(text, self.pos, stop) is not None:
                self.seen = True
            if nl < 0:
                self.pos = n
                return None
            if self.seen:
                return nl + 1
            self.mode, self.pos = _SEEK, nl + 1  # a blank rest of line: no answer on this line


class _Hashes(_Marker):
    """GSM8K ``#### n``: complete one past the newline that ends the line."""

    __slots__ = ("start",)

    def __init__(self) -> None:
        self.mode, self.pos, self.start = _SEEK, 0, 0  # _WAIT: blanks after "####"; _TAIL: line

    def scan(self, text: str) -> int | None:
        n = len(text)
        while True:
            if self.mode == _TAIL:
                nl = text.find("\n", self.pos)
                if nl < 0:
                    self.pos = n
                    return None
                return nl + 1
            if self.mode == _SEEK:
                s = text.find("####", self.pos)
                if s < 0:
                    self.pos = max(self.pos, n - 3)
                    return None
                self.mode, self.start, self.pos = _WAIT, s, s + 4
            k = _BLANKS.match(text, self.pos).end()
            if k == n:
                self.pos = n
                return None
            if _NONSPACE.match(text, k) is not None:
                self.mode, self.pos = _TAIL, k + 1
            else:  # "####" followed by a newline or other whitespace: try the next "####"
                self.mode, self.pos = _SEEK, self.start + 1


class FinalAnswerScan:
    """Where the first final answer ends in a growing text, scanning each character once.

    A value: :meth:`advance` returns the state after reading more text and leaves ``self``
    unchanged, so an episode can keep the state of its last accepted step and drop a failed one.

    Attributes:
        end: :func:`final_answer_end` of the text read so far (None while there is none).

    Example:
        >>> scan = FinalAnswerScan().advance("So \\\\boxed{x^")
        >>> scan.end is None
        True
        >>> scan.advance("So \\\\boxed{x^{2}} and more").end
        16
    """

    __slots__ = ("end", "_markers", "_read")

    def __init__(self) -> None:
        self.end: int | None = None
        self._markers: tuple[_Box, _BoxSpace, _Phrase, _Hashes] = (
            _Box(), _BoxSpace(), _Phrase(), _Hashes()
        )
        self._read = 0

    def advance(self, text: str) -> FinalAnswerScan:
        """The scan after reading ``text``, which must extend the text read before.

        Only the characters after the previous text (and the few a cut-off marker spans) are
        read. Once a final answer is found it stays found: more text does not move its end.

        Raises:
            ValueError: if ``text`` is shorter than the text read before.
        """
        if len(text) < self._read:
            raise ValueError(
                f"FinalAnswerScan.advance needs the text so far: got {len(text)} characters "
                f"after {self._read}"
            )
        if self.end is not None:
            return self
        nxt = FinalAnswerScan.__new__(FinalAnswerScan)
        nxt._markers = tuple(m.clone() for m in self._markers)  # type: ignore[assignment]
        ends = [e for m in nxt._markers if (e := m.scan(text)) is not None]
        nxt.end = min(ends) if ends else None
        nxt._read = len(text)
        return nxt


def final_answer_end(text: str) -> int | None:
    """Character offset at which the first complete final answer ends, or None.

    Linear in ``len(text)``.

    Example:
        >>> final_answer_end("so \\\\boxed{\\\\frac{1}{2}} done")
        22
        >>> final_answer_end("The answer is 5") is None  # line not finished yet
        True
        >>> final_answer_end("The answer is 5\\n#### 5\\n")
        16
    """
    return FinalAnswerScan().advance(text).end


def has_final_answer(text: str) -> bool:
    """True when ``text`` holds a complete final-answer marker (see :func:`final_answer_end`).

    Example:
        >>> has_final_answer("#### 42\\n"), has_final_answer("#### 42")
        (True, False)
    """
    return final_answer_end(text) is not None
