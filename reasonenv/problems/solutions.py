"""Worked step-by-step solutions of procedural problems, and corrupted variants of them.

A generator describes its arithmetic as a :class:`Calculation`: a list of binary
:class:`Operation` s in the order a person would do them, each rendered as one short step such
as ``"3 * 4 = 12."``; the last step is ``"The answer is \\boxed{...}."``. Evaluating the same
calculation with one operation's result shifted gives the corrupted variant: the wrong value is
carried into every later step (each later step is itself computed correctly), so the final
answer is wrong too and the shifted step is the first wrong one.

Example:
    >>> from fractions import Fraction as F
    >>> calc = Calculation.from_tokens([F(2), "+", F(3), "*", F(4)])
    >>> calc.steps()
    ('3 * 4 = 12.', '2 + 12 = 14.', 'The answer is \\\\boxed{14}.')
    >>> render_solution(calc.steps(), sep="\\n")
    '3 * 4 = 12.\\n2 + 12 = 14.\\nThe answer is \\\\boxed{14}.'
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from reasonenv.problems._answers import format_fraction

#: The default step template: ``"<left> <op> <right> = <result>."``.
PLAIN = "{left} {op} {right} = {result}."
#: The final step of every worked solution.
FINAL = "The answer is \\boxed{{{answer}}}."
#: Separators the env's segmenter understands (``split="\\n\\n"`` and ``split="\\n"``).
SEPARATORS = ("\n\n", "\n")
#: Error sizes tried for a corrupted step, as multiples of ``1 / denominator`` of the true result.
SMALL_ERRORS = (-2, -1, 1, 2)
#: Added for results of two or more digits (a carry slip).
CARRY_ERRORS = (-10, 10)


@dataclass(frozen=True)
class Ref:
    """The result of an earlier operation, by its index in :attr:`Calculation.operations`."""

    index: int


@dataclass(frozen=True)
class Written:
    """A literal value shown as the question writes it (``6/8`` stays ``6/8`` in the steps)."""

    value: Fraction
    text: str


Operand = Fraction | Written | Ref


@dataclass(frozen=True)
class Operation:
    """One binary operation of a calculation, rendered as one step.

    Attributes:
        left: A literal value (a Fraction, or :class:`Written` to keep the question's spelling)
            or a reference to an earlier result.
        op: ``"+"``, ``"-"``, ``"*"`` or ``"/"``.
        right: A literal value or a reference to an earlier result.
        template: ``str.format`` text with ``{left}``, ``{op}``, ``{right}``, ``{result}`` and
            optionally ``{label}`` (the value of :attr:`label` written as an x coefficient:
            ``"3"``, ``""`` for 1, ``"-"`` for -1).
        label: Operand shown through ``{label}`` (e.g. the coefficient in ``"3x = 20 - 8 = 12."``).
    """

    left: Operand
    op: str
    right: Operand
    template: str = PLAIN
    label: Operand | None = None

    def __post_init__(self) -> None:
        if self.op not in "+-*/" or len(self.op) != 1:
            raise ValueError(f"operation must be one of + - * /, got {self.op!r}")


def apply(left: Fraction, op: str, right: Fraction) -> Fraction:
    """Exact value of ``left op right`` (raises ``ZeroDivisionError`` on a zero divisor).

    Example:
        >>> apply(Fraction(1, 2), "/", Fraction(3, 4))
        Fraction(2, 3)
    """
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    return left / right


def show_value(value: Fraction, *, wrap_negative: bool = False) -> str:
    """A value as it appears in a step: ``"5"``, ``"-3/4"``, or ``"(-3/4)"`` when wrapped.

    Example:
        >>> show_value(Fraction(-3, 4)), show_value(Fraction(-5), wrap_negative=True)
        ('-3/4', '(-5)')
    """
    text = format_fraction(value)
    return f"({text})" if wrap_negative and value < 0 else text


def show_coefficient(value: Fraction) -> str:
    """A value as the coefficient of x: ``"3"``, ``""`` for 1, ``"-"`` for -1.

    Example:
        >>> [show_coefficient(Fraction(v)) + "x" for v in (3, 1, -1)]
        ['3x', 'x', '-x']
    """
    if value == 1:
        return ""
    if value == -1:
        return "-"
    return format_fraction(value)


@dataclass
class Calculation:
    """An ordered list of operations whose last result is the answer.

    Args:
        operations: The operations in step order; operands refer only to earlier results.
        symbols: How each op is written in the steps (default: as itself); the fractions
            generator writes division as ``"÷"``.

    Example:
        >>> calc = Calculation()
        >>> total = calc.emit(Fraction(8), "-", Fraction(6))
        >>> calc.emit(total, "+", Fraction(3)) == Ref(1), calc.answer
        (True, Fraction(5, 1))
    """

    operations: list[Operation] = field(default_factory=list)
    symbols: Mapping[str, str] = field(default_factory=dict)

    # -- building ----------------------------------------------------------------------------
    def emit(
        self, left: Operand, op: str, right: Operand, template: str = PLAIN,
        label: Operand | None = None,
    ) -> Ref:
        """Append one operation and return a reference to its result."""
        for operand in (left, right, label):
            if isinstance(operand, Ref) and not 0 <= operand.index < len(self.operations):
                raise ValueError(f"operand {operand} refers to no earlier operation")
        self.operations.append(Operation(left, op, right, template, label))
        return Ref(len(self.operations) - 1)

    @classmethod
    def from_tokens(
        cls, tokens: Sequence[Fraction | Written | str], symbols: Mapping[str, str] | None = None
    ) -> Calculation:
        """Build from an infix token list of values, ``+ - * /`` and parentheses.

        ``*`` and ``/`` bind tighter than ``+`` and ``-``; operators of one level apply left to
        right, and a parenthesised group is worked out when the reading reaches it. So
        ``2 + 3 * 4 - 5`` becomes ``3 * 4``, ``2 + 12``, ``14 - 5``.

        Example:
            >>> calc = Calculation.from_tokens([Fraction(9), "/", "(", Fraction(1), "+",
            ...                                 Fraction(2), ")"])
            >>> calc.steps()[:2]
            ('1 + 2 = 3.', '9 / 3 = 3.')
        """
        calc = cls(symbols=dict(symbols or {}))
        stream = iter(tokens)
        result, closing = calc._expression(stream)
        if closing is not None or not calc.operations:
            raise ValueError(f"tokens {list(tokens)!r} are not an expression with an operator")
        if result != Ref(len(calc.operations) - 1):
            raise ValueError("the final result must be the last operation")  # pragma: no cover
        return calc

    def _primary(self, stream: Iterator[Fraction | Written | str]) -> Operand:
        token = next(stream)
        if token == "(":
            value, closing = self._expression(stream)
            if closing != ")":
                raise ValueError("unbalanced parenthesis in calculation tokens")
            return value
        if not isinstance(token, (Fraction, Written)):
            raise ValueError(f"expected a value or '(', got {token!r}")
        return token

    def _expression(
        self, stream: Iterator[Fraction | Written | str]
    ) -> tuple[Operand, str | None]:
        """Parse ``primary (op primary)*`` up to ``)`` or the end; returns (value, stopper)."""
        total: Operand | None = None  # sum of the finished terms
        pending = "+"  # the +/- joining `term` to `total`
        term = self._primary(stream)
        for token in stream:
            if token == ")":
                return self._join(total, pending, term), ")"
            if token in ("*", "/"):
                term = self.emit(term, str(token), self._primary(stream))
            elif token in ("+", "-"):
                total = self._join(total, pending, term)
                pending, term = str(token), self._primary(stream)
            else:
                raise ValueError(f"expected an operator, got {token!r}")
        return self._join(total, pending, term), None

    def _join(self, total: Operand | None, op: str, term: Operand) -> Operand:
        return term if total is None else self.emit(total, op, term)

    # -- evaluating and rendering ------------------------------------------------------------
    def values(self, error: tuple[int, Fraction] | None = None) -> list[Fraction]:
        """The result of every operation; ``error=(i, delta)`` adds ``delta`` to result ``i``.

        Raises:
            ZeroDivisionError: when a (possibly corrupted) divisor is zero.
        """
        out: list[Fraction] = []
        for i, operation in enumerate(self.operations):
            value = apply(self._read(operation.left, out), operation.op,
                          self._read(operation.right, out))  # fmt: skip
            if error is not None and error[0] == i:
                value += error[1]
            out.append(value)
        return out

    @staticmethod
    def _read(operand: Operand, values: Sequence[Fraction]) -> Fraction:
        if isinstance(operand, Ref):
            return values[operand.index]
        return operand.value if isinstance(operand, Written) else operand

    def _show(self, operand: Operand, values: Sequence[Fraction], *, right: bool) -> str:
        if isinstance(operand, Written):
            negative = operand.value < 0 and right
            return f"({operand.text})" if negative else operand.text
        return show_value(self._read(operand, values), wrap_negative=right)

    @property
    def answer(self) -> Fraction:
        """The exact answer (the last operation's result)."""
        return self.values()[-1]

    def steps(self, values: Sequence[Fraction] | None = None) -> tuple[str, ...]:
        """Render one step per operation, then the boxed answer.

        Args:
            values: Results to show (default: the correct ones from :meth:`values`).
        """
        values = self.values() if values is None else values
        lines = []
        for operation, result in zip(self.operations, values, strict=True):
            label = "" if operation.label is None else show_coefficient(
                self._read(operation.label, values))  # fmt: skip
            lines.append(operation.template.format(
                left=self._show(operation.left, values, right=False),
                op=self.symbols.get(operation.op, operation.op),
                right=self._show(operation.right, values, right=True),
                result=show_value(result), label=label))  # fmt: skip
        lines.append(FINAL.format(answer=format_fraction(values[-1])))
        return tuple(lines)

    def corrupt(self, rng: np.random.Generator) -> tuple[tuple[str, ...], int]:
        """A variant with one wrong result that changes the final answer.

        The operation and the error size are drawn from ``rng`` among the (operation, error)
        pairs whose wrong value reaches the answer: the error is ``e / q`` for ``e`` in
        :data:`SMALL_ERRORS` (and :data:`CARRY_ERRORS` for results of two or more digits), with
        ``q`` the true result's denominator, so integers stay integers.

        Returns:
            The corrupted steps and the index of the first wrong step (the corrupted operation).

        Raises:
            ValueError: if no single error changes the answer (no generator produces that).

        Example:
            >>> calc = Calculation.from_tokens([Fraction(3), "+", Fraction(4)])
            >>> steps, first = calc.corrupt(np.random.default_rng(0))
            >>> first, steps[0] != calc.steps()[0], steps[-1] != calc.steps()[-1]
            (0, True, True)
        """
        truth = self.values()
        candidates = []
        for i, value in enumerate(truth):
            errors = SMALL_ERRORS + (CARRY_ERRORS if abs(value.numerator) >= 10 else ())
            candidates += [(i, Fraction(e, value.denominator)) for e in errors]
        for pick in rng.permutation(len(candidates)):
            index, delta = candidates[int(pick)]
            try:
                wrong = self.values(error=(index, delta))
            except ZeroDivisionError:
                continue
            if wrong[-1] != truth[-1]:
                return self.steps(wrong), index
        raise ValueError(f"no single-step error changes the answer of {self.steps()!r}")


def render_solution(steps: Sequence[str], sep: str = "\n\n") -> str:
    """Join worked-solution steps so the env's segmenter cuts them back into the same steps.

    Args:
        steps: Step strings without newlines (``Problem.metadata["solution_steps"]``).
        sep: ``"\\n\\n"`` for the env's default ``split="\\n\\n"``, or ``"\\n"`` for
            ``split="\\n"``.

    Raises:
        ValueError: on an unknown separator, no steps, an empty step or a step with a newline.

    Example:
        >>> render_solution(("3 + 4 = 7.", "The answer is \\\\boxed{7}."))
        '3 + 4 = 7.\\n\\nThe answer is \\\\boxed{7}.'
    """
    if sep not in SEPARATORS:
        raise ValueError(f"sep must be one of {SEPARATORS!r}, got {sep!r}")
    if not steps:
        raise ValueError("render_solution needs at least one step")
    for i, step in enumerate(steps):
        if not step.strip() or "\n" in step:
            raise ValueError(f"step {i} must be non-empty and have no newline, got {step!r}")
    return sep.join(steps)
