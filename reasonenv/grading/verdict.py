"""The :class:`Verdict` record returned by every grading call."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

#: Answer judged correct because the normalised strings are identical.
EXACT: Final = "exact"
#: Answer judged by value (exact rationals, or within the relative tolerance).
NUMERIC: Final = "numeric"
#: Answer judged by symbolic equality in the worker process.
SYMBOLIC: Final = "symbolic"
#: The answer was compared and found different (or could not be parsed).
MISMATCH: Final = "mismatch"
#: No final answer could be extracted from the response.
NO_ANSWER: Final = "no_answer"
#: The symbolic step exceeded its time budget; the worker was killed and replaced.
TIMEOUT: Final = "timeout"
#: The grader itself failed (worker crash, internal error). Never raised to the caller.
ERROR: Final = "error"
#: The reference could not be parsed; metrics must skip this item.
BAD_REFERENCE: Final = "bad_reference"

REASONS: Final = frozenset(
    {EXACT, NUMERIC, SYMBOLIC, MISMATCH, NO_ANSWER, TIMEOUT, ERROR, BAD_REFERENCE}
)


@dataclass(frozen=True)
class Verdict:
    """Outcome of grading one response against one reference answer.

    Attributes:
        correct: Whether the extracted answer is equivalent to the reference.
        extracted: The raw final answer extracted from the response, ``None`` if none was found.
        reference: The reference exactly as it was passed in.
        pred_normalized: The extracted answer after string normalisation (``None`` if absent).
        ref_normalized: The reference after string normalisation (``None`` if empty).
        reason: How the decision was reached; one of :data:`REASONS`.
        reference_ok: ``False`` when the reference itself cannot be parsed. Metrics must skip
            such items instead of scoring them 0.
        timed_out: ``True`` when the symbolic step hit the hard timeout.
        error: Human-readable detail for errors, timeouts and rejected inputs, else ``None``.
        second_opinion: The math-verify verdict when ``use_math_verify=True`` was requested and
            math-verify answered; ``None`` otherwise.

    Example:
        >>> v = Verdict(correct=True, extracted="5", reference="5", pred_normalized="5",
        ...             ref_normalized="5", reason="exact")
        >>> v.to_dict()["reason"]
        'exact'
    """

    correct: bool
    extracted: str | None
    reference: str
    pred_normalized: str | None
    ref_normalized: str | None
    reason: str
    reference_ok: bool = True
    timed_out: bool = False
    error: str | None = None
    second_opinion: bool | None = None

    @property
    def disagreement(self) -> bool:
        """``True`` when math-verify answered and disagrees with :attr:`correct`.

        Example:
            >>> Verdict(True, "1", "1", "1", "1", "exact", second_opinion=False).disagreement
            True
        """
        return self.second_opinion is not None and self.second_opinion != self.correct

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of all fields (plus ``disagreement``).

        Example:
            >>> sorted(Verdict(False, None, "3", None, "3", "no_answer").to_dict())[:3]
            ['correct', 'disagreement', 'error']
        """
        # Every field is a scalar, so a flat dict is what ``dataclasses.asdict`` would build,
        # without its recursive copy (about 10x the time; called once per graded response).
        d = {name: getattr(self, name) for name in _FIELDS}
        d["disagreement"] = self.disagreement
        return d


_FIELDS: Final = tuple(f.name for f in fields(Verdict))
