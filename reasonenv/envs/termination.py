"""When does a response hold its final answer?  A causal, prefix-monotone rule.

:func:`final_answer_end` returns the smallest ``p`` such that ``text[:p]`` already contains a
complete final-answer marker. Completion depends only on the characters up to ``p``, so for
every prefix ``q`` of the text: ``final_answer_end(text[:q]) is not None`` exactly when
``q >= final_answer_end(text)``. That is what lets the step-by-step env and the whole-response
fast path stop at the same step.

Markers:
    * ``\\boxed{...}`` / ``\\fbox{...}``: complete at the matching closing brace.
    * ``\\boxed 5`` (space form): complete at the first whitespace after the token.
    * ``The answer is X`` / ``The final answer is X``: complete at the end of that line
      (a newline must follow; an unfinished last line is completed by EOS instead).
    * GSM8K ``#### n``: complete at the end of that line.
"""

from __future__ import annotations

import re

from reasonenv.grading.extract import matching_brace

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_SPACE = re.compile(r"\\boxed +([^\s{$][^\s$]*)(?=[\s$])")
_PHRASE = re.compile(r"(?i)\bthe (?:final )?answer is\b[^\n]*\S[^\n]*\n")
_HASHES = re.compile(r"####[ \t]*\S[^\n]*\n")


def _box_end(text: str) -> int | None:
    m = _BOX.search(text)
    if m is None:
        return None
    # An unbalanced first box: a later box cannot close before this one's text ends either.
    close = matching_brace(text, m.end() - 1)
    return None if close is None else close + 1


def final_answer_end(text: str) -> int | None:
    """Character offset at which the first complete final answer ends, or None.

    Example:
        >>> final_answer_end("so \\\\boxed{\\\\frac{1}{2}} done")
        22
        >>> final_answer_end("The answer is 5") is None  # line not finished yet
        True
    """
    ends = []
    b = _box_end(text)
    if b is not None:
        ends.append(b)
    for pat in (_BOX_SPACE, _PHRASE, _HASHES):
        m = pat.search(text)
        if m:
            ends.append(m.end())
    return min(ends) if ends else None


def has_final_answer(text: str) -> bool:
    """True when ``text`` holds a complete final-answer marker (see :func:`final_answer_end`)."""
    return final_answer_end(text) is not None
