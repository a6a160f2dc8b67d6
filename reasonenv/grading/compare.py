"""The equivalence ladder: structure -> string -> numeric -> symbolic.

The same structural walk runs twice: in-process with the cheap leaf comparator (no sympy; may
answer "don't know"), and in the worker process with the symbolic comparator. Structures are
compared strictly:

* sets / bare lists ("find all"): same size and a one-to-one matching of elements;
* tuples and intervals: same length, same bracket types, element-wise in order;
* matrices: same shape, element-wise; a parenthesised tuple also matches a row/column vector;
* unions: order-free over their parts;
* a single value matches a one-element set (``{3}`` vs ``3``), nothing else crosses kinds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

from reasonenv.grading.normalize import strip_assignment
from reasonenv.grading.parse import (
    Leaf,
    MatrixNode,
    Node,
    SeqNode,
    SetNode,
    UnionNode,
    parse_number,
    parse_structure,
)
from reasonenv.grading.verdict import EXACT, MISMATCH, NUMERIC, SYMBOLIC

__all__ = [
    "DEFAULT_REL_TOL",
    "ZERO_ABS_TOL",
    "Decision",
    "cheap_leaf",
    "compare",
    "fractions_close",
    "leaf_is_cheap",
    "leaves",
    "reference_is_cheap",
]

#: Relative tolerance used when at least one side is inexact (irrational / non-terminating).
DEFAULT_REL_TOL = 1e-6
#: Absolute tolerance used *only* when one side is exactly zero (and the comparison is inexact).
ZERO_ABS_TOL = 1e-12

_RANK = {EXACT: 0, NUMERIC: 1, SYMBOLIC: 2}
_MC_RE = re.compile(r"[A-Ja-j]")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z' -]+")


@dataclass(frozen=True)
class Decision:
    """A definite comparison outcome: ``correct``, the ladder step that decided it, and an
    optional ``note`` saying why the decision is not an ordinary one (it becomes
    :attr:`Verdict.error`), e.g. the prediction could not be parsed.

    Example:
        >>> Decision(False, "mismatch", note="cannot parse 'x+'").note
        "cannot parse 'x+'"
    """

    correct: bool
    reason: str
    note: str | None = field(default=None, compare=False, repr=False)


LeafFn = Callable[[str, str], "Decision | None"]


def _terminating(q: Fraction) -> bool:
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def fractions_close(a: Fraction, b: Fraction, rel_tol: float = DEFAULT_REL_TOL) -> bool:
    """Compare two exact rationals with the grading tolerance rule.

    Terminating decimals/integers must match exactly (``1e-8`` != ``2e-8``, ``1000001`` !=
    ``1000000``). Only if one side is non-terminating (e.g. ``1/3``) is the relative tolerance
    applied, and an absolute floor is used only when one side is exactly zero.

    Example:
        >>> fractions_close(Fraction(1, 3), Fraction("0.33333333")), fractions_close(
        ...     Fraction("1e-8"), Fraction("2e-8"))
        (True, False)
    """
    if a == b:
        return True
    if _terminating(a) and _terminating(b):
        return False
    if a == 0 or b == 0:
        return abs(a - b) <= Fraction(ZERO_ABS_TOL)
    return abs(a - b) <= Fraction(rel_tol) * max(abs(a), abs(b))


def _split_percent(s: str) -> tuple[str, bool]:
    if s.endswith("%"):
        return s[:-1], True
    return s, False


_ARITH_SIDE_RE = re.compile(r"(?:[\d\s+\-*/().]|\\times|\\cdot|\\div)+")


def cheap_leaf(pred: str, ref: str, rel_tol: float = DEFAULT_REL_TOL) -> Decision | None:
    """In-process leaf comparison: strings, words, multiple choice, plain numbers.

    Returns ``None`` when only the symbolic step can decide.

    Example:
        >>> cheap_leaf("0.5", r"\\frac{1}{2}")
        Decision(correct=True, reason='numeric')
        >>> cheap_leaf("x+1", "1+x") is None
        True
    """
    if pred == ref:
        return Decision(True, EXACT)
    if _MC_RE.fullmatch(ref) and _MC_RE.fullmatch(pred) and ref.isupper():
        return Decision(pred.upper() == ref, EXACT if pred.upper() == ref else MISMATCH)
    if len(ref) > 1 and _WORD_RE.fullmatch(ref) and pred.casefold() == ref.casefold():
        return Decision(True, EXACT)
    if "=" in pred and "=" not in ref:
        # "8+6=14" states its result last: a chain whose earlier sides are plain arithmetic is
        # graded by its last side (a side with a variable keeps it an equation).
        sides = pred.split("=")
        if all(_ARITH_SIDE_RE.fullmatch(x) for x in sides[:-1]) and parse_number(sides[-1]) is not None:
            return cheap_leaf(sides[-1], ref, rel_tol)
    p_var, p_val = strip_assignment(pred)
    r_var, r_val = strip_assignment(ref)
    if p_var is not None and r_var is not None and p_var != r_var:
        return None  # x=3 vs y=3: two different equations, let the grammar decide
    if p_var is not None or r_var is not None:
        if "=" in (pred if p_var is None else ref):
            return None  # "y=2x+1" vs "2x-y+1=0": compare as equations
        return cheap_leaf(p_val, r_val, rel_tol)
    p_txt, p_pct = _split_percent(p_val)
    r_txt, r_pct = _split_percent(r_val)
    a, b = parse_number(p_txt), parse_number(r_txt)
    if a is None or b is None:
        return None
    ok = fractions_close(a, b, rel_tol)
    if not ok and p_pct != r_pct:
        ok = fractions_close(a / 100, b, rel_tol) if p_pct else fractions_close(a, b / 100, rel_tol)
    return Decision(ok, NUMERIC if ok else MISMATCH)


def _combine(decisions: list[Decision | None]) -> Decision | None:
    wrong = [d for d in decisions if d is not None and not d.correct]
    if wrong:
        return Decision(False, MISMATCH, note=next((d.note for d in wrong if d.note), None))
    if any(d is None for d in decisions):
        return None
    reason = max((d.reason for d in decisions if d is not None), key=_RANK.get, default=EXACT)
    return Decision(True, reason)


_MAX_ELEMENTS = 100


def _match_unordered(p: tuple[Node, ...], r: tuple[Node, ...], leaf: LeafFn) -> Decision | None:
    """One-to-one matching (augmenting paths, comparisons computed lazily) of pred to ref."""
    if len(p) != len(r):
        return Decision(False, MISMATCH)
    if len(p) > _MAX_ELEMENTS:  # bound the quadratic work: exact multiset equality only
        same = sorted(map(repr, p)) == sorted(map(repr, r))
        return Decision(same, EXACT if same else MISMATCH)
    table: dict[tuple[int, int], Decision | None] = {}

    def cell(i: int, j: int) -> Decision | None:
        if (i, j) not in table:
            table[i, j] = _compare_nodes(p[i], r[j], leaf)
        return table[i, j]

    match_of_ref: list[int | None] = [None] * len(r)

    def augment(i: int, seen: set[int]) -> bool:
        for j in sorted(range(len(r)), key=lambda j: j != i):  # try the same position first
            if j in seen:
                continue
            d = cell(i, j)
            if d is None or not d.correct:
                continue
            seen.add(j)
            k = match_of_ref[j]
            if k is None or augment(k, seen):
                match_of_ref[j] = i
                return True
        return False

    if all(augment(i, set()) for i in range(len(p))):
        return _combine([table[i, j] for j, i in enumerate(match_of_ref) if i is not None])
    if any(cell(i, j) is None for i in range(len(p)) for j in range(len(r))):
        return None
    notes = [d.note for d in table.values() if d is not None and d.note]
    return Decision(False, MISMATCH, note=notes[0] if notes else None)


def _as_vector(node: Node) -> tuple[Node, ...] | None:
    if isinstance(node, MatrixNode):
        if len(node.rows) == 1:
            return node.rows[0]
        if all(len(row) == 1 for row in node.rows):
            return tuple(row[0] for row in node.rows)
    return None


def _compare_nodes(p: Node, r: Node, leaf: LeafFn) -> Decision | None:
    if isinstance(p, Leaf) and isinstance(r, Leaf):
        return leaf(p.text, r.text)
    if isinstance(r, SetNode) and not isinstance(p, SetNode | UnionNode):
        return (
            _compare_nodes(SetNode((p,)), r, leaf)
            if len(r.items) == 1
            else Decision(False, MISMATCH)
        )
    if isinstance(p, SetNode) and not isinstance(r, SetNode | UnionNode):
        return (
            _compare_nodes(p, SetNode((r,)), leaf)
            if len(p.items) == 1
            else Decision(False, MISMATCH)
        )
    if isinstance(p, SetNode) and isinstance(r, SetNode):
        return _match_unordered(p.items, r.items, leaf)
    if isinstance(p, UnionNode) and isinstance(r, UnionNode):
        return _match_unordered(p.parts, r.parts, leaf)
    if isinstance(p, SeqNode) and isinstance(r, SeqNode):
        if (p.open, p.close) != (r.open, r.close) or len(p.items) != len(r.items):
            return Decision(False, MISMATCH)
        return _combine([_compare_nodes(x, y, leaf) for x, y in zip(p.items, r.items, strict=True)])
    if isinstance(p, MatrixNode) and isinstance(r, MatrixNode):
        if [len(row) for row in p.rows] != [len(row) for row in r.rows]:
            return Decision(False, MISMATCH)
        pairs = [
            (x, y)
            for pr, rr in zip(p.rows, r.rows, strict=True)
            for x, y in zip(pr, rr, strict=True)
        ]
        return _combine([_compare_nodes(x, y, leaf) for x, y in pairs])
    for seq, mat in ((p, r), (r, p)):
        vec = _as_vector(mat)
        if isinstance(seq, SeqNode) and seq.open == "(" and seq.close == ")" and vec is not None:
            if len(vec) != len(seq.items):
                return Decision(False, MISMATCH)
            pv, rv = (seq.items, vec) if seq is p else (vec, seq.items)
            return _combine([_compare_nodes(x, y, leaf) for x, y in zip(pv, rv, strict=True)])
    if isinstance(p, Leaf) or isinstance(r, Leaf):
        # A leaf against a structure: the leaf side may still be one grammar object (e.g.
        # "\mathbb{R}" vs an interval). Only the symbolic comparator can say; cheap says no.
        return Decision(False, MISMATCH)
    return Decision(False, MISMATCH)


def leaves(node: Node) -> list[str]:
    """All leaf texts of a structure, in order.

    Example:
        >>> leaves(parse_structure(r"\\{1,(2,3)\\}"))
        ['1', '2', '3']
    """
    if isinstance(node, Leaf):
        return [node.text]
    if isinstance(node, SeqNode | SetNode):
        return [t for item in node.items for t in leaves(item)]
    if isinstance(node, UnionNode):
        return [t for part in node.parts for t in leaves(part)]
    return [t for row in node.rows for item in row for t in leaves(item)]


def leaf_is_cheap(text: str) -> bool:
    """Whether a leaf is a plain number, word or choice letter (valid without the grammar).

    Example:
        >>> leaf_is_cheap("x=2.5%"), leaf_is_cheap("Monday"), leaf_is_cheap(r"\\sqrt{2}")
        (True, True, False)
    """
    _, val = strip_assignment(text)
    val = _split_percent(val)[0]
    return parse_number(val) is not None or bool(_WORD_RE.fullmatch(val) or _MC_RE.fullmatch(val))


def reference_is_cheap(ref_norm: str) -> bool:
    """Whether the reference is certainly valid without the grammar (numbers / words only).

    Example:
        >>> reference_is_cheap("(1,2.5)"), reference_is_cheap(r"\\frac{\\sqrt{2}}{2}")
        (True, False)
    """
    return bool(ref_norm) and all(leaf_is_cheap(t) for t in leaves(parse_structure(ref_norm)))


def compare(pred_norm: str, ref_norm: str, leaf: LeafFn) -> Decision | None:
    """Compare two normalised answers structurally using ``leaf`` for single expressions.

    Args:
        pred_norm: Normalised predicted answer.
        ref_norm: Normalised reference answer.
        leaf: Leaf comparator returning a :class:`Decision` or ``None`` (unknown).

    Returns:
        A :class:`Decision`, or ``None`` if ``leaf`` could not decide some element.

    Example:
        >>> compare("2,1", "1,2", cheap_leaf)
        Decision(correct=True, reason='exact')
        >>> compare("1,2", "1", cheap_leaf)
        Decision(correct=False, reason='mismatch')
    """
    if pred_norm == ref_norm:
        return Decision(True, EXACT)
    return _compare_nodes(parse_structure(pred_norm), parse_structure(ref_norm), leaf)
