"""Templated word problems (apples, coins, shopping, trains, ...) with exact integer answers.

Each template returns the question text, a Python-syntax ``formula`` over the numbers it
chose, and the named ``quantities`` that appear in the question. The answer is the formula's
exact value (always an integer by construction).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np

from reasonenv.problems._generators import Generated, choice, evaluate, randint
from reasonenv.problems.solutions import Calculation

NAMES: tuple[tuple[str, str], ...] = (
    ("Tom", "he"),
    ("Anna", "she"),
    ("Ben", "he"),
    ("Mia", "she"),
    ("Sam", "he"),
    ("Lily", "she"),
    ("Omar", "he"),
    ("Zoe", "she"),
    ("Ravi", "he"),
    ("Emma", "she"),
)
OBJECTS: tuple[str, ...] = (
    "apples",
    "oranges",
    "pencils",
    "stickers",
    "marbles",
    "cookies",
    "books",
    "cards",
    "balloons",
    "shells",
)
ITEMS: tuple[tuple[str, str], ...] = (
    ("notebook", "notebooks"),
    ("pen", "pens"),
    ("sandwich", "sandwiches"),
    ("toy car", "toy cars"),
    ("ball", "balls"),
    ("cup of juice", "cups of juice"),
)

Template = Callable[[np.random.Generator, int], tuple[str, str, dict[str, int]]]


def _people(rng: np.random.Generator) -> tuple[str, str, str]:
    """A (name, pronoun, other name) triple with two distinct people."""
    name, pronoun = choice(rng, NAMES)
    friend = name
    while friend == name:
        friend = choice(rng, NAMES)[0]
    return name, pronoun, friend


def _gain(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    name, pronoun, _ = _people(rng)
    obj = choice(rng, OBJECTS)
    a, b = randint(rng, 2, top), randint(rng, 2, top)
    text = (
        f"{name} has {a} {obj}. {pronoun.capitalize()} gets {b} more {obj}. "
        f"How many {obj} does {name} have now?"
    )
    return text, f"{a} + {b}", {"start": a, "added": b}


def _lose(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    name, pronoun, friend = _people(rng)
    obj = choice(rng, OBJECTS)
    a = randint(rng, 3, top)
    b = randint(rng, 2, a - 1)
    text = (
        f"{name} has {a} {obj}. {pronoun.capitalize()} gives {b} {obj} to {friend}. "
        f"How many {obj} does {name} have left?"
    )
    return text, f"{a} - {b}", {"start": a, "given": b}


def _combine(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    name, _, friend = _people(rng)
    obj = choice(rng, OBJECTS)
    a, b = randint(rng, 2, top), randint(rng, 2, top)
    text = f"{name} has {a} {obj} and {friend} has {b} {obj}. How many {obj} do they have together?"
    return text, f"{a} + {b}", {"first": a, "second": b}


def _groups(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    obj = choice(rng, OBJECTS)
    bags, each = randint(rng, 2, top), randint(rng, 2, top)
    text = (
        f"There are {bags} bags with {each} {obj} in each bag. How many {obj} are there in total?"
    )
    return text, f"{bags} * {each}", {"bags": bags, "each": each}


def _share(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    name, _, _ = _people(rng)
    obj = choice(rng, OBJECTS)
    friends, each = randint(rng, 2, top), randint(rng, 2, top)
    total = friends * each
    text = (
        f"{name} shares {total} {obj} equally among {friends} friends. "
        f"How many {obj} does each friend get?"
    )
    return text, f"{total} / {friends}", {"total": total, "friends": friends}


def _buy_packs(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    name, pronoun, _ = _people(rng)
    obj = choice(rng, OBJECTS)
    packs, each = randint(rng, 2, top), randint(rng, 2, top)
    gave = randint(rng, 2, packs * each - 1)
    text = (
        f"{name} buys {packs} packs of {obj} with {each} {obj} in each pack. "
        f"Then {pronoun} gives away {gave} {obj}. How many {obj} does {name} have now?"
    )
    return text, f"{packs} * {each} - {gave}", {"packs": packs, "each": each, "gave": gave}


def _coins(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    name, pronoun, _ = _people(rng)
    nickels, dimes = randint(rng, 2, top), randint(rng, 2, top)
    text = (
        f"{name} has {nickels} coins worth 5 cents each and {dimes} coins worth "
        f"10 cents each. How many cents does {pronoun} have in total?"
    )
    return text, f"{nickels} * 5 + {dimes} * 10", {"nickels": nickels, "dimes": dimes}


def _shopping(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    name, pronoun, _ = _people(rng)
    first = choice(rng, ITEMS)
    second = first
    while second == first:
        second = choice(rng, ITEMS)
    p, q = randint(rng, 1, top), randint(rng, 1, top)
    a, b = randint(rng, 2, top), randint(rng, 2, top)
    text = (
        f"A {first[0]} costs ${p} and a {second[0]} costs ${q}. {name} buys {a} "
        f"{first[1]} and {b} {second[1]}. How many dollars does {pronoun} spend?"
    )
    return text, f"{a} * {p} + {b} * {q}", {"price1": p, "price2": q, "count1": a, "count2": b}


def _train(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    v1, v2 = 10 * randint(rng, 3, top), 10 * randint(rng, 3, top)
    t1, t2 = randint(rng, 2, 5), randint(rng, 2, 5)
    text = (
        f"A train travels at {v1} km per hour for {t1} hours and then at {v2} km per "
        f"hour for {t2} hours. How many kilometers does it travel in total?"
    )
    return (
        text,
        f"{v1} * {t1} + {v2} * {t2}",
        {"speed1": v1, "time1": t1, "speed2": v2, "time2": t2},
    )


def _trains_meet(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    v1, v2 = 10 * randint(rng, 3, top), 10 * randint(rng, 3, top)
    hours = randint(rng, 2, 6)
    distance = (v1 + v2) * hours
    text = (
        f"Two trains start {distance} km apart and travel toward each other, one at "
        f"{v1} km per hour and the other at {v2} km per hour. "
        f"After how many hours do they meet?"
    )
    return text, f"{distance} / ({v1} + {v2})", {"distance": distance, "speed1": v1, "speed2": v2}


def _savings(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    name, pronoun, _ = _people(rng)
    weekly, weeks = randint(rng, 5, top), randint(rng, 3, 12)
    spent = randint(rng, 1, weekly * weeks - 1)
    text = (
        f"{name} saves ${weekly} every week. After {weeks} weeks {pronoun} spends "
        f"${spent} on a gift. How many dollars does {pronoun} have left?"
    )
    return text, f"{weekly} * {weeks} - {spent}", {"weekly": weekly, "weeks": weeks, "spent": spent}


def _sell_fractions(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    obj = choice(rng, OBJECTS)
    p, q = randint(rng, 2, 5), randint(rng, 2, 5)
    stock = p * q * randint(rng, 2, top)
    text = (
        f"A shop has {stock} {obj}. It sells 1/{p} of them in the morning and 1/{q} of "
        f"the remaining {obj} in the afternoon. How many {obj} are left?"
    )
    formula = f"({stock} - {stock} / {p}) * ({q} - 1) / {q}"
    return text, formula, {"stock": stock, "morning": p, "afternoon": q}


def _discount(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    name, pronoun, _ = _people(rng)
    item = choice(rng, ITEMS)
    price = 20 * randint(rng, 1, top)
    percent = choice(rng, (10, 20, 25, 50, 75))
    count = randint(rng, 2, 6)
    text = (
        f"A {item[0]} costs ${price}. It is on sale for {percent}% off. {name} buys "
        f"{count} {item[1]} at the sale price. How many dollars does {pronoun} pay?"
    )
    formula = f"{count} * {price} * (100 - {percent}) / 100"
    return text, formula, {"price": price, "percent": percent, "count": count}


def _catch_up(rng: np.random.Generator, top: int) -> tuple[str, str, dict[str, int]]:
    head_start, hours, step = randint(rng, 2, 4), randint(rng, 1, 6), randint(rng, 1, top)
    gap = 10 * head_start * step  # speed difference, chosen so the answer is whole
    slow = gap * hours // head_start
    fast = slow + gap
    text = (
        f"A train leaves a station at {slow} km per hour. {head_start} hours later a "
        f"second train leaves the same station on the same track at {fast} km per hour. "
        f"How many hours after it leaves does the second train catch up?"
    )
    formula = f"{slow} * {head_start} / ({fast} - {slow})"
    return text, formula, {"slow": slow, "fast": fast, "head_start": head_start}


# Templates per level with the upper bound their numbers are drawn from.
LEVELS: dict[int, tuple[tuple[Callable[..., tuple[str, str, dict[str, int]]], int], ...]] = {
    1: ((_gain, 9), (_lose, 9), (_combine, 9)),
    2: ((_gain, 99), (_lose, 99), (_combine, 99), (_groups, 9), (_share, 9)),
    3: ((_buy_packs, 12), (_coins, 30), (_shopping, 9), (_groups, 20), (_share, 15)),
    4: ((_train, 12), (_trains_meet, 12), (_savings, 50), (_shopping, 25)),
    5: ((_sell_fractions, 20), (_discount, 15), (_catch_up, 4), (_train, 20)),
}


def evaluate_formula(formula: str) -> Fraction:
    """Exact value of a template formula (integers, ``+ - * /`` and parentheses only)."""
    tokens = formula.replace("(", " ( ").replace(")", " ) ").split()
    pos = 0

    def expr() -> Fraction:
        nonlocal pos
        values, ops = [term()], []
        while pos < len(tokens) and tokens[pos] in ("+", "-", "*", "/"):
            ops.append(tokens[pos])
            pos += 1
            values.append(term())
        return evaluate(values, ops)

    def term() -> Fraction:
        nonlocal pos
        token = tokens[pos]
        pos += 1
        if token == "(":
            value = expr()
            pos += 1  # closing parenthesis
            return value
        return Fraction(int(token))

    return expr()


def formula_calculation(formula: str) -> Calculation:
    """The worked solution of a template formula, one step per operation.

    Example:
        >>> formula_calculation("12 / (1 + 3)").steps()
        ('1 + 3 = 4.', '12 / 4 = 3.', 'The answer is \\\\boxed{3}.')
    """
    tokens = formula.replace("(", " ( ").replace(")", " ) ").split()
    return Calculation.from_tokens(
        [t if t in ("+", "-", "*", "/", "(", ")") else Fraction(int(t)) for t in tokens]
    )


def word_problem(rng: np.random.Generator, difficulty: int) -> Generated:
    """A templated word problem; harder levels use multi-step templates and bigger numbers."""
    template, top = choice(rng, LEVELS[difficulty])
    text, formula, quantities = template(rng, top)
    answer = evaluate_formula(formula)
    if answer.denominator != 1 or answer < 0:
        raise AssertionError(f"template {template.__name__} produced {answer} for {formula}")
    return Generated(
        question=text,
        answer=answer,
        metadata={
            "template": template.__name__.lstrip("_"),
            "formula": formula,
            "quantities": quantities,
        },
        calculation=formula_calculation(formula),
    )
