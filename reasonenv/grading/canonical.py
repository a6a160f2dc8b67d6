"""Structural keys for sympy expression trees, computed without evaluating anything big.

Used by the worker (imports sympy) when values cannot be computed, and as a cheap first proof
of equality. Two trees get the same key when they differ only by

* the order and grouping of sums and products (``y+x`` = ``x+y``, ``(a+b)+c`` = ``a+(b+c)``);
* neutral elements: ``+0``, ``\\cdot 1``, ``^1``, and ``x^0`` = 1;
* exact arithmetic on rational constants whose result stays small: ``10^{6}+1`` becomes the
  integer 1000001 and ``10^{10^{10}}`` becomes ``10^{10000000000}`` (the inner power is folded,
  the outer one is far too big and stays a power).

Equal keys therefore prove equal values; different keys prove nothing.

:func:`log2_bound` estimates how big a constant tree's value is (as a power of two) with float
arithmetic, so that a power tower such as ``9^{9^{9^{9}}}`` is recognised as too large to
compute before sympy or mpmath spend minutes on it. Nothing here evaluates model text: both
functions walk trees the LaTeX grammar already built.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import sympy

__all__ = ["FOLD_BITS", "Key", "canonical_key", "key_value", "log2_bound"]

#: Integer powers of rationals are folded only while the result needs at most this many bits
#: (about 1,000 decimal digits); anything bigger keeps its unevaluated power node.
FOLD_BITS = 3400

Key = tuple[Any, ...]
_ZERO: Key = ("n", 0, 1)
_ONE: Key = ("n", 1, 1)


def _number(q: Fraction) -> Key:
    return ("n", q.numerator, q.denominator)


def key_value(key: Key) -> Fraction | None:
    """The exact rational a key stands for, or ``None`` if it is not a folded number.

    Example:
        >>> key_value(canonical_key(sympy.Pow(10, 3, evaluate=False) + 1))
        Fraction(1001, 1)
    """
    return Fraction(key[1], key[2]) if key[0] == "n" else None


def _assoc(op: str, args: tuple[Any, ...]) -> Key:
    kind = sympy.Add if op == "+" else sympy.Mul
    const = Fraction(0 if op == "+" else 1)
    terms: list[Key] = []
    stack = list(args)
    while stack:
        arg = stack.pop()
        if isinstance(arg, kind):
            stack.extend(arg.args)
            continue
        k = canonical_key(arg)
        # a child that became a sum (product) after canonicalisation is flattened too
        for t in k[1] if k[0] == op else (k,):
            q = key_value(t)
            if q is None:
                terms.append(t)
            else:
                const = const + q if op == "+" else const * q
    if op == "*" and const == 0:
        return _ZERO
    if const != (0 if op == "+" else 1) or not terms:
        terms.append(_number(const))
    if len(terms) == 1:
        return terms[0]
    return (op, tuple(sorted(terms, key=repr)))


def _power(base: Key, exp: Key) -> Key:
    if exp == _ONE or base == _ONE:
        return base
    if exp == _ZERO:
        return _ONE
    b, n = key_value(base), key_value(exp)
    if b is not None and n is not None and n.denominator == 1 and (b != 0 or n > 0):
        bits = abs(n.numerator) * max(b.numerator.bit_length(), b.denominator.bit_length())
        if bits <= FOLD_BITS:
            return _number(b ** int(n))
    return ("^", base, exp)


def canonical_key(expr: Any) -> Key:
    """Return a hashable key of ``expr`` that ignores order, grouping and neutral elements.

    Raises:
        RecursionError: For trees nested deeper than the interpreter's recursion limit.

    Example:
        >>> x = sympy.Symbol("x")
        >>> tower = sympy.Pow(x, sympy.Pow(x, x, evaluate=False), evaluate=False)
        >>> canonical_key(sympy.Add(tower, 0, evaluate=False)) == canonical_key(tower)
        True
        >>> canonical_key(sympy.Add(tower, 1, evaluate=False)) == canonical_key(tower)
        False
    """
    if isinstance(expr, sympy.Rational):
        return ("n", int(expr.p), int(expr.q))
    if isinstance(expr, sympy.Symbol):
        return ("s", expr.name)
    if isinstance(expr, sympy.Add):
        return _assoc("+", expr.args)
    if isinstance(expr, sympy.Mul):
        return _assoc("*", expr.args)
    if isinstance(expr, sympy.Pow):
        return _power(canonical_key(expr.base), canonical_key(expr.exp))
    if not expr.args:  # pi, E, I, oo, Float, ...
        return ("a", type(expr).__name__, str(expr))
    return ("f", type(expr).__name__, tuple(canonical_key(a) for a in expr.args))


_GROWTH = {"exp": 1.0, "factorial": 2.0, "gamma": 2.0, "binomial": 1.0, "subfactorial": 2.0}


def log2_bound(expr: Any) -> float:
    """A rough upper bound of ``log2 |value|`` for a constant tree (``inf`` when astronomic).

    It follows how magnitudes grow (sums add a bit, products add, powers multiply by the
    exponent's value, ``exp`` / factorials exponentiate) without computing any value. Bases
    are assumed to be at least ``2^-64`` away from 1 and 0 only in the sense that tiny factors
    are not credited; the bound is meant to spot towers, not to be tight.

    Example:
        >>> ten = sympy.Integer(10)
        >>> round(log2_bound(sympy.Pow(ten, 6, evaluate=False)))
        24
        >>> log2_bound(sympy.Pow(ten, sympy.Pow(ten, 100, evaluate=False), evaluate=False)) > 1e100
        True
    """
    if isinstance(expr, sympy.Rational):
        return float(max(int(expr.p).bit_length(), int(expr.q).bit_length()))
    if not expr.args:  # symbols, pi, E, I, Float: ordinary sizes
        return 64.0
    parts = [log2_bound(a) for a in expr.args]
    if isinstance(expr, sympy.Add):
        return max(parts) + math.log2(len(parts))
    if isinstance(expr, sympy.Mul):
        return sum(parts)
    if isinstance(expr, sympy.Pow):
        base, exp = parts
        e = expr.exp
        size = (
            abs(float(e.p) / float(e.q))
            if isinstance(e, sympy.Rational) and exp < 1000
            else _exp2(exp)
        )
        return size * max(base, 1.0)
    growth = _GROWTH.get(type(expr).__name__)
    if growth is not None:  # value ~ 2^(arg) or arg^arg
        return _exp2(max(parts)) * max(growth, max(parts))
    return max(parts)  # sin, log, Abs, ...: no bigger than what they are applied to


def _exp2(bits: float) -> float:
    return math.inf if bits > 1000 else 2.0**bits
