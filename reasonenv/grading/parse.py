"""Safe parsing: answer structure, plain numbers, and grammar-based LaTeX -> sympy.

Nothing in this module evaluates model text as Python. Plain numbers are parsed with
:class:`fractions.Fraction` after a bounded regex match; everything else goes through the ANTLR
grammar of ``latex2sympy2_extended`` (imported lazily, only in the worker process). ASCII forms
such as ``2*sqrt(3)`` or ``x**2`` are rewritten to LaTeX by a small character-level translator
first. ``sympy.sympify``/``parse_expr``/``eval`` are never called on answer text.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = [
    "Leaf",
    "MatrixNode",
    "Node",
    "ParseError",
    "SeqNode",
    "SetNode",
    "UnionNode",
    "is_balanced",
    "parse_number",
    "parse_structure",
    "split_top",
    "to_latex",
    "to_sympy",
]

_MAX_EXP = 400  # bound on decimal exponents parsed in-process
_NUM_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,4})?")
_FRAC_RE = re.compile(
    r"([+-]?)(?:\\frac\{([+-]?\d{1,200})\}\{([+-]?\d{1,200})\}|(\d{1,200})/(\d{1,200}))"
)
_SCI_RE = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:\\times|\\cdot|\*)10\^\{?([+-]?\d{1,4})\}?")
_POW10_RE = re.compile(r"10\^\{?([+-]?\d{1,4})\}?")


class ParseError(ValueError):
    """Raised when an answer cannot be parsed by the grammar."""


@dataclass(frozen=True)
class Leaf:
    """A single expression (number, formula, equation, word)."""

    text: str


@dataclass(frozen=True)
class SeqNode:
    """An ordered tuple or interval; bracket types are part of its identity."""

    open: str
    close: str
    items: tuple[Node, ...]


@dataclass(frozen=True)
class SetNode:
    """An unordered collection: ``\\{a,b\\}`` or a bare list ``a, b`` ("find all ...")."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class MatrixNode:
    """A ``pmatrix`` (after normalisation all matrix environments become ``pmatrix``)."""

    rows: tuple[tuple[Node, ...], ...]


@dataclass(frozen=True)
class UnionNode:
    """A union of sets/intervals joined by ``\\cup`` (compared order-free)."""

    parts: tuple[Node, ...]


Node = Leaf | SeqNode | SetNode | MatrixNode | UnionNode

_OPEN = "([{"
_CLOSE = ")]}"


def _bracket_at(s: str, i: int) -> tuple[int, int]:
    """Return (depth delta, token length) of the bracket token at ``s[i]``."""
    c = s[i]
    if c == "\\" and i + 1 < len(s):
        if s[i + 1] == "{":
            return 1, 2
        if s[i + 1] == "}":
            return -1, 2
        return 0, 2
    if c in _OPEN:
        return 1, 1
    if c in _CLOSE:
        return -1, 1
    return 0, 1


def is_balanced(s: str) -> bool:
    """Whether all brackets in ``s`` close properly (bracket kinds may differ: ``(1,2]``).

    Example:
        >>> is_balanced(r"\\frac{1}{2}"), is_balanced(r"\\frac{1}{"), is_balanced("(1,2]")
        (True, False, True)
    """
    depth, i = 0, 0
    while i < len(s):
        d, n = _bracket_at(s, i)
        depth += d
        if depth < 0:
            return False
        i += n
    return depth == 0


def split_top(s: str, sep: str) -> list[str]:
    """Split ``s`` on ``sep`` occurring outside any brackets.

    Example:
        >>> split_top(r"\\frac{1,2}{3},(4,5),6", ",")
        ['\\\\frac{1,2}{3}', '(4,5)', '6']
    """
    parts: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(s):
        if depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            i += len(sep)
            start = i
            continue
        d, n = _bracket_at(s, i)
        depth += d
        i += n
    parts.append(s[start:])
    return parts


