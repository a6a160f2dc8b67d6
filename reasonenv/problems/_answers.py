"""Helpers that turn raw benchmark fields into gold-answer strings.

Everything here is pure string/number manipulation (no third-party imports) so that the
procedural generators and the dataset loaders share one answer format:

* integers as plain digits, no thousands separators: ``"1000"``, ``"-7"``;
* integer-valued floats lose their ``.0``: ``145.0 -> "145"``;
* other floats keep their shortest exact decimal form: ``11.5 -> "11.5"``;
* rationals as ``"p/q"`` in lowest terms: ``Fraction(6, 8) -> "3/4"``;
* LaTeX answers (MATH, MATH-500, Minerva) are kept verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from numbers import Integral, Real
from typing import Any

_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_INT_FLOAT = re.compile(r"([-+]?\d+)\.0*")
_UNIT_SUFFIX = re.compile(r"^(.*?\S)\s*\([^()]*\)\s*$", re.DOTALL)
_DOLLAR_WRAP = re.compile(r"^\$+(.*?)\$+$", re.DOTALL)


def format_fraction(value: Fraction | int) -> str:
    """Format an exact rational as ``"n"`` or ``"p/q"`` (lowest terms, sign on the numerator).

    Example:
        >>> format_fraction(Fraction(-6, 8))
        '-3/4'
        >>> format_fraction(Fraction(10, 5))
        '2'
    """
    frac = Fraction(value)
    if frac.denominator == 1:
        return str(frac.numerator)
    return f"{frac.numerator}/{frac.denominator}"


def format_number(value: Any) -> str:
    """Format a JSON number (or numeric string) as a gold-answer string.

    Example:
        >>> format_number(145.0), format_number(11.5), format_number("1,000")
        ('145', '11.5', '1000')
    """
    if isinstance(value, bool):
        raise TypeError(f"expected a number, got bool {value!r}")
    if isinstance(value, Fraction):
        return format_fraction(value)
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"answer is not a finite number: {value!r}")
        if number.is_integer():
            return str(int(number))
        text = format(Decimal(repr(number)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, str):
        return normalize_numeric_string(value)
    raise TypeError(f"expected a number, got {type(value).__name__}: {value!r}")


def normalize_numeric_string(text: str) -> str:
    """Strip whitespace, drop thousands separators and a trailing ``.0`` from numeric strings.

    Non-numeric text is returned stripped but otherwise unchanged.

    Example:
        >>> normalize_numeric_string(" 1,450,000 "), normalize_numeric_string("3.0")
        ('1450000', '3')
        >>> normalize_numeric_string("\\\\frac{1}{2}")
        '\\\\frac{1}{2}'
    """
    stripped = text.strip()
    if _THOUSANDS.fullmatch(stripped):
        stripped = stripped.replace(",", "")
    match = _INT_FLOAT.fullmatch(stripped)
    if match:
        stripped = match.group(1)
    if stripped.startswith("+") and stripped[1:].replace(".", "", 1).isdigit():
        stripped = stripped[1:]
    return stripped


def normalize_answer(value: Any) -> str:
    """Turn any JSON answer value into a gold string.

    Numbers go through :func:`format_number`; strings are stripped, lose one layer of
    surrounding ``$...$`` and numeric strings lose thousands separators; lists (e.g.
    OlympiadBench ``final_answer``) are normalized element-wise and joined with ``", "``.

    Example:
        >>> normalize_answer(27.0), normalize_answer(["$\\\\frac{1}{2}$"]), normalize_answer([1, 2])
        ('27', '\\\\frac{1}{2}', '1, 2')
    """
    if value is None:
        raise ValueError("answer is missing (null)")
    if isinstance(value, str):
        text = value.strip()
        match = _DOLLAR_WRAP.fullmatch(text)
        if match:
            text = match.group(1).strip()
        return normalize_numeric_string(text)
    if isinstance(value, Sequence):
        parts = [normalize_answer(item) for item in value]
        if not parts:
            raise ValueError("answer list is empty")
        return ", ".join(parts)
    return format_number(value)


def last_boxed(text: str) -> str | None:
    """Return the content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``.

    Braces are matched, so nested groups such as ``\\boxed{\\frac{1}{2}}`` come back whole.
    The brace-less form ``\\boxed 5`` is also understood. Returns ``None`` if nothing is boxed.

    Example:
        >>> last_boxed(r"so $x=\\boxed{\\frac{1}{2}}$ and finally $\\boxed{3}$")
        '3'
        >>> last_boxed(r"answer: \\boxed{\\frac{1}{2}}")
        '\\\\frac{1}{2}'
    """
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    cursor = start + (len("\\boxed") if text.startswith("\\boxed", start) else len("\\fbox"))
    rest = text[cursor:]
    if rest.startswith(" ") and not rest.lstrip().startswith("{"):
        token = rest.lstrip().split("$", 1)[0].split()
        return token[0] if token else None
    brace = text.find("{", cursor)
    if brace < 0 or text[cursor:brace].strip():
        return None
    depth = 0
    for pos in range(brace, len(text)):
        char = text[pos]
        if char == "{" and text[pos - 1] != "\\":
            depth += 1
        elif char == "}" and text[pos - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : pos].strip()
    return None


def boxed_answer(value: Any) -> str:
    """Gold answer from a worked solution: the last boxed expression.

    Raises:
        ValueError: if the solution contains no complete ``\\boxed{...}``.
    """
    text = str(value)
    found = last_boxed(text)
    if found is None:
        raise ValueError("solution has no \\boxed{...} answer")
    return normalize_numeric_string(found)


def gsm8k_answer(value: Any) -> str:
    """Gold answer of a GSM8K rationale: the text after the last ``####``.

    Example:
        >>> gsm8k_answer("so 9 * 2 = 18\\n#### 1,018")
        '1018'
    """
    text = str(value)
    if "####" not in text:
        raise ValueError("GSM8K answer has no '#### <number>' line")
    return normalize_numeric_string(text.rsplit("####", 1)[1])


def gsm8k_rationale(value: Any) -> str:
    """The worked solution of a GSM8K answer field, without the final ``#### n`` line."""
    return str(value).rsplit("####", 1)[0].strip()


def strip_unit(value: Any) -> str:
    """Drop a trailing parenthesised unit, as in ASDiv's ``"9 (apples)"``.

    Example:
        >>> strip_unit("9 (apples)"), strip_unit("3:4"), strip_unit("5.25 (dollars)")
        ('9', '3:4', '5.25')
    """
    text = normalize_answer(value)
    match = _UNIT_SUFFIX.match(text)
    if match:
        text = match.group(1)
    return normalize_numeric_string(text)
