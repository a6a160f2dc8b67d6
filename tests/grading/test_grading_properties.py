"""Property-based checks of the ladder on generated numbers and sets (cheap in-process path)."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from reasonenv.grading import Grader

ints = st.integers(min_value=-(10**12), max_value=10**12)


@settings(max_examples=150, deadline=None)
@given(ints)
def test_thousands_separators_roundtrip(grader: Grader, n: int) -> None:
    assert grader.grade(f"#### {n:,}", str(n)).correct
    assert grader.grade(rf"\boxed{{{n}}}", f"{n:,}").correct
    assert not grader.grade(rf"\boxed{{{n + 1}}}", str(n)).correct


@settings(max_examples=150, deadline=None)
@given(st.integers(-999, 999), st.integers(1, 999))
def test_fraction_forms_agree(grader: Grader, p: int, q: int) -> None:
    value = Fraction(p, q)
    sign = "-" if value < 0 else ""
    latex = rf"{sign}\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"
    assert grader.grade(rf"\boxed{{{p}/{q}}}", latex).correct
    decimal = f"{float(value):.12f}"
    # 12 decimals are within 1e-6 relative unless the value is exact and terminating anyway
    assert grader.grade(rf"\boxed{{{decimal}}}", latex).correct is True
    assert not grader.grade(rf"\boxed{{{p}/{q}}}", f"{float(value) + 0.01:.6f}").correct


@settings(max_examples=100, deadline=None)
@given(st.lists(ints, min_size=2, max_size=6, unique=True), st.randoms())
def test_sets_are_order_free_but_size_strict(grader: Grader, items: list[int], rnd) -> None:
    shuffled = items[:]
    rnd.shuffle(shuffled)
    ref = ", ".join(map(str, items))
    assert grader.grade(rf"\boxed{{{', '.join(map(str, shuffled))}}}", ref).correct
    assert not grader.grade(rf"\boxed{{{', '.join(map(str, shuffled[1:]))}}}", ref).correct
    extra = max(items) + 1
    assert not grader.grade(rf"\boxed{{{', '.join(map(str, [*shuffled, extra]))}}}", ref).correct
