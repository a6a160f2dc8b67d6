"""Symbolic leaf comparison (runs inside the worker process only; imports sympy).

Never imported by ``import reasonenv.grading``: the parent process stays sympy-free.
"""

from __future__ import annotations

import random
import re
from typing import Any

import sympy
from sympy.core.relational import Relational

from reasonenv.grading.canonical import Key, canonical_key, key_value, log2_bound
from reasonenv.grading.compare import (
    DEFAULT_REL_TOL,
    ZERO_ABS_TOL,
    Decision,
    cheap_leaf,
    compare,
    fractions_close,
    leaf_is_cheap,
    leaves,
)
from reasonenv.grading.normalize import strip_assignment
from reasonenv.grading.parse import ParseError, parse_structure, to_sympy
from reasonenv.grading.verdict import MISMATCH, NUMERIC, SYMBOLIC

__all__ = ["BadReference", "check_reference", "symbolic_compare"]


_LONG_WORD_RE = re.compile(r"[A-Za-z]{3,}")
#: Values above ``2^MAX_LOG2`` (about 300,000 digits) are not computed: they are compared by
#: their expression trees instead (see :mod:`reasonenv.grading.canonical`).
MAX_LOG2 = 1_000_000


class BadReference(ValueError):
    """The reference answer cannot be parsed by the grammar."""


def _is_terminating_rational(x: Any) -> bool:
    if not isinstance(x, sympy.Rational):
        return False
    q = int(x.q)
    for p in (2, 5):
        while q % p == 0:
            q //= p
    return q == 1


def _is_zero(expr: Any) -> bool:
    """Prove ``expr == 0`` (cheap rewrites first, then simplify)."""
    if expr == 0:
        return True
    for fn in (sympy.expand, sympy.simplify):
        try:
            if fn(expr) == 0:
                return True
        except (TypeError, ValueError, AttributeError, NotImplementedError):
            return False
    return False


def _numeric(x: Any) -> Any:
    value = sympy.N(x, 30)
    return value if value.is_number and value.is_finite else None


def _try_numeric(x: Any) -> Any:
    try:
        return _numeric(x)
    except (TypeError, ValueError, AttributeError, NotImplementedError, ZeroDivisionError) as exc:
        if _too_large(exc):
            raise
        return None


def _numbers_close(a: Any, b: Any, rel_tol: float) -> bool:
    av, bv = _numeric(a), _numeric(b)
    if av is None or bv is None:
        return False
    diff = abs(av - bv)
    if av == 0 or bv == 0:
        return bool(diff <= ZERO_ABS_TOL)
    return bool(diff <= rel_tol * max(abs(av), abs(bv)))


def _too_large(exc: BaseException) -> bool:
    """Whether ``exc`` means "this value is too big to compute", not a grading bug."""
    if isinstance(exc, OverflowError | MemoryError):
        return True
    return isinstance(exc, ValueError) and "digits" in str(exc)  # int <-> str digit limit


def _check_size(*exprs: Any) -> None:
    """Raise ``OverflowError`` if a constant tree's value is too large to compute."""
    for expr in exprs:
        bits = log2_bound(expr)
        if bits > MAX_LOG2:
            raise OverflowError(f"value of about 2^{bits:.3g} is too large to compute")


def _at(expr: Any, point: dict[Any, Any]) -> Any:
    with sympy.evaluate(False):  # substitute only; exact powers are not expanded here
        return expr.subs(point)


def _random_points_differ(a: Any, b: Any, symbols: set[Any]) -> bool:
    """Fast rejection: evaluate ``a - b`` at random points; True if clearly non-zero.

    Raises:
        OverflowError: The values at a point are too large to compute (power towers).
    """
    rng = random.Random(0)
    for _ in range(3):
        point = {s: sympy.Rational(rng.randint(101, 997), rng.randint(11, 97)) for s in symbols}
        try:
            pa, pb = _at(a, point), _at(b, point)
            _check_size(pa, pb)
            av, bv = sympy.N(pa, 20), sympy.N(pb, 20)
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            if _too_large(exc):
                raise
            return False
        if not (av.is_number and bv.is_number and av.is_finite and bv.is_finite):
            return False
        if abs(av - bv) > 1e-6 * max(abs(av), abs(bv), 1):
            return True
    return False


def _expr_equal(a: Any, b: Any, rel_tol: float) -> Decision:
    if a == b:
        return Decision(True, SYMBOLIC)
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        if (
            not (isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase))
            or a.shape != b.shape
        ):
            return Decision(False, MISMATCH)
        parts = [_expr_equal(x, y, rel_tol) for x, y in zip(a, b, strict=True)]
        ok = all(d.correct for d in parts)
        return Decision(ok, SYMBOLIC if ok else MISMATCH)
    if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
        return Decision(False, MISMATCH)  # sets, booleans, ...: structural equality only
    ka, kb = _key(a), _key(b)
    if ka is not None and ka == kb:  # same tree up to order, grouping, +0, *1: a proof
        return Decision(True, SYMBOLIC)
    qa, qb = (key_value(ka), key_value(kb)) if ka is not None and kb is not None else (None, None)
    if qa is not None and qb is not None:  # both folded to exact rationals
        ok = fractions_close(qa, qb, rel_tol)
        return Decision(ok, NUMERIC if ok else MISMATCH)
    try:
        return _values_equal(a, b, rel_tol)
    except (OverflowError, MemoryError, ValueError) as exc:
        if not _too_large(exc):
            raise
        # The values cannot be computed; the trees were compared above and differ.
        return Decision(False, MISMATCH, note=f"values too large to compare ({type(exc).__name__}); "
                                              "their expression trees differ")  # fmt: skip


