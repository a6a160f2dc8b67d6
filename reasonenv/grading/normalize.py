"""String-level answer normalisation (pure Python, bounded, no sympy).

:func:`normalize` maps surface variants of the same answer to one canonical string, e.g.
``"\\dfrac{1}{2}"`` and ``"\\frac12"`` both become ``"\\frac{1}{2}"``, ``"\\$1,234"`` becomes
``"1234"``, ``"30^\\circ"`` becomes ``"30"`` and ``"50\\%"`` becomes ``"50%"`` (the percent sign is
kept as a marker; :mod:`reasonenv.grading.compare` decides what it means).
"""

from __future__ import annotations

import re

from reasonenv.grading.extract import match_braces

__all__ = ["MAX_ANSWER_CHARS", "normalize", "strip_assignment", "unwrap_commands"]

#: Extracted answers longer than this are rejected instead of being parsed.
MAX_ANSWER_CHARS = 2_000

_UNICODE = {
    "\u2212": "-",  # minus sign
    "\u2013": "-",  # en dash used as minus
    "\u00d7": "\\times ",
    "\u22c5": "\\cdot ",
    "\u00b7": "\\cdot ",
    "\u00f7": "/",
    "\u03c0": "\\pi ",
    "\u221e": "\\infty ",
    "\u00b0": "^\\circ",
    "\u221a": "\\sqrt",
    "\u2264": "\\leq ",
    "\u2265": "\\geq ",
    "\u2260": "\\neq ",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
    "~": " ",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))

# Commands whose braced argument is kept verbatim (the command itself is dropped).
_WRAPPERS = (
    "text", "textbf", "textit", "textrm", "textup", "textnormal", "mbox", "mathrm", "mathbf",
    "mathit", "mathsf", "mathtt", "boldsymbol", "bm", "emph", "hbox",
)  # fmt: skip
_WRAPPER_RE = re.compile(r"\\(?:" + "|".join(_WRAPPERS) + r")\s*\{")

_SIMPLE_SUBS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r",\\!"), ","),  # "1,\!000" is the MATH dataset's thousands separator
    (re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits)(?![A-Za-z])"), ""),
    (re.compile(r"\\[dt]frac(?![A-Za-z])"), r"\\frac"),
    (re.compile(r"\\m?left(?![A-Za-z])\.?|\\m?right(?![A-Za-z])\.?"), ""),
    (re.compile(r"\\(?:big|Big|bigg|Bigg)[lr]?(?![A-Za-z])"), ""),
    (re.compile(r"(?<!\\)\\[!,;:> ]|\\q?quad(?![A-Za-z])"), " "),
    (re.compile(r"\\lbrace(?![A-Za-z])"), r"\\{"),
    (re.compile(r"\\rbrace(?![A-Za-z])"), r"\\}"),
    (re.compile(r"\\langle(?![A-Za-z])"), "("),
    (re.compile(r"\\rangle(?![A-Za-z])"), ")"),
    (re.compile(r"\\varnothing(?![A-Za-z])|\\\{\s*\\\}"), r"\\emptyset"),
    (re.compile(r"\\(?:le|leqslant)(?![A-Za-z])"), r"\\leq"),
    (re.compile(r"\\(?:ge|geqslant)(?![A-Za-z])"), r"\\geq"),
    (re.compile(r"\\ne(?![A-Za-z])"), r"\\neq"),
    (re.compile(r"\{(?:b|B|v|V|small)?matrix\}"), "{pmatrix}"),
    (re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|\\degree(?![A-Za-z])"), ""),
    (re.compile(r"\\%|\\text\{\s*%\s*\}|\s*\bpercent\b"), "%"),
    (re.compile(r"\\\$|\$"), ""),
    (re.compile(r"\{,\}"), ","),
    (re.compile(r"\b(?:infinity|inf)\b"), r"\\infty"),
]
_OR_AND_RE = re.compile(r"\s+(?:or|and)\s+|\\(?:text|mbox)\{\s*(?:or|and)\s*\}", re.IGNORECASE)
_MATH_WORDS = frozenset(
    "pi sqrt sin cos tan cot sec csc log ln exp infty inf infinity mod or and".split()
)
_UNIT_WORDS = (
    "cm mm km kg mg ml mL ft in inch inches feet foot yd yards? miles? meters? metres? m "
    "sq square cubic units? degrees? radians? seconds? secs? minutes? mins? hours? hrs? days? "
    "weeks? months? years? dollars? cents? pounds? mph kmph liters? litres? grams? "
    "kilograms? kilometers? centimeters? millimeters? ounces? oz gallons? quarts? pints? cups?"
).split()
_UNIT_ALT = "|".join(_UNIT_WORDS)
_TRAILING_UNIT_RE = re.compile(
    rf"(?<=[\d}}.)])\s*(?:(?:{_UNIT_ALT})(?![A-Za-z]))(?:\s*\^\s*\{{?\d\}}?)?"
    rf"(?:\s+(?:{_UNIT_ALT})(?![A-Za-z]))*\s*$"
)
_TRAILING_WORDS_RE = re.compile(
    r"(?<=[\d}])\s+([A-Za-z]{2,}(?:\s+[A-Za-z]{2,})*)\s*(\^\s*\{?\d\}?)?\.?$"
)
_FRAC_SHORT_RE = re.compile(r"\\frac\s*([0-9a-zA-Z])\s*([0-9a-zA-Z])")
_FRAC_HALF_RE = re.compile(r"\\frac\s*([0-9a-zA-Z])\s*\{|\\frac(\{[^{}]*\})\s*([0-9a-zA-Z])")
_SQRT_SHORT_RE = re.compile(r"\\sqrt\s*([0-9a-zA-Z])")
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?")
_SUBSCRIPT_RE = re.compile(r"_\s*(\d+|[A-Za-z](?![A-Za-z]))")
_MEMBER_RE = re.compile(r"^[A-Za-z](?:_\{[A-Za-z0-9]+\})?\\in(?![A-Za-z])")
_WS_RE = re.compile(r"(\\[A-Za-z]+)?\s+")
_ASSIGN_RE = re.compile(
    r"([A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?|\\[A-Za-z]+(?:_\{?[A-Za-z0-9]+\}?)?)=(.+)"
)


