"""The verified outcome as a reward term, with an optional format penalty.

``OutcomeShaper`` hands out o_i in {0, 1} (the grader's verdict) at the end of each episode. A
non-negative ``format_penalty`` is subtracted when the response has no final answer (verdict
reason ``"no_answer"``) or contains more than one ``\\boxed{}``, so every term lies in
``[-format_penalty, 1]``.

Example:
    >>> from reasonenv.shaping.base import EpisodeRecord
    >>> from reasonenv.problems.base import Problem
    >>> p = Problem(id="demo", question="1+1?", answer="2", source="demo")
    >>> rec = EpisodeRecord(0, 0, p, "1+1?", (r"\\boxed{2}",), (None,), (None,), None,
    ...                     1.0, {"reason": "exact"}, True)
    >>> OutcomeShaper().episode_end([rec])
    [1.0]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from reasonenv.grading.extract import match_braces
from reasonenv.shaping.base import EpisodeRecord, Shaper

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def count_boxed(text: str) -> int:
    """Count the complete top-level ``\\boxed{..}`` / ``\\fbox{..}`` answers in ``text``.

    Braces are matched by scanning (nested braces such as ``\\boxed{\\frac{1}{2}}`` count once),
    a box nested inside another box is part of the outer one, a truncated box with no closing
    brace does not count, and the space form ``\\boxed 5`` counts as one.

    Args:
        text: A response.

    Returns:
        The number of complete top-level boxes.

    Example:
        >>> count_boxed(r"\\boxed{\\frac{1}{2}} or \\boxed{3}")
        2
        >>> count_boxed(r"\\boxed{\\boxed{1}} and \\boxed{2")
        1
    """
    count, pos = 0, 0
    braces: dict[int, int] | None = None  # every brace pair, found once (linear time)
    while True:
        m = _BOX_RE.search(text, pos)
        if m is None:
            return count
        j = m.end()
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            if braces is None:
                braces = match_braces(text)
            end = braces.get(j)
            if end is None:  # truncated box: not an answer, and nothing after it closes
                return count
            count += 1
            pos = end + 1  # boxes inside this one belong to it
        elif j > m.end() and j < len(text) and not text[j].isspace():  # "\boxed 5"
            count += 1
            pos = j
        else:
            pos = m.end()


class OutcomeShaper(Shaper):
    """The verified outcome o_i at the last step, minus an optional format penalty.

    Hook point: episode end. Enters: ``"reward"`` (the term IS the outcome reward that group
    normalisation works on). Services: none (the env grades and puts the result in
    ``record.outcome`` / ``record.verdict``).

    Example:
        >>> from reasonenv.shaping.base import EpisodeRecord
        >>> from reasonenv.problems.base import Problem
        >>> p = Problem(id="demo", question="1+1?", answer="2", source="demo")
        >>> rec = EpisodeRecord(0, 0, p, "", ("I think 3",), (None,), (None,), None,
        ...                     0.0, {"reason": "no_answer"}, True)
        >>> OutcomeShaper(OutcomeShaper.Config(format_penalty=0.1)).episode_end([rec])
        [-0.1]
    """

    name = "outcome"
    enters = "reward"
    services = ()
    bounds = (0.0, 1.0)  # with the default format_penalty; instances set (-format_penalty, 1)

    @dataclass
    class Config:
        """Options of the outcome reward."""

        format_penalty: float = 0.0  # subtracted for no final answer or several \boxed{}

        def __post_init__(self) -> None:
            if not self.format_penalty >= 0.0:
                raise ValueError(
                    f"outcome: format_penalty must be >= 0, got {self.format_penalty!r}"
                )

    def __init__(self, config: Config | None = None, services: object = None) -> None:
        super().__init__(config, services)
        self.bounds = (-float(self.config.format_penalty), 1.0)  # type: ignore[misc]

    def malformed(self, record: EpisodeRecord) -> bool:
        """Whether ``record`` gets the format penalty: no final answer, or more than one box.

        Example:
            >>> from reasonenv.shaping.base import EpisodeRecord
            >>> from reasonenv.problems.base import Problem
            >>> p = Problem(id="d", question="q", answer="1", source="d")
            >>> rec = EpisodeRecord(0, 0, p, "", (r"\\boxed{1} \\boxed{2}",), (None,), (None,),
            ...                     None, 0.0, {"reason": "mismatch"}, True)
            >>> OutcomeShaper().malformed(rec)
            True
        """
        verdict = record.verdict or {}
        if verdict.get("reason") == "no_answer":
            return True
        return count_boxed(record.response) > 1

    def episode_end(self, episodes: Sequence[EpisodeRecord]) -> list[float]:
        """Per episode: ``outcome - format_penalty * malformed``."""
        penalty = float(self.config.format_penalty)
        out: list[float] = []
        for rec in episodes:
            term = float(rec.outcome)
            if penalty and self.malformed(rec):
                term -= penalty
            out.append(term)
        return out