def _key(expr: Any) -> Key | None:
    try:
        return canonical_key(expr)
    except RecursionError:
        return None


def _values_equal(a: Any, b: Any, rel_tol: float) -> Decision:
    """Compare by value: random points / numerics to reject, then a proof of ``a - b == 0``."""
    symbols = a.free_symbols | b.free_symbols
    if symbols:
        if _random_points_differ(a, b, symbols):
            return Decision(False, MISMATCH)
        ok = _is_zero(a - b)
        return Decision(ok, SYMBOLIC if ok else MISMATCH)
    _check_size(a, b)
    av, bv = _try_numeric(a), _try_numeric(b)  # reject cheaply before trying to prove
    if av is not None and bv is not None and not _numbers_close(av, bv, rel_tol):
        return Decision(False, MISMATCH)
    if _is_zero(a - b):
        return Decision(True, SYMBOLIC)
    if a.is_integer and b.is_integer:  # exact values compare exactly, even when too big to fold
        return Decision(False, MISMATCH)
    if _is_terminating_rational(a) and _is_terminating_rational(b):
        return Decision(False, MISMATCH)
    ok = _numbers_close(a, b, rel_tol)
    return Decision(ok, NUMERIC if ok else MISMATCH)


def _relational_equal(a: Relational, b: Relational, rel_tol: float) -> Decision:
    a, b = a.canonical, b.canonical
    if type(a) is not type(b):
        return Decision(False, MISMATCH)
    da, db = a.lhs - a.rhs, b.lhs - b.rhs
    for cand in (db, -db) if isinstance(a, sympy.Equality) else (db,):
        if _expr_equal(da, cand, rel_tol).correct:
            return Decision(True, SYMBOLIC)
    if isinstance(a, sympy.Equality) and db != 0:
        ratio = sympy.simplify(da / db)
        if ratio.is_number and ratio != 0 and ratio.is_finite:
            return Decision(True, SYMBOLIC)
    return Decision(False, MISMATCH)


def _parse_leaf(text: str, *, is_reference: bool) -> Any:
    try:
        return to_sympy(text)
    except ParseError as exc:
        if is_reference:
            raise BadReference(str(exc)) from exc
        raise


def _symbolic_leaf(pred: str, ref: str, rel_tol: float) -> Decision:
    quick = cheap_leaf(pred, ref, rel_tol)
    if quick is not None:
        return quick
    p_var, p_val = strip_assignment(pred)
    r_var, r_val = strip_assignment(ref)
    if p_var is not None and p_var == r_var:
        pred, ref = p_val, r_val  # "y=2x+1" vs "y=1+2x"
    elif (p_var is None) != (r_var is None) and "=" not in (pred if p_var is None else ref):
        pred, ref = p_val, r_val  # "x=3" vs "3"
    if _LONG_WORD_RE.fullmatch(pred) or _LONG_WORD_RE.fullmatch(ref):
        # Text answers ("Monday") would parse as commutative products of symbols, making
        # anagrams equal; the case-insensitive string test above is the only valid one.
        check_reference(ref)
        return Decision(False, MISMATCH)
    p_pct, r_pct = pred.endswith("%"), ref.endswith("%")
    r_expr = _parse_leaf(ref.removesuffix("%"), is_reference=True)
    try:
        p_expr = _parse_leaf(pred.removesuffix("%"), is_reference=False)
    except ParseError as exc:
        return Decision(False, MISMATCH, note=f"answer not parsed: {exc}")
    candidates = [(p_expr, r_expr)]
    if p_pct != r_pct and isinstance(p_expr, sympy.Expr) and isinstance(r_expr, sympy.Expr):
        candidates.append((p_expr / 100, r_expr) if p_pct else (p_expr, r_expr / 100))
    notes = []
    for a, b in candidates:
        if isinstance(a, Relational) and isinstance(b, Relational):
            d = _relational_equal(a, b, rel_tol)
        elif isinstance(a, Relational) or isinstance(b, Relational):
            d = Decision(False, MISMATCH)
        else:
            d = _expr_equal(a, b, rel_tol)
        if d.correct:
            return d
        notes.append(d.note)
    return Decision(False, MISMATCH, note=next((n for n in notes if n), None))


def check_reference(ref_norm: str) -> None:
    """Raise :class:`BadReference` if any element of the reference fails to parse.

    Example:
        >>> check_reference(r"\\frac{\\sqrt{2}}{2}")
        >>> check_reference(r"\\frac{1}{")
        Traceback (most recent call last):
        ...
        reasonenv.grading.symbolic.BadReference: ...
    """
    if not ref_norm:
        raise BadReference("empty reference")
    for text in leaves(parse_structure(ref_norm)):
        if not text:
            raise BadReference("empty element in reference")
        if leaf_is_cheap(text):
            continue  # plain number / word: valid without the grammar
        _, val = strip_assignment(text)
        _parse_leaf(val.removesuffix("%"), is_reference=True)


def symbolic_compare(pred_norm: str, ref_norm: str, rel_tol: float = DEFAULT_REL_TOL) -> Decision:
    """Full ladder (structure, string, numeric, symbolic) for two normalised answers.

    Raises:
        BadReference: If the reference cannot be parsed.

    Example:
        >>> symbolic_compare(r"\\frac{\\sqrt{2}}{2}", r"1/\\sqrt{2}")
        Decision(correct=True, reason='symbolic')
    """
    check_reference(ref_norm)
    decision = compare(pred_norm, ref_norm, lambda p, r: _symbolic_leaf(p, r, rel_tol))
    return decision if decision is not None else Decision(False, MISMATCH)