def _spans(s: str) -> bool:
    """Whether the bracket opening at ``s[0]`` closes exactly at the end of ``s``."""
    depth, i = 0, 0
    while i < len(s):
        d, n = _bracket_at(s, i)
        depth += d
        i += n
        if depth == 0:
            return i == len(s)
    return False


_MATRIX_RE = re.compile(r"\\begin\{pmatrix\}(.*)\\end\{pmatrix\}", re.DOTALL)


def parse_structure(s: str, _depth: int = 0) -> Node:
    """Parse a normalised answer into its structure (sets, tuples, intervals, matrices).

    Example:
        >>> parse_structure("(1,2]")
        SeqNode(open='(', close=']', items=(Leaf(text='1'), Leaf(text='2')))
        >>> parse_structure("2,1")
        SetNode(items=(Leaf(text='2'), Leaf(text='1')))
    """
    s = s.strip()
    if _depth > 8 or not s or not is_balanced(s):
        return Leaf(s)
    m = _MATRIX_RE.fullmatch(s)
    if m and "\\begin" not in m.group(1):
        rows = [r for r in split_top(m.group(1), "\\\\") if r.strip()]
        return MatrixNode(
            tuple(tuple(parse_structure(c, _depth + 1) for c in split_top(r, "&")) for r in rows)
        )
    parts = split_top(s, "\\cup")
    if len(parts) > 1:
        return UnionNode(tuple(parse_structure(p, _depth + 1) for p in parts))
    if s.startswith("\\{") and s.endswith("\\}") and _spans(s):
        inner = s[2:-2]
        if not inner.strip():
            return Leaf("\\emptyset")
        return SetNode(tuple(parse_structure(p, _depth + 1) for p in split_top(inner, ",")))
    if s[0] in "([" and s[-1] in ")]" and _spans(s):
        items = split_top(s[1:-1], ",")
        if len(items) >= 2:
            return SeqNode(s[0], s[-1], tuple(parse_structure(p, _depth + 1) for p in items))
        if s[0] == "(" and s[-1] == ")":
            return parse_structure(s[1:-1], _depth + 1)
        return Leaf(s)
    items = split_top(s, ",")
    if len(items) == 1:
        items = split_top(s, ";")
    if len(items) > 1:
        return SetNode(tuple(parse_structure(p, _depth + 1) for p in items if p.strip()))
    pm = split_top(s, "\\pm")
    if len(pm) == 2 and pm[1]:
        return SetNode((Leaf(f"{pm[0]}+{pm[1]}"), Leaf(f"{pm[0]}-{pm[1]}")))
    return Leaf(s)


def parse_number(s: str) -> Fraction | None:
    """Parse a plain number exactly, in-process and with bounded cost.

    Accepts integers, decimals, ``1e-8``, ``3\\times10^{5}``, ``10^{-3}``, ``a/b`` and
    ``\\frac{a}{b}`` with integer parts (optional sign). Anything else returns ``None``.

    Example:
        >>> parse_number("0.5"), parse_number(r"-\\frac{3}{4}"), parse_number("1e999999")
        (Fraction(1, 2), Fraction(-3, 4), None)
    """
    if len(s) > 500:
        return None
    try:
        if _NUM_RE.fullmatch(s):
            mant, _, exp = s.lower().partition("e")
            if exp and abs(int(exp)) > _MAX_EXP or len(mant) > 400:
                return None
            return Fraction(s)
        m = _FRAC_RE.fullmatch(s)
        if m:
            num, den = (
                (m.group(2), m.group(3)) if m.group(2) is not None else (m.group(4), m.group(5))
            )
            if int(den) == 0:
                return None
            value = Fraction(int(num), int(den))
            return -value if m.group(1) == "-" else value
        m = _SCI_RE.fullmatch(s)
        if m and abs(int(m.group(2))) <= _MAX_EXP:
            return Fraction(m.group(1)) * Fraction(10) ** int(m.group(2))
        m = _POW10_RE.fullmatch(s)
        if m and abs(int(m.group(1))) <= _MAX_EXP:
            return Fraction(10) ** int(m.group(1))
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return None