def unwrap_commands(s: str) -> str:
    """Replace ``\\text{X}``-style wrappers by ``X`` (with brace matching, innermost last).

    Example:
        >>> unwrap_commands(r"\\text{(B)}")
        '(B)'
        >>> unwrap_commands(r"\\textbf{\\text{Monday}}")
        'Monday'
    """
    for _ in range(50):
        m = _WRAPPER_RE.search(s)
        if m is None:
            break
        open_idx = m.end() - 1
        close = match_braces(s).get(open_idx)
        if close is None:
            s = s[: m.start()] + s[m.end() :]
            continue
        s = s[: m.start()] + s[open_idx + 1 : close] + s[close + 1 :]
    return s


def _strip_units(s: str) -> str:
    # "\text{ cm}" / "\mbox{ meters}" style units after a value.
    s = _TRAILING_UNIT_RE.sub("", s)
    m = _TRAILING_WORDS_RE.search(s)
    if m and not any(w.lower() in _MATH_WORDS for w in m.group(1).split()):
        s = s[: m.start()]
    return s


def _collapse_ws(s: str) -> str:
    """Drop whitespace, keeping one space where a command would otherwise swallow a letter."""

    def repl(m: re.Match[str]) -> str:
        cmd = m.group(1) or ""
        nxt = s[m.end() : m.end() + 1]
        return cmd + " " if cmd and nxt.isalpha() else cmd

    return _WS_RE.sub(repl, s)


def normalize(answer: str) -> str:
    """Normalise an extracted answer to a canonical string.

    Handles whitespace, ``\\left``/``\\right``, ``\\dfrac``/``\\tfrac``, ``\\frac12``, spacing
    commands, degrees, ``\\%`` (kept as ``%``), dollar signs, ``\\text{}``/``\\mbox{}`` wrappers,
    trailing unit words, thousands separators (only when the *whole* answer is one number whose
    comma groups all have exactly three digits), unicode minus and a trailing period.

    Args:
        answer: An extracted answer (callers cap it at :data:`MAX_ANSWER_CHARS`).

    Returns:
        The canonical string (may be empty).

    Example:
        >>> normalize(r"\\dfrac{1}{2}\\text{ cm}")
        '\\\\frac{1}{2}'
        >>> normalize("1,234,567"), normalize("(1,234)"), normalize("1,2")
        ('1234567', '(1,234)', '1,2')
        >>> normalize(r"\\left( 1, 2 \\right]")
        '(1,2]'
    """
    s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], answer)
    s = s.strip()
    for pattern, repl in _SIMPLE_SUBS[:6]:
        s = pattern.sub(repl, s)
    s = _OR_AND_RE.sub(",", s)
    s = unwrap_commands(s)
    for pattern, repl in _SIMPLE_SUBS[6:]:
        s = pattern.sub(repl, s)
    s = _strip_units(s.strip())
    s = _FRAC_SHORT_RE.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF_RE.sub(
        lambda m: (
            rf"\frac{{{m.group(1)}}}{{" if m.group(1) else rf"\frac{m.group(2)}{{{m.group(3)}}}"
        ),
        s,
    )
    s = _SQRT_SHORT_RE.sub(r"\\sqrt{\1}", s)
    s = _SUBSCRIPT_RE.sub(r"_{\1}", s)  # "\log_2 8" is log base 2 of 8, not base 28
    bare = s.strip().rstrip(".")
    if _THOUSANDS_RE.fullmatch(bare):  # decided before spaces vanish: "1, 234" stays a list
        s = bare.replace(",", "")
    s = _collapse_ws(s).strip()
    s = _MEMBER_RE.sub("", s)  # "x \\in \\{1,2\\}" -> "\\{1,2\\}"
    while s.startswith("{") and match_braces(s).get(0) == len(s) - 1:
        s = s[1:-1].strip()
    while s.endswith(".") and not s.endswith(".."):
        s = s[:-1]
    s = s.rstrip(",;")
    if s.startswith("+") and len(s) > 1:
        s = s[1:]
    return s


def strip_assignment(s: str) -> tuple[str | None, str]:
    """Split a single-variable assignment ``"x=3"`` into ``("x", "3")``.

    Returns ``(None, s)`` when ``s`` is not of the form ``<variable>=<value>`` with exactly one
    ``=`` (so general equations such as ``x+y=1`` are left alone).

    Example:
        >>> strip_assignment("x=3"), strip_assignment("k_1=-2"), strip_assignment("x+y=1")
        (('x', '3'), ('k_1', '-2'), (None, 'x+y=1'))
    """
    if s.count("=") != 1:
        return None, s
    m = _ASSIGN_RE.fullmatch(s)
    if m is None or m.group(1) in ("\\infty", "\\pi", "\\emptyset"):
        return None, s
    return m.group(1), m.group(2)
