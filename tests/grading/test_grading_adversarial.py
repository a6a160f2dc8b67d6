"""Adversarial answers: overflow falls back to comparing expression trees; nothing runs late.

A *flagged* verdict is one that says it is not an ordinary decision: ``timeout`` (with
``timed_out``), ``error``, or a ``mismatch`` whose ``error`` explains why (too long, cannot be
parsed, values too large to compare).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from reasonenv.grading import Grader, Verdict

TIMEOUT = 2.0
#: Worst latency allowed, as a multiple of the timeout plus a fixed allowance (noisy machine).
RATIO, SLACK_S = 1.25, 0.5
#: For checks of *which* verdict: these take well under a second on a quiet machine, but the
#: shared test machine can be 7x overloaded, and a timeout there says nothing about the logic.
DECIDE = 30.0
TOWER = r"x^{x^{x^{x}}}"


@pytest.fixture(scope="module")
def g() -> Iterator[Grader]:
    with Grader(n_workers=2, timeout=TIMEOUT) as grader:
        grader.grade(r"\boxed{x+1}", "1+x", timeout=60)
        yield grader


def _timed(
    g: Grader, response: str, reference: str, timeout: float = TIMEOUT
) -> tuple[float, Verdict]:
    t0 = time.monotonic()
    v = g.grade(response, reference, timeout=timeout)
    return time.monotonic() - t0, v


# -- overflow: a real verdict from the expression trees --------------------------------------


@pytest.mark.parametrize(
    ("response", "reference"),
    [
        (rf"\boxed{{{TOWER}}}", rf"{TOWER}+0"),  # issue 10's probe
        (rf"\boxed{{{TOWER}+0}}", TOWER),
        (rf"\boxed{{0+{TOWER}}}", rf"{TOWER}\cdot 1"),
        (r"\boxed{x^{x^{x^{x^{x}}}}}", r"x^{x^{x^{x^{x}}}}+0"),
        (r"\boxed{y^{x^{x^{x}}}}", r"1\cdot y^{x^{x^{x}}}"),
        (r"\boxed{x^{x^{x^{x}}}+y}", r"y+x^{x^{x^{x}}}"),
        (r"\boxed{10^{10^{10}}}", r"10^{10000000000}"),  # small powers are folded exactly
    ],
)
def test_equal_trees_are_correct_without_evaluating(
    g: Grader, response: str, reference: str
) -> None:
    _, v = _timed(g, response, reference, DECIDE)
    assert v.correct and v.reason == "symbolic", v


@pytest.mark.parametrize(
    ("response", "reference"),
    [
        (rf"\boxed{{{TOWER}}}", rf"{TOWER}+1"),
        (rf"\boxed{{{TOWER}}}", r"x^{x^{x^{y}}}"),
        (rf"\boxed{{2{TOWER}}}", TOWER),
    ],
)
def test_overflowing_values_fall_back_to_a_structural_mismatch(
    g: Grader, response: str, reference: str
) -> None:
    _, v = _timed(g, response, reference, DECIDE)
    assert v.reason == "mismatch" and not v.correct and not v.timed_out, v
    assert v.error and "too large" in v.error, v.error


@pytest.mark.parametrize(
    ("response", "reference"),
    [
        (r"\boxed{10^{10^{10}}}", "1"),
        (r"\boxed{9^{9^{9^{9}}}}", "1"),
        (r"\boxed{2^{99999999999}}", r"2^{99999999998}"),
        (r"\boxed{(10^{100})!}", r"(10^{100})!+1"),
        (r"\boxed{10^{10^{10}}!}", r"\sqrt{2}"),
    ],
)
def test_values_too_large_to_compute_are_decided_not_timed_out(
    g: Grader, response: str, reference: str
) -> None:
    """A size bound stops sympy/mpmath before they spin on an astronomic value."""
    _, v = _timed(g, response, reference, DECIDE)
    assert v.reason == "mismatch" and not v.timed_out, v
    assert v.error and "too large" in v.error, v.error


@pytest.mark.parametrize(
    ("response", "reference", "correct"),
    [
        (r"\boxed{10^{6}+1}", "10^{6}", False),  # folded: 1000001 vs 1000000
        (r"\boxed{2^{20}+1}", "2^{20}", False),
        (r"\boxed{10^{2000}+1}", "10^{2000}", False),  # too big to fold, small enough to compute
        (r"\boxed{10^{10^{10}}}", r"10^{10^{10}}+1", False),  # too big to compute
        (r"\boxed{10^{10^{10}}+1}", r"1+10^{10^{10}}", True),
        (r"\boxed{\frac{10^{8}+1}{10^{8}}}", "1", False),
        (r"\boxed{\frac{1}{3}+0}", "0.3333333", True),  # inexact side: tolerance still applies
    ],
)
def test_exact_values_compare_exactly(
    g: Grader, response: str, reference: str, correct: bool
) -> None:
    """Relative tolerance is for inexact values; 10^6+1 is not 10^6 (it used to be)."""
    _, v = _timed(g, response, reference, DECIDE)
    assert v.correct is correct, v


# -- neighbours: each returns in time, wrong, and flagged unless plainly decided --------------

#: Worker-side cases may also time out on an overloaded machine; both outcomes are flagged.
TIMEOUT_OR_FLAGGED_MISMATCH = frozenset({"timeout", "mismatch"})
#: name -> (response, reference, allowed reasons, whether the verdict must carry an ``error``)
ADVERSARIAL: dict[str, tuple[str, str, frozenset[str], bool]] = {
    "10^10^10 vs 1": (r"\boxed{10^{10^{10}}}", "1", TIMEOUT_OR_FLAGGED_MISMATCH, True),
    "power tower 9^9^9^9": (r"\boxed{9^{9^{9^{9}}}}", "1", TIMEOUT_OR_FLAGGED_MISMATCH, True),
    "2^(huge exponent)": (
        r"\boxed{2^{99999999999}}",
        r"2^{99999999998}",
        TIMEOUT_OR_FLAGGED_MISMATCH,
        True,
    ),
    "factorial of a googol": (
        r"\boxed{(10^{100})!}",
        r"(10^{100})!+1",
        TIMEOUT_OR_FLAGGED_MISMATCH,
        True,
    ),
    "nested parens x300": (
        r"\boxed{" + "(" * 300 + "x" + ")" * 300 + "}",
        "y",
        TIMEOUT_OR_FLAGGED_MISMATCH,
        True,
    ),
    "x tower of 40": (
        r"\boxed{" + "x^{" * 40 + "x" + "}" * 40 + "}",
        "x",
        TIMEOUT_OR_FLAGGED_MISMATCH,
        True,
    ),
    "nested sqrt x200": (
        r"\boxed{" + "\\sqrt{" * 200 + "2" + "}" * 200 + "}",
        r"\sqrt{3}",
        TIMEOUT_OR_FLAGGED_MISMATCH,
        False,
    ),
    "nested frac x300": (
        r"\boxed{" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "}",
        "1",
        frozenset({"mismatch"}),
        True,
    ),
    "megabyte inside the box": (
        r"\boxed{" + "x+" * 500_000 + "1}",
        "1",
        frozenset({"no_answer"}),
        True,
    ),
    "megabyte of open boxes": (r"\boxed{" * 150_000, "2", frozenset({"no_answer"}), True),
    "megabyte of braces": (
        "{" * 500_000 + r"\boxed{2}" + "}" * 500_000,
        "2",
        frozenset({"no_answer"}),
        True,
    ),
    "megabyte reference": (
        r"\boxed{1}",
        "x+" * 500_000 + "1",
        frozenset({"bad_reference"}),
        True,
    ),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_inputs_return_in_time_and_flagged(g: Grader, name: str) -> None:
    response, reference, reasons, flagged = ADVERSARIAL[name]
    elapsed, v = _timed(g, response, reference)
    assert elapsed <= RATIO * TIMEOUT + SLACK_S, f"{name}: {elapsed:.2f}s"
    assert not v.correct and v.reason in reasons, v
    assert v.timed_out == (v.reason == "timeout"), v
    if flagged or v.reason == "timeout":
        assert v.error, v
    assert g.grade(r"\boxed{2x}", "x+x", timeout=60).correct  # the pool is still fine


def test_an_unparseable_answer_says_so(g: Grader) -> None:
    v = g.grade(r"\boxed{x+}", "x+1", timeout=TIMEOUT)
    assert v.reason == "mismatch" and v.error and v.error.startswith("answer not parsed"), v
    v = g.grade(r"\boxed{(1, x+)}", "(1,x)", timeout=TIMEOUT)  # the note survives a tuple
    assert v.reason == "mismatch" and v.error and "not parsed" in v.error, v
