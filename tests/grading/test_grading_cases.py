"""Hand-made (response, reference, expected) table: what a careful human grader would say.

Rules encoded here (see docs/grading.md):
* terminating decimals/integers compare exactly; the relative tolerance 1e-6 applies only when
  one side is irrational or a non-terminating rational (1/3, pi, sqrt 2);
* a percent sign on exactly one side also accepts value/100 (50% == 50 == 0.5);
* degrees are dropped (30^\\circ == 30) but never converted to radians;
* sets/bare lists are order-free but same-size; tuples/intervals are ordered with brackets.
"""

from __future__ import annotations

import pytest

B = r"\boxed{%s}"

CASES: list[tuple[str, str, str, bool]] = [
    # --- plain numbers -------------------------------------------------------------------------
    ("int", B % "42", "42", True),
    ("int-wrong", B % "42", "43", False),
    ("neg", B % "-3", "-3", True),
    ("neg-space", B % "- 3", "-3", True),
    ("neg-unicode", B % "\u22123", "-3", True),
    ("sign-matters", B % "3", "-3", False),
    ("plus-sign", B % "+5", "5", True),
    ("trailing-zero", B % "5.0", "5", True),
    ("trailing-zeros", B % "5.00", "5", True),
    ("leading-dot", B % "0.5", ".5", True),
    ("leading-zeros", B % "007", "7", True),
    ("decimal-vs-frac", B % "3.5", r"\frac{7}{2}", True),
    ("zero", B % "0", "0", True),
    ("zero-decimal", B % "0.0", "0", True),
    ("tiny-vs-zero", B % "1e-13", "0", False),
    ("sci-vs-int", B % r"1.5\times 10^{3}", "1500", True),
    ("sci-e", B % "2.5e3", "2500", True),
    ("pow10", B % "10^{-3}", "0.001", True),
    ("big-int-off-by-one", B % "1000001", "1000000", False),
    ("big-int", B % "123456789012345678901234567890", "123456789012345678901234567890", True),
    # known false positives of absolute-tolerance checkers
    ("fp-tiny-1e-8", B % "1e-8", "2e-8", False),
    ("fp-tiny-1e-9", B % "1e-9", r"2\times 10^{-9}", False),
    ("fp-tiny-decimal", B % "0.000001", "0.000002", False),
    ("fp-substring-12-2", B % "12", "2", False),
    ("fp-substring-2-12", B % "2", "12", False),
    ("fp-substring-text", "The answer is 123.", "23", False),
    ("fp-substring-neg", B % "-12", "12", False),
    # --- fractions -------------------------------------------------------------------------------
    ("frac-decimal", B % r"\frac{1}{2}", "0.5", True),
    ("dfrac-short", B % r"\dfrac{1}{2}", r"\frac12", True),
    ("tfrac-slash", B % r"\tfrac{3}{4}", "3/4", True),
    ("slash-frac", B % "1/2", r"\frac{1}{2}", True),
    ("unreduced", B % r"\frac{2}{4}", r"\frac{1}{2}", True),
    ("fp-brace-strip", B % r"\frac{1}{2}", "12", False),
    ("fp-brace-strip-rev", B % "12", r"\frac{1}{2}", False),
    ("third-3dp", B % r"\frac{1}{3}", "0.333", False),
    ("third-3dp-rev", B % "0.333", r"\frac{1}{3}", False),
    ("third-7dp", B % "0.3333333", r"\frac{1}{3}", True),
    ("two-thirds-rounded", B % r"\frac{2}{3}", "0.67", False),
    ("neg-frac", B % r"-\frac{1}{2}", "-0.5", True),
    ("neg-numerator", B % r"\frac{-1}{2}", r"-\frac{1}{2}", True),
    ("mixed-number", B % r"2\frac{1}{2}", r"\frac{5}{2}", True),
    ("improper-decimal", B % r"\frac{5}{2}", "2.5", True),
    ("frac-of-x", B % r"\frac{x}{2}", r"\frac{1}{2}x", True),
    ("nested-frac", B % r"\frac{\frac{1}{2}}{3}", r"\frac16", True),
    ("frac-wrong", B % r"\frac{3}{4}", r"\frac{4}{3}", False),
    # --- radicals --------------------------------------------------------------------------------
    ("rad-rationalised", B % r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", True),
    ("rad-slash", B % r"\sqrt{2}/2", r"\frac{\sqrt2}{2}", True),
    ("rad-simplify", B % r"2\sqrt{3}", r"\sqrt{12}", True),
    ("rad-ascii", B % "2*sqrt(3)", r"2\sqrt{3}", True),
    ("rad-wrong", B % r"\sqrt{3}", r"\sqrt{2}", False),
    ("rad-rounded", B % "1.414", r"\sqrt{2}", False),
    ("rad-8dp", B % "1.41421356", r"\sqrt{2}", True),
    ("cube-root", B % r"\sqrt[3]{8}", "2", True),
    ("rad-18", B % r"3\sqrt{2}", r"\sqrt{18}", True),
    ("rad-8", B % r"\sqrt{8}", r"2\sqrt{2}", True),
    ("rad-third", B % r"\frac{\sqrt{3}}{3}", r"\frac{1}{\sqrt{3}}", True),
    ("rad-short", B % r"\sqrt2", r"\sqrt{2}", True),
    # --- pi ----------------------------------------------------------------------------------------
    ("pi", B % r"\pi", r"\pi", True),
    ("pi-2dp", B % "3.14", r"\pi", False),
    ("pi-8dp", B % "3.14159265", r"\pi", True),
    ("pi-4dp", B % "3.1416", r"\pi", False),
    ("two-pi-space", B % r"2\pi", r"2 \pi", True),
    ("pi-half", B % r"\frac{\pi}{2}", r"\pi/2", True),
    ("pi-area", B % r"12\pi", r"12\pi", True),
    ("pi-r2", B % r"\pi r^2", r"r^2\pi", True),
    ("pi-wrong", B % r"2\pi", r"\pi", False),
    ("pi-ascii", B % "pi/2", r"\frac{\pi}{2}", True),
    ("unicode-pi", B % "2\u03c0", r"2\pi", True),
    ("no-deg-to-rad", B % r"\frac{\pi}{6}", r"30^\circ", False),
    # --- sets, "find all" ---------------------------------------------------------------------
    ("set-order", B % r"\{1,2\}", r"\{2,1\}", True),
    ("list-order", B % "1, 2", "2, 1", True),
    ("fp-any-element", B % "1,2", "1", False),
    ("subset", B % "1", "1, 2", False),
    ("superset", B % "1,2,3", "1,2", False),
    ("set-superset", B % r"\{1,2,3\}", r"\{1,2\}", False),
    ("singleton-set", B % r"\{3\}", "3", True),
    ("multiset", B % "1,1", "1, 2", False),
    ("list-neg", B % "-2, 3", "3, -2", True),
    ("list-mixed-forms", B % r"\frac{1}{2}, -1", "-1, 0.5", True),
    ("or-list", B % r"x = 1 \text{ or } x = 2", "1, 2", True),
    ("and-list", "The answer is 3 and 5.", "5, 3", True),
    ("emptyset", B % r"\emptyset", r"\varnothing", True),
    ("empty-braces", B % r"\{\}", r"\emptyset", True),
    ("pm-expands", B % r"1 \pm \sqrt{2}", r"1+\sqrt{2}, 1-\sqrt{2}", True),
    ("pm-half-only", B % r"1+\sqrt{2}", r"1\pm\sqrt{2}", False),
    ("set-vs-list", B % r"\{1, 2\}", "1, 2", True),
    ("set-symbolic-elems", B % r"\{\sqrt{2}/2, 1\}", r"\{1, \frac{1}{\sqrt{2}}\}", True),
    ("set-wrong-elem", B % r"\{1,3\}", r"\{1,2\}", False),
    ("set-membership", B % r"x \in \{1, 2\}", "1,2", True),
    ("interval-membership", B % r"x \in (1, 2]", "(1,2]", True),
    # --- tuples and intervals ------------------------------------------------------------------
    ("tuple", B % "(1,2)", "(1,2)", True),
    ("tuple-order", B % "(2,1)", "(1,2)", False),
    ("open-vs-closed", B % "(1,2)", "[1,2]", False),
    ("half-open", B % "(1,2]", "(1,2)", False),
    ("left-right", B % "[1,2)", r"\left[1, 2\right)", True),
    ("ray", B % r"(-\infty, 3)", r"(-\infty,3)", True),
    ("ray-closed", B % r"(-\infty, 3]", r"(-\infty,3)", False),
    ("union-order", B % r"(-\infty,1)\cup(2,\infty)", r"(2,\infty)\cup(-\infty,1)", True),
    ("union-bracket", B % r"(-\infty,1)\cup(2,\infty)", r"(-\infty,1]\cup(2,\infty)", False),
    ("tuple-forms", B % r"(0.5, \frac{3}{2})", r"\left(\frac12, 1.5\right)", True),
    ("tuple-length", B % "(1,2,3)", "(1,2)", False),
    ("tuple-symbolic", B % r"(\sqrt{4}, 2x)", "(2, x*2)", True),
    ("inf-word", B % "(-inf, 3]", r"(-\infty, 3]", True),
    ("neg-inf", B % r"-\infty", r"\infty", False),
    # --- matrices --------------------------------------------------------------------------------
    (
        "pmat-bmat",
        B % r"\begin{pmatrix}1&2\\3&4\end{pmatrix}",
        r"\begin{bmatrix}1 & 2 \\ 3 & 4\end{bmatrix}",
        True,
    ),
    (
        "mat-transposed",
        B % r"\begin{pmatrix}1&2\\3&4\end{pmatrix}",
        r"\begin{pmatrix}1&3\\2&4\end{pmatrix}",
        False,
    ),
    (
        "mat-shape",
        B % r"\begin{pmatrix}1\\2\end{pmatrix}",
        r"\begin{pmatrix}1&2\end{pmatrix}",
        False,
    ),
    (
        "mat-symbolic",
        B % r"\begin{pmatrix} \frac{\sqrt2}{2} \\ 0.5 \end{pmatrix}",
        r"\begin{pmatrix} 1/\sqrt{2} \\ \frac12 \end{pmatrix}",
        True,
    ),
    ("vector-tuple", B % "(1,2,3)", r"\begin{pmatrix}1\\2\\3\end{pmatrix}", True),
    ("vector-wrong", B % "(1,2,4)", r"\begin{pmatrix}1\\2\\3\end{pmatrix}", False),
    ("mat-vs-flat", B % r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", "(1,2,3,4)", False),
    (
        "mat-negative",
        B % r"\begin{pmatrix}-1&0\\0&-1\end{pmatrix}",
        r"\begin{pmatrix}-1&0\\0&-1\end{pmatrix}",
        True,
    ),
    # --- units and currency --------------------------------------------------------------------
    ("unit-text", B % r"5\text{ cm}", "5", True),
    ("unit-mbox-sq", B % r"5 \mbox{ cm}^2", "5", True),
    ("unit-dollars", B % r"12 \text{ dollars}", "12", True),
    ("dollar-sign", B % r"\$12", "12", True),
    ("dollar-cents", B % r"\$12.50", "12.5", True),
    ("unit-words", "The answer is 18 apples.", "18", True),
    ("unit-wrong-value", B % r"10\text{ meters}", "100", False),
    ("unit-attached", B % "5cm", "5", True),
    ("unit-frac", B % r"\frac{1}{2}\text{ cup}", "0.5", True),
    ("unit-both", B % r"7\text{ inches}", r"7\text{ in}", True),
    # --- percents --------------------------------------------------------------------------------
    ("pct-pct", B % r"50\%", r"50\%", True),
    ("pct-bare", B % "50", r"50\%", True),
    ("pct-fraction", B % "0.5", r"50\%", True),
    ("pct-pred-fraction-ref", B % r"50\%", "0.5", True),
    ("pct-pred-bare-ref", B % r"50\%", "50", True),
    ("no-pct-no-scaling", B % "0.5", "50", False),
    ("pct-wrong", B % r"5\%", r"50\%", False),
    ("pct-word", B % "25 percent", r"25\%", True),
    ("pct-vs-frac", B % r"12.5\%", r"\frac{1}{8}", True),
    ("pct-both-scaled", B % r"0.5\%", r"50\%", False),
    # --- degrees ---------------------------------------------------------------------------------
    ("deg-circ", B % r"30^\circ", "30", True),
    ("deg-brace", B % r"30^{\circ}", r"30^\circ", True),
    ("deg-unicode", B % "30\u00b0", "30", True),
    ("deg-ref", B % "30", r"30^\circ", True),
    ("deg-wrong", B % r"60^\circ", r"30^\circ", False),
    ("deg-word", B % "45 degrees", "45", True),
    # --- \text, multiple choice, words ---------------------------------------------------------
    ("mc-text-paren", B % r"\text{(B)}", "B", True),
    ("mc-ref-text", B % "B", r"\text{(B)}", True),
    ("mc-paren", B % "(B)", "B", True),
    ("mc-textbf", B % r"\textbf{(C)}", "C", True),
    ("mc-wrong", B % "C", "B", False),
    ("mc-answer-is", "The answer is (D).", "D", True),
    ("mc-lowercase", "The answer is b.", "B", True),
    ("mc-two-letters", B % "AB", "B", False),
    ("word-text", B % r"\text{Monday}", "Monday", True),
    ("word-ref-text", B % "Monday", r"\text{Monday}", True),
    ("word-wrong", B % r"\text{Tuesday}", "Monday", False),
    ("text-number", B % r"\text{13}", "13", True),
    ("word-case", B % r"\text{yes}", "Yes", True),
    ("word-no", B % r"\text{no}", "yes", False),
    ("word-anagram", B % r"\text{pots}", "stop", False),
    ("word-multiword", B % r"\text{New York}", "new york", True),
    # --- thousands separators vs tuples ---------------------------------------------------------
    ("sep-gsm8k", "#### 1,234", "1234", True),
    ("sep-millions", B % "1,234,567", "1234567", True),
    ("sep-ref", B % "1234567", "1,234,567", True),
    ("sep-latex", B % "1{,}000", "1000", True),
    ("sep-thinspace", B % r"10\,000", "10000", True),
    ("sep-not-in-tuple", B % "(1,234)", "1234", False),
    ("sep-not-list", B % "1,2", "12", False),
    ("sep-two-digit-group", B % "1,23", "123", False),
    ("sep-decimal", B % "12,345.5", "12345.5", True),
    ("sep-dollars", B % r"\$1,000", "1000", True),
    ("sep-vs-one", B % "1,000", "1", False),
    ("sep-list-ref", B % "1, 234", "1,234", False),
    # --- equations -------------------------------------------------------------------------------
    ("eq-commuted", B % "y = 2x+1", "y=1+2x", True),
    ("eq-wrong", B % "y=2x+1", "y=2x-1", False),
    ("assign-vs-value", B % "x=3", "3", True),
    ("value-vs-assign", B % "3", "x=3", True),
    ("fp-assign-sign", B % "x=3", "x=-3", False),
    ("assign-neg", B % "x = -3", "-3", True),
    ("assign-k", B % "k=2", "2", True),
    ("eq-rearranged", B % "2x - y + 1 = 0", "y=2x+1", True),
    ("eq-circle", B % "x^2+y^2=1", "y^2+x^2=1", True),
    ("eq-circle-radius", B % "x^2+y^2=4", "x^2+y^2=1", False),
    ("eq-power", B % "y=x^2", "y=x^3", False),
    ("eq-other-var", B % "x=3", "y=3", False),
    ("ineq-flip", B % "x > 3", "3 < x", True),
    ("ineq-strict", B % r"x \geq 3", "x > 3", False),
    ("eq-scaled", B % "2x+2y=2", "x+y=1", True),
    # --- general expressions --------------------------------------------------------------------
    ("poly", B % "x^2+1", "1+x^2", True),
    ("expand", B % "(x+1)^2", "x^2+2x+1", True),
    ("expand-wrong", B % "(x+1)^2", "x^2+1", False),
    ("implicit-mult", B % "2x", "x*2", True),
    ("frac-expr", B % r"\frac{x+1}{2}", r"\frac{1}{2}x+\frac12", True),
    ("factor", B % "x^2-1", "(x-1)(x+1)", True),
    ("trig-identity", B % r"\sin^2 x + \cos^2 x", "1", True),
    ("euler", B % r"e^{i\pi}", "-1", True),
    ("complex", B % "1+2i", "2i+1", True),
    ("complex-conj", B % "1-2i", "1+2i", False),
    ("binom", B % r"\binom{5}{2}", "10", True),
    ("factorial", B % "5!", "120", True),
    ("power", B % "2^{10}", "1024", True),
    ("power-wrong", B % "2^{10}", "1000", False),
    ("log-base", B % r"\log_2 8", "3", True),
    ("juxtaposed-paren", B % "3(2)", "5", False),
    ("commute-symbols", B % "a+b", "b+a", True),
    ("ascii-power", B % "x**2", "x^2", True),
    # --- extraction: boxes, "The answer is", "####" ---------------------------------------------
    ("box-nested-braces", r"We get \boxed{\frac{\sqrt{2}}{2}}.", r"\frac{1}{\sqrt{2}}", True),
    ("box-in-box", B % B % "7", "7", True),
    ("box-braces", B % "{5}", "5", True),
    ("box-truncated", r"so \boxed{\frac{1}{2}", "1/2", False),
    ("fbox", r"\fbox{7}", "7", True),
    ("box-space-form", r"\boxed 7", "7", True),
    ("box-in-dollars", r"$\boxed{\{1,2\}}$", r"\{1,2\}", True),
    ("last-box-wins", r"First \boxed{2} ... actually \boxed{3}", "3", True),
    ("fp-first-box", r"First \boxed{2} ... actually \boxed{3}", "2", False),
    ("last-box-wins-2", r"\boxed{3} wait, no: \boxed{2}", "3", False),
    ("answer-is", "The answer is 5.", "5", True),
    ("final-answer-is-dollars", "the final answer is $\\frac{3}{4}$.", "0.75", True),
    ("final-answer-colon", "Final Answer: 12", "12", True),
    ("final-answer-bold", "**Final Answer:** 12", "12", True),
    ("answer-is-colon", "The answer is: 8", "8", True),
    ("answer-is-decimal", "So the answer is 3.5.", "3.5", True),
    ("answer-is-assignment", "The answer is $x = 4$.", "4", True),
    ("answer-is-then-chatter", "Therefore, the answer is 10. Then I double check 11.", "10", True),
    ("answer-is-boxed", r"The answer is $\boxed{9}$.", "9", True),
    ("gsm8k", "#### 72", "72", True),
    ("gsm8k-multiline", "Step 1: ...\nStep 2: ...\n#### 18\n", "18", True),
    ("gsm8k-dollar-sep", "#### $1,080", "1080", True),
    ("gsm8k-wrong", "#### 17", "18", False),
    ("no-marker", "I think it's 5", "5", False),
    ("ref-boxed", "The answer is 6.", r"\boxed{6}", True),
]


@pytest.mark.parametrize(
    ("response", "reference", "expected"),
    [pytest.param(r, ref, exp, id=name) for name, r, ref, exp in CASES],
)
def test_case_table(grader, response: str, reference: str, expected: bool) -> None:
    v = grader.grade(response, reference)
    assert v.correct is expected, v
    assert v.reference_ok, v
    assert not v.timed_out, v


def test_table_is_large_and_unique() -> None:
    names = [c[0] for c in CASES]
    assert len(CASES) >= 150
    assert len(set(names)) == len(names)
    assert sum(1 for c in CASES if c[3]) > 40 and sum(1 for c in CASES if not c[3]) > 40


def test_case_table_batch_matches_sequential(grader) -> None:
    pairs = [(r, ref) for _, r, ref, _ in CASES]
    verdicts = grader.grade_batch(pairs)
    assert [v.correct for v in verdicts] == [c[3] for c in CASES]
