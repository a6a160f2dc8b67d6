"""Independent answer checkers used by the tests (no code shared with the generators)."""

from __future__ import annotations

import ast
import re
from fractions import Fraction

import sympy

_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


def exact_eval(expression: str) -> Fraction:
    """Evaluate an integer expression with + - * / and parentheses exactly, via Python's AST."""

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(f"unexpected syntax in {expression!r}: {ast.dump(node)}")

    return walk(ast.parse(expression, mode="eval"))


def parse_answer(answer: str) -> Fraction:
    """Parse a gold string that must be ``-?\\d+`` or ``-?\\d+/\\d+`` in lowest terms."""
    match = re.fullmatch(r"(-?\d+)(?:/(\d+))?", answer)
    assert match, f"answer {answer!r} is not an integer or p/q fraction"
    num, den = int(match.group(1)), int(match.group(2) or 1)
    value = Fraction(num, den)
    assert den > 0 and (value.numerator, value.denominator) == (num, den), (
        f"answer {answer!r} is not in lowest terms"
    )
    return value


def check_problem(problem) -> None:  # noqa: ANN001 - Problem
    """Verify a procedural problem's gold answer from its metadata, kind by kind."""
    meta = problem.metadata
    value = parse_answer(problem.answer)
    kind = meta["kind"]
    if kind in ("arithmetic", "chained_sums", "fractions"):
        assert exact_eval(meta["expression"]) == value
        if kind == "chained_sums":
            assert sum(meta["terms"]) == value
    elif kind == "linear_equation":
        a, b = meta["lhs"]
        d, e = meta["rhs"]
        assert a != d, "equation must have a unique solution"
        assert Fraction(a) * value + b == Fraction(d) * value + e
        lhs, rhs = meta["equation"].split("=")
        x = sympy.Symbol("x")
        solutions = sympy.solve(sympy.sympify(lhs) - sympy.sympify(rhs), x)
        assert solutions == [sympy.Rational(value.numerator, value.denominator)]
    elif kind == "word_problem":
        assert exact_eval(meta["formula"]) == value
        assert value.denominator == 1 and value >= 0
        for number in meta["quantities"].values():
            assert re.search(rf"(?<!\d){number}(?!\d)", problem.question), (
                f"quantity {number} not in question {problem.question!r}"
            )
    else:  # pragma: no cover
        raise AssertionError(f"unknown kind {kind}")


def _shopping(m: re.Match[str]) -> Fraction:
    prices = {m.group(1)[:3]: int(m.group(2)), m.group(3)[:3]: int(m.group(4))}
    return Fraction(
        int(m.group(5)) * prices[m.group(6)[:3]] + int(m.group(7)) * prices[m.group(8)[:3]]
    )


# Reads the *story text* only: each pattern recomputes the answer from the numbers it mentions.
STORY_SOLVERS: list[tuple[str, object]] = [
    (
        r"has (\d+) (\w+)\. (?:He|She) gets (\d+) more \2\. How many \2 does \w+ have now\?",
        lambda m: Fraction(int(m[1]) + int(m[3])),
    ),
    (
        r"has (\d+) (\w+)\. (?:He|She) gives (\d+) \2 to \w+\. How many \2 does \w+ have left\?",
        lambda m: Fraction(int(m[1]) - int(m[3])),
    ),
    (
        r"has (\d+) (\w+) and \w+ has (\d+) \2\. How many \2 do they have together\?",
        lambda m: Fraction(int(m[1]) + int(m[3])),
    ),
    (
        r"There are (\d+) bags with (\d+) (\w+) in each bag\.",
        lambda m: Fraction(int(m[1]) * int(m[2])),
    ),
    (r"shares (\d+) \w+ equally among (\d+) friends\.", lambda m: Fraction(int(m[1]), int(m[2]))),
    (
        r"buys (\d+) packs of (\w+) with (\d+) \2 in each pack\. Then (?:he|she) gives away (\d+) \2\.",
        lambda m: Fraction(int(m[1]) * int(m[3]) - int(m[4])),
    ),
    (
        r"has (\d+) coins worth 5 cents each and (\d+) coins worth 10 cents each\.",
        lambda m: Fraction(5 * int(m[1]) + 10 * int(m[2])),
    ),
    (
        r"A ([a-z ]+) costs \$(\d+) and a ([a-z ]+) costs \$(\d+)\. \w+ buys (\d+) ([a-z ]+) and (\d+) ([a-z ]+)\.",
        _shopping,
    ),
    (
        r"travels at (\d+) km per hour for (\d+) hours and then at (\d+) km per hour for (\d+) hours\.",
        lambda m: Fraction(int(m[1]) * int(m[2]) + int(m[3]) * int(m[4])),
    ),
    (
        r"start (\d+) km apart and travel toward each other, one at (\d+) km per hour and the other at (\d+) km",
        lambda m: Fraction(int(m[1]), int(m[2]) + int(m[3])),
    ),
    (
        r"saves \$(\d+) every week\. After (\d+) weeks (?:he|she) spends \$(\d+)",
        lambda m: Fraction(int(m[1]) * int(m[2]) - int(m[3])),
    ),
    (
        r"has (\d+) (\w+)\. It sells 1/(\d+) of them in the morning and 1/(\d+) of the remaining \2",
        lambda m: int(m[1]) * (1 - Fraction(1, int(m[3]))) * (1 - Fraction(1, int(m[4]))),
    ),
    (
        r"costs \$(\d+)\. It is on sale for (\d+)% off\. \w+ buys (\d+) ",
        lambda m: int(m[3]) * int(m[1]) * (1 - Fraction(int(m[2]), 100)),
    ),
    (
        r"leaves a station at (\d+) km per hour\. (\d+) hours later a second train .* at (\d+) km per hour\.",
        lambda m: Fraction(int(m[1]) * int(m[2]), int(m[3]) - int(m[1])),
    ),
]


def solve_story(question: str) -> Fraction:
    """Answer a templated word problem from its text alone; exactly one pattern must match."""
    hits = [(p, fn) for p, fn in STORY_SOLVERS if re.search(p, question)]
    assert len(hits) == 1, f"{len(hits)} story patterns match {question!r}"
    pattern, solve = hits[0]
    return solve(re.search(pattern, question))  # type: ignore[operator]
