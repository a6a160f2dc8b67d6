"""Numeric problem generators used by :class:`~reasonenv.problems.procedural.ProceduralSource`.

Each generator has the signature ``gen(rng, difficulty) -> Generated`` and draws *only* from
``rng``. Gold answers are computed exactly with :class:`fractions.Fraction`. Every generator
records a Python-syntax ``expression`` (or ``equation``) in the metadata so the answer can be
re-derived independently of the generator, and a :class:`~reasonenv.problems.solutions.Calculation`
that is the worked solution (the same arithmetic, one step per operation). Building it draws
nothing from ``rng``, so the problem stream of a seed is the same as before solutions existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, TypeVar

import numpy as np

from reasonenv.problems.solutions import Calculation, Operand, Written

T = TypeVar("T")


@dataclass
class Generated:
    """Output of one generator call: question, exact answer, metadata, worked solution."""

    question: str
    answer: Fraction
    metadata: dict[str, Any] = field(default_factory=dict)
    calculation: Calculation | None = None


def randint(rng: np.random.Generator, low: int, high: int) -> int:
    """Uniform integer in the closed range ``[low, high]``."""
    return int(rng.integers(low, high + 1))


def choice(rng: np.random.Generator, options: Sequence[T]) -> T:
    """Uniform element of a non-empty sequence."""
    return options[int(rng.integers(len(options)))]


def nonzero(rng: np.random.Generator, low: int, high: int) -> int:
    """Uniform non-zero integer in ``[low, high]`` (the range must contain a non-zero value)."""
    while True:
        value = randint(rng, low, high)
        if value != 0:
            return value


def evaluate(values: Sequence[Fraction], ops: Sequence[str]) -> Fraction:
    """Evaluate ``v0 op0 v1 op1 ...`` with the usual precedence (``*``/``/`` before ``+``/``-``)."""
    terms: list[Fraction] = [Fraction(values[0])]
    signs: list[int] = [1]
    for op, value in zip(ops, values[1:], strict=True):
        if op == "*":
            terms[-1] *= value
        elif op == "/":
            terms[-1] /= value
        else:
            terms.append(Fraction(value))
            signs.append(1 if op == "+" else -1)
    return sum((sign * term for sign, term in zip(signs, terms, strict=True)), Fraction(0))


# ----------------------------------------------------------------------------- arithmetic

# (operand count range, +/- operand range, factor range for operands next to '*', ops)
_ARITH_LEVELS: dict[int, tuple[tuple[int, int], tuple[int, int], tuple[int, int], str]] = {
    1: ((2, 2), (1, 9), (1, 9), "+"),
    2: ((2, 2), (10, 99), (2, 9), "+-*"),
    3: ((3, 3), (10, 99), (2, 12), "+-*"),
    4: ((3, 4), (100, 999), (2, 25), "+-*"),
    5: ((4, 5), (100, 9999), (2, 99), "+-*"),
}


def _show_int(value: int) -> str:
    return f"({value})" if value < 0 else str(value)


def arithmetic(rng: np.random.Generator, difficulty: int) -> Generated:
    """Multi-operand integer arithmetic; level 5 adds one parenthesised group and negatives."""
    (n_lo, n_hi), add_range, mul_range, op_pool = _ARITH_LEVELS[difficulty]
    count = randint(rng, n_lo, n_hi)
    ops = [choice(rng, op_pool) for _ in range(count - 1)]
    operands: list[int] = []
    for i in range(count):
        near_mul = (i > 0 and ops[i - 1] == "*") or (i < count - 1 and ops[i] == "*")
        low, high = mul_range if near_mul else add_range
        value = randint(rng, low, high)
        if difficulty == 5 and rng.random() < 0.25:
            value = -value
        operands.append(value)
    if difficulty == 2 and ops[0] == "-" and operands[0] < operands[1]:
        operands.reverse()  # keep level-2 differences non-negative
    group = -1
    if difficulty == 5:
        candidates = [i for i, op in enumerate(ops) if op in "+-"]
        group = choice(rng, candidates) if candidates and rng.random() < 0.7 else -1
    # Values and ops after collapsing the optional parenthesised pair (group, group + 1).
    values: list[Fraction] = [Fraction(v) for v in operands]
    top_ops = list(ops)
    parts = [_show_int(v) for v in operands]
    if group >= 0:
        inner = evaluate(values[group : group + 2], ops[group : group + 1])
        values[group : group + 2] = [inner]
        del top_ops[group]
        parts[group] = f"({parts[group]} {ops[group]} {parts[group + 1]})"
        del parts[group + 1]
    answer = evaluate(values, top_ops)
    expression = parts[0]
    for op, part in zip(top_ops, parts[1:], strict=True):
        expression += f" {op} {part}"
    tokens: list[Fraction | str] = []
    for i, value in enumerate(operands):
        tokens += ["("] if i == group else []
        tokens.append(Fraction(value))
        tokens += [")"] if group >= 0 and i == group + 1 else []
        tokens += [ops[i]] if i < count - 1 else []
    return Generated(
        question=f"What is {expression}?",
        answer=answer,
        metadata={
            "expression": expression,
            "operands": operands,
            "operators": ops,
            "num_operands": count,
            "max_digits": max(len(str(abs(v))) for v in operands),
        },
        calculation=Calculation.from_tokens(tokens),
    )


# ----------------------------------------------------------------------------- chained sums

# (number of terms, term range, running total must stay >= 0)
_CHAIN_LEVELS: dict[int, tuple[int, tuple[int, int], bool]] = {
    1: (3, (1, 9), True),
    2: (4, (1, 20), True),
    3: (5, (10, 99), False),
    4: (7, (10, 999), False),
    5: (9, (100, 9999), False),
}


def chained_sums(rng: np.random.Generator, difficulty: int, num_terms: int | None = None) -> Generated:
    """A left-to-right chain ``a + b - c + d ...`` whose length grows with difficulty.

    ``num_terms`` overrides the level's chain length (the operand range stays the level's): e.g.
    difficulty 1 with ``num_terms=5`` is four single-digit running sums, one step each.
    """
    length, (low, high), keep_nonnegative = _CHAIN_LEVELS[difficulty]
    if num_terms is not None:
        length = num_terms
    terms = [randint(rng, low, high)]
    total = terms[0]
    for _ in range(length - 1):
        magnitude = randint(rng, low, high)
        subtract = rng.random() < 0.5
        if keep_nonnegative and magnitude > total:
            subtract = False
        term = -magnitude if subtract else magnitude
        terms.append(term)
        total += term
    expression = str(terms[0]) + "".join(f" {'-' if t < 0 else '+'} {abs(t)}" for t in terms[1:])
    tokens: list[Fraction | str] = [Fraction(terms[0])]
    for term in terms[1:]:
        tokens += ["-" if term < 0 else "+", Fraction(abs(term))]
    return Generated(
        question=f"What is {expression}?",
        answer=Fraction(total),
        metadata={"expression": expression, "terms": terms, "num_terms": length},
        calculation=Calculation.from_tokens(tokens),
    )


# ----------------------------------------------------------------------------- linear equations


def _linear(a: int, b: int, times: str) -> str:
    """Render ``a*x + b`` as ``3x - 2`` (``times=""``) or ``3*x - 2`` (``times="*"``)."""
    if a == 0:
        return str(b)
    coef = {1: "", -1: "-"}.get(a, f"{a}{times}")
    text = f"{coef}x"
    if b:
        text += f" {'-' if b < 0 else '+'} {abs(b)}"
    return text


EXPAND_STEP = "Expand: {left} {op} {right} = {result}."
COLLECT_STEP = "x terms: {left} {op} {right} = {result}."
MOVE_STEP = "{label}x = {left} {op} {right} = {result}."
DIVIDE_STEP = "x = {left} {op} {right} = {result}."


def linear_solution(a: int, b: int, d: int, e: int, shift: int | None = None) -> Calculation:
    """Worked solution of ``a x + b = d x + e`` (or ``a(x + shift) = d x + e``, ``b = a*shift``).

    Steps: expand ``a * shift`` (level 5), collect ``a - d`` (x on both sides), move the
    constant ``e - b``, divide by the coefficient ``a - d``. The move is skipped when ``b`` is 0
    and the division when the coefficient is 1, but never both: the last step always gives x.

    Example:
        >>> linear_solution(3, 2, 0, 14).steps()
        ('3x = 14 - 2 = 12.', 'x = 12 / 3 = 4.', 'The answer is \\\\boxed{4}.')
    """
    calc = Calculation()
    constant: Operand = Fraction(b)
    if shift is not None:
        constant = calc.emit(Fraction(a), "*", Fraction(shift), EXPAND_STEP)
    coefficient: Operand = Fraction(a)
    if d != 0:
        coefficient = calc.emit(Fraction(a), "-", Fraction(d), COLLECT_STEP)
    right: Operand = Fraction(e)
    if b != 0 or a - d == 1:
        right = calc.emit(Fraction(e), "-", constant, MOVE_STEP, label=coefficient)
    if a - d != 1:
        calc.emit(right, "/", coefficient, DIVIDE_STEP)
    return calc


def linear_equation(rng: np.random.Generator, difficulty: int) -> Generated:
    """Solve ``a x + b = c`` (levels 1-3) or with ``x`` on both sides (levels 4-5)."""
    shift: int | None = None  # level 5 writes the left side as a(x + shift)
    if difficulty == 1:
        a, x, b, d = 1, randint(rng, 0, 9), randint(rng, 1, 9), 0
    elif difficulty == 2:
        a, x, b, d = randint(rng, 2, 5), randint(rng, 0, 10), randint(rng, 0, 20), 0
    elif difficulty == 3:
        a, x, b, d = nonzero(rng, -9, 9), randint(rng, -10, 10), randint(rng, -30, 30), 0
    elif difficulty == 4:
        a, x, b = nonzero(rng, -12, 12), randint(rng, -15, 15), randint(rng, -40, 40)
        d = nonzero(rng, -12, 12)
        while d == a:
            d = nonzero(rng, -12, 12)
    else:
        a, x = nonzero(rng, -15, 15), randint(rng, -30, 30)
        while abs(a) == 1:
            a = nonzero(rng, -15, 15)
        d = nonzero(rng, -15, 15)
        while d == a:
            d = nonzero(rng, -15, 15)
        shift = nonzero(rng, -20, 20)
        b = a * shift  # lhs is a(x + shift)
    e = a * x + b - d * x  # right-hand constant makes x the unique solution
    if difficulty == 5:
        assert shift is not None
        inner = f"x {'-' if shift < 0 else '+'} {abs(shift)}"
        lhs_show, lhs_py = f"{a}({inner})", f"{a}*({inner})"
    else:
        lhs_show, lhs_py = _linear(a, b, ""), _linear(a, b, "*")
    rhs_show, rhs_py = _linear(d, e, ""), _linear(d, e, "*")
    equation = f"{lhs_show} = {rhs_show}"
    return Generated(
        question=f"Solve for x: {equation}",
        answer=Fraction(x),
        metadata={
            "equation": f"{lhs_py} = {rhs_py}",
            "lhs": [a, b],
            "rhs": [d, e],
            "both_sides": d != 0,
        },
        calculation=linear_solution(a, b, d, e, shift),
    )


# ----------------------------------------------------------------------------- fractions

# (number of fractions, max denominator, ops, allow improper/negative numerators)
_FRAC_LEVELS: dict[int, tuple[tuple[int, int], int, str, bool]] = {
    1: ((2, 2), 9, "+", False),
    2: ((2, 2), 10, "+-", False),
    3: ((2, 2), 12, "+-*", False),
    4: ((3, 3), 15, "+-*", False),
    5: ((3, 4), 20, "+-*/", True),
}


def fractions(rng: np.random.Generator, difficulty: int) -> Generated:
    """Add, subtract, multiply (and at level 5 divide) fractions; the answer is fully reduced."""
    (n_lo, n_hi), max_den, op_pool, wild = _FRAC_LEVELS[difficulty]
    count = randint(rng, n_lo, n_hi)
    ops = [choice(rng, op_pool) for _ in range(count - 1)]
    pairs: list[tuple[int, int]] = []
    if difficulty == 1:
        den = randint(rng, 2, max_den)
        pairs = [(randint(rng, 1, den - 1), den) for _ in range(count)]
    else:
        for _ in range(count):
            den = randint(rng, 2, max_den)
            if wild:
                num = nonzero(rng, -2 * den, 2 * den)
                while num % den == 0:
                    num = nonzero(rng, -2 * den, 2 * den)
            else:
                num = randint(rng, 1, den - 1)
            pairs.append((num, den))
    values = [Fraction(n, d) for n, d in pairs]
    if difficulty == 2 and ops[0] == "-" and values[0] < values[1]:
        pairs.reverse()
        values.reverse()
    answer = evaluate(values, ops)
    bracket = any(op in "*/" for op in ops)
    shown = [f"({n}/{d})" if bracket or n < 0 else f"{n}/{d}" for n, d in pairs]
    symbols = {"+": "+", "-": "-", "*": "*", "/": "÷"}
    text = shown[0] + "".join(f" {symbols[op]} {s}" for op, s in zip(ops, shown[1:], strict=True))
    expression = f"({pairs[0][0]}/{pairs[0][1]})" + "".join(
        f" {op} ({n}/{d})" for op, (n, d) in zip(ops, pairs[1:], strict=True)
    )
    return Generated(
        question=f"What is {text}? Give your answer as a fraction in lowest terms.",
        answer=answer,
        metadata={
            "expression": expression,
            "operands": [f"{n}/{d}" for n, d in pairs],
            "operators": ops,
            "num_operands": count,
            "max_denominator": max(d for _, d in pairs),
        },
        calculation=Calculation.from_tokens(
            [Written(Fraction(n, d), f"{n}/{d}") for n, d in pairs[:1]]
            + [t for op, (n, d) in zip(ops, pairs[1:], strict=True)
               for t in (op, Written(Fraction(n, d), f"{n}/{d}"))],
            symbols={"/": "÷"},
        ),
    )
