"""Final-answer extraction from free-form model output.

Everything here is pure Python, linear-time in the input length and safe to call on every
environment step. Supported answer markers (the one that *starts last* in the text wins):

* ``\\boxed{...}`` / ``\\fbox{...}`` with real brace matching (nested braces work, unbalanced
  or truncated boxes are ignored), and the space form ``\\boxed 5``;
* ``The answer is X`` / ``The final answer is X`` / ``Final answer: X`` / ``Answer: X``;
* GSM8K style ``#### 42``;
* optionally (``last_number_fallback=True``) the last number in the text.
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_RESPONSE_CHARS",
    "clean_text",
    "extract_answer",
    "extract_reference",
    "has_final_answer",
    "match_braces",
]

#: Responses longer than this are cut to their tail (final answers live at the end).
MAX_RESPONSE_CHARS = 100_000

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_ANSWER_RE = re.compile(
    r"(?:\b(?:the\s+)?(?:final\s+)?answer\s+is\b[*_]*\s*:?|\bfinal\s+answer[*_]*\s*:|(?P<bare>\banswer[*_]*\s*:))"
    r"[*_]*[ \t]*(?P<content>[^\n]*)",
    re.IGNORECASE,
)
_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
_NUMBER_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?")
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
_NOT_AN_ANSWER = frozenset(
    "that to not in a an we this what how because when which whether if where why".split()
)


def clean_text(text: object) -> str:
    """Coerce ``text`` to a bounded, printable ``str``.

    Bytes are decoded (invalid sequences replaced), NUL and other control characters are
    dropped, and inputs over :data:`MAX_RESPONSE_CHARS` are cut to their tail.

    Example:
        >>> clean_text(b"The answer is 4\\x00")
        'The answer is 4'
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = "" if text is None else str(text)
    if len(text) > MAX_RESPONSE_CHARS:
        text = text[-MAX_RESPONSE_CHARS:]
    return _CONTROL_RE.sub("", text)