# ---------------------------------------------------------------------------------------------
# ASCII -> LaTeX translation and grammar-based conversion (worker side)
# ---------------------------------------------------------------------------------------------

_FUNCS = ("sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan",
          "log", "ln", "exp")  # fmt: skip
_BARE_FUNC_RE = re.compile(r"(?<![\\A-Za-z])(" + "|".join(_FUNCS) + r")(?=\s*\()")
_BARE_PI_RE = re.compile(r"(?<![\\A-Za-z])pi(?![A-Za-z])")
_DECIMAL_RE = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?![\d.])")
_DIGIT_PAREN_RE = re.compile(r"(\d)\s*\(")


def _match_paren(s: str, i: int) -> int | None:
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "(":
            depth += 1
        elif s[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return None


def to_latex(s: str) -> str:
    """Rewrite ASCII math (``sqrt(2)``, ``x**2``, ``2^(1/2)``, ``pi``) into LaTeX.

    Decimal literals become exact fractions so that ``0.5`` is the rational ``1/2``.

    Example:
        >>> to_latex("2*sqrt(3)/pi")
        '2*\\\\sqrt{3}/\\\\pi '
        >>> to_latex("x**(1/2)+0.25")
        'x^{1/2}+\\\\frac{25}{100}'
    """
    s = s.replace("**", "^")
    s = _BARE_PI_RE.sub(r"\\pi ", s)
    s = _BARE_FUNC_RE.sub(r"\\\1", s)
    # \sqrt(...) -> \sqrt{...};  ^( ... ) -> ^{ ... }
    for token, opener in (("\\sqrt(", "\\sqrt{"), ("^(", "^{")):
        for _ in range(100):
            i = s.find(token)
            if i < 0:
                break
            j = _match_paren(s, i + len(token) - 1)
            if j is None:
                break
            s = s[:i] + opener + s[i + len(token) : j] + "}" + s[j + 1 :]
    s = _DIGIT_PAREN_RE.sub(r"\1\\cdot(", s)  # "3(2)" is 3*2, never a mixed number
    return _DECIMAL_RE.sub(
        lambda m: rf"\frac{{{int(m.group(1) + m.group(2))}}}{{1{'0' * len(m.group(2))}}}", s
    )


_CONVERTER: Any = None


@functools.lru_cache(maxsize=2048)
def to_sympy(s: str) -> Any:
    """Convert one normalised leaf to a sympy object with the LaTeX grammar (worker only).

    Raises:
        ParseError: If the grammar rejects the text.

    Example:
        >>> to_sympy(r"\\frac{\\sqrt{2}}{2}")
        sqrt(2)/2
    """
    global _CONVERTER
    if _CONVERTER is None:
        from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy

        config = ConversionConfig(
            interpret_as_mixed_fractions=True,
            interpret_simple_eq_as_assignment=False,
            interpret_contains_as_eq=False,
            lowercase_symbols=False,
        )
        _CONVERTER = lambda text: latex2sympy(  # noqa: E731
            text, normalization_config=None, conversion_config=config
        )
    value = parse_number(s)
    if value is not None:
        import sympy

        return sympy.Rational(value.numerator, value.denominator)
    try:
        expr = _CONVERTER(to_latex(s))
        imag = [sym for sym in getattr(expr, "free_symbols", ()) if sym.name == "i"]
        if imag:  # "i" is the imaginary unit in final answers ("1+2i", "e^{i\\pi}")
            import sympy

            expr = expr.xreplace({imag[0]: sympy.I})
        return expr
    except RecursionError as exc:
        raise ParseError(f"expression nested too deeply: {s[:80]!r}") from exc
    except Exception as exc:  # the ANTLR front-end raises bare Exception
        raise ParseError(f"cannot parse {s[:80]!r}: {str(exc).splitlines()[0][:120]}") from exc
