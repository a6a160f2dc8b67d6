"""Answer-extraction helpers: boxed matching, number formatting, unit stripping."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasonenv.problems._answers import (
    boxed_answer,
    format_fraction,
    format_number,
    gsm8k_answer,
    last_boxed,
    normalize_answer,
    strip_unit,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so $\boxed{5}$", "5"),
        (r"$\boxed{1}$ then $\boxed{\frac{a}{b+1}}$.", r"\frac{a}{b+1}"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"the answer is \fbox{7}", "7"),
        (r"thus $\boxed 9$.", "9"),
        ("no answer", None),
        (r"unclosed \boxed{3", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


def test_boxed_answer_errors_without_box() -> None:
    with pytest.raises(ValueError, match="boxed"):
        boxed_answer("plain")
    assert boxed_answer(r"\boxed{58,500}") == "58500"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (145.0, "145"),
        (11.5, "11.5"),
        (-3.0, "-3"),
        (7, "7"),
        (1e-05, "0.00001"),
        (2.5e20, "250000000000000000000"),
        ("1,000", "1000"),
        ("4.0", "4"),
        (Fraction(6, -8), "-3/4"),
    ],
)
def test_format_number(value: object, expected: str) -> None:
    assert format_number(value) == expected


def test_format_number_rejects_bad_values() -> None:
    for bad in (True, float("nan"), float("inf"), object()):
        with pytest.raises((TypeError, ValueError)):
            format_number(bad)


def test_normalize_and_units() -> None:
    assert normalize_answer(["$3$", "$5$"]) == "3, 5"
    assert normalize_answer(" $\\frac{1}{2}$ ") == "\\frac{1}{2}"
    assert strip_unit("14  (seats)") == "14"
    assert strip_unit("5.25 (dollars)") == "5.25"
    assert strip_unit("3:30 p.m.") == "3:30 p.m."
    assert gsm8k_answer("x\n#### 1,450,000") == "1450000"
    with pytest.raises(ValueError):
        normalize_answer(None)
    with pytest.raises(ValueError):
        normalize_answer([])


@given(st.fractions(max_denominator=10**6))
def test_format_fraction_round_trips(value: Fraction) -> None:
    text = format_fraction(value)
    assert Fraction(text) == value
    assert ("/" in text) == (value.denominator != 1)


@given(st.integers(-(10**12), 10**12))
def test_thousands_separators_removed(number: int) -> None:
    assert normalize_answer(f"{number:,}") == str(number)
    assert format_number(float(number)) == str(number)