def matching_brace(text: str, open_idx: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_idx``, or None when it never closes.

    Escaped braces (``\\{``, ``\\}``) are literal characters and are not counted.

    Example:
        >>> matching_brace("x{a{b}c}y", 1)
        7
    """
    return match_braces(text).get(open_idx)


def match_braces(text: str) -> dict[int, int]:
    """Map the index of every ``{`` to the index of its matching ``}`` (one linear pass).

    Escaped braces ``\\{`` and ``\\}`` are literal characters in LaTeX and are not counted.
    Unmatched opening braces are absent from the result.

    Example:
        >>> match_braces("a{b{c}}")
        {3: 5, 1: 6}
    """
    result: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            result[stack.pop()] = i
        i += 1
    return result


def _strip_wrappers(ans: str) -> str:
    """Remove presentation wrappers ($..$, \\(..\\), **bold**, a trailing period)."""
    prev = None
    while prev != ans:
        prev = ans
        ans = ans.strip()
        for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**")):
            if len(ans) >= len(left) + len(right) and ans.startswith(left) and ans.endswith(right):
                ans = ans[len(left) : len(ans) - len(right)]
        ans = ans.strip()
        if ans.endswith(".") and not ans.endswith(".."):
            ans = ans[:-1]
        ans = ans.strip().strip("*").strip()
        if ans.startswith("$") and ans.count("$") == 1:
            ans = ans[1:]
        if ans.endswith("$") and ans.count("$") == 1:
            ans = ans[:-1]
    return ans


def _boxed_candidates(text: str, braces: dict[int, int]) -> tuple[int, str] | None:
    """Return ``(start, content)`` of the last complete box, or ``None``."""
    for m in reversed(list(_BOX_RE.finditer(text))):
        j = m.end()
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            end = braces.get(j)
            if end is None:
                continue  # truncated / unbalanced box: ignore it
            return m.start(), text[j + 1 : end]
        if j > m.end():  # space form: "\boxed 5"
            tok = re.match(r"[^\s$]+", text[j:])
            if tok:
                return m.start(), tok.group(0)
    return None


def _is_label(text: str, start: int) -> bool:
    """Whether a bare ``answer:`` at ``start`` is a label ("**Answer:** 5", "My answer: 5").

    Prose such as "We may check our answer: 17*44 = 748" is not: it would override the real
    final answer given before it.
    """
    window = max(0, start - 40)  # a label's prefix is short: bounded work per match
    newline = text.rfind("\n", window, start)
    line = text[newline + 1 if newline >= 0 else window : start].strip(" \t*_#>-")
    if not line or line[-1] in ".!?)":
        return True
    at_line_start = newline >= 0 or window == 0
    return at_line_start and line.lower() in ("the", "my", "our", "the final", "my final")


def _answer_is_candidate(text: str) -> tuple[int, str] | None:
    found: tuple[int, str] | None = None
    for m in _ANSWER_RE.finditer(text):
        if m.group("bare") is not None and not _is_label(text, m.start()):
            continue
        content = m.group("content").strip()
        if "\\boxed" not in content and "\\fbox" not in content:
            cut = _SENTENCE_END_RE.search(content)
            if cut and not content.startswith("$"):
                content = content[: cut.start()]
            elif content.startswith("$") and content.count("$") >= 2:
                content = content[: content.index("$", 1) + 1]
        first = re.split(r"\W+", content.lower().lstrip("*_ "), maxsplit=1)[0] if content else ""
        if not content or len(content) > 300 or first in _NOT_AN_ANSWER:
            continue
        found = (m.start(), content)
    return found


def _hash_candidate(text: str) -> tuple[int, str] | None:
    found: tuple[int, str] | None = None
    for m in _HASH_RE.finditer(text):
        if m.group(1).strip():
            found = (m.start(), m.group(1).strip())
    return found


def _extract(text: str, _depth: int = 0) -> str | None:
    braces = match_braces(text)
    candidates = [
        c
        for c in (
            _boxed_candidates(text, braces),
            _answer_is_candidate(text),
            _hash_candidate(text),
        )
        if c is not None
    ]
    if not candidates:
        return None
    _, ans = max(candidates, key=lambda c: c[0])
    if ("\\boxed" in ans or "\\fbox" in ans) and len(ans) < len(text) and _depth < 3:
        inner = _extract(ans, _depth + 1)  # a box inside an "answer is" sentence
        if inner is not None:
            ans = inner
    if len(ans) > 5 * 2_000:
        return ans  # far too long to be an answer; the grader rejects it, don't spend time on it
    ans = _strip_wrappers(ans)
    return ans or None


def extract_answer(text: str, *, last_number_fallback: bool = False) -> str | None:
    """Extract the final answer from a model response.

    The latest-starting marker wins: the last complete ``\\boxed{}``/``\\fbox{}``, the last
    "The answer is X", or the last ``#### n``. Presentation wrappers (``$``, ``**``, a trailing
    period) are stripped; everything else is left for normalisation.

    Args:
        text: The model response. Non-``str`` input is coerced, overly long input is cut to
            its last :data:`MAX_RESPONSE_CHARS` characters.
        last_number_fallback: If no marker is found, return the last number in the text.

    Returns:
        The raw answer string, or ``None`` if there is none.

    Example:
        >>> extract_answer(r"so \\boxed{\\frac{1}{2}} and finally \\boxed{3}.")
        '3'
        >>> extract_answer("We get 7 apples, then 9.", last_number_fallback=True)
        '9'
    """
    text = clean_text(text)
    ans = _extract(text)
    if ans is None and last_number_fallback:
        nums = _NUMBER_RE.findall(text)
        ans = nums[-1] if nums else None
    return ans


def extract_reference(reference: str) -> str:
    """Return the answer part of a reference (its last box / ``####`` if it has one).

    Example:
        >>> extract_reference(r"\\boxed{12}")
        '12'
        >>> extract_reference("3/4")
        '3/4'
    """
    reference = clean_text(reference)
    ans = _extract(reference) if has_final_answer(reference) else None
    return ans if ans is not None else _strip_wrappers(reference)


def has_final_answer(text: str) -> bool:
    """Cheap check whether ``text`` already contains a final answer.

    True for a complete (brace-balanced) ``\\boxed{..}``/``\\fbox{..}``, "The answer is X"
    with a non-empty X, or ``#### n``: exactly when :func:`extract_answer` (without the
    last-number fallback) finds an answer. The environments end episodes by the stricter,
    prefix-monotone rule of :mod:`reasonenv.envs.termination`, which also waits for the end of
    a "The answer is" line so that a streamed "1" is not taken for "12".

    Example:
        >>> has_final_answer(r"thus \\boxed{\\frac{1}{2}}")
        True
        >>> has_final_answer(r"thus \\boxed{\\frac{1}{2")
        False
    """
    return _extract(clean_text(text)) is not None
