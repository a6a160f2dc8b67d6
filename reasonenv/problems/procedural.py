"""Seeded, infinite procedural problem generators with difficulty levels 1..5.

Kinds:

* ``arithmetic`` -- ``What is 3 + 4?`` at level 1, up to five multi-digit operands with
  ``+ - *``, negatives and a parenthesised group at level 5.
* ``chained_sums`` -- ``a + b - c + d ...`` with 3 terms at level 1 and 9 at level 5.
* ``linear_equation`` -- ``Solve for x: x + 3 = 7`` up to ``a(x + b) = d x + e``.
* ``fractions`` -- ``1/5 + 2/5`` up to four-fraction expressions with ``÷``.
* ``word_problem`` -- templated stories (apples, coins, shopping, trains, discounts).
* ``mixed`` -- each problem draws one of the kinds above uniformly.

Gold answers are exact (:class:`fractions.Fraction`) and formatted as ``"42"``, ``"-7"`` or
``"3/4"`` (lowest terms, sign on the numerator).

Every problem also carries a worked solution computed from the same arithmetic, in
``metadata["solution_steps"]`` (a tuple of step strings ending in ``\\boxed{answer}``; join
them with :func:`~reasonenv.problems.solutions.render_solution`), a corrupted variant in
``metadata["corrupted_steps"]`` whose one wrong step carries into a wrong final answer, and
``metadata["first_error_step"]``, the index of that wrong step. The corruption is drawn from a
generator seeded by a hash of the problem's content, never from the problem stream's ``rng``,
so a seed produces the same problems as before and a problem always has the same corruption.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from reasonenv.problems import _generators as gens
from reasonenv.problems._answers import format_fraction
from reasonenv.problems._word_problems import word_problem
from reasonenv.problems.base import Problem

GeneratorFn = Callable[[np.random.Generator, int], gens.Generated]

GENERATORS: dict[str, GeneratorFn] = {
    "arithmetic": gens.arithmetic,
    "chained_sums": gens.chained_sums,
    "linear_equation": gens.linear_equation,
    "fractions": gens.fractions,
    "word_problem": word_problem,
}
KINDS: tuple[str, ...] = (*GENERATORS, "mixed")
MIN_TERMS, MAX_TERMS = 2, 12  # chained_sums' ``terms`` option
DIFFICULTIES: tuple[int, ...] = (1, 2, 3, 4, 5)


def validate_kind(kind: Any) -> str:
    """Return ``kind`` if it is a known procedural kind, else raise ``ValueError``."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(
            f"Invalid procedural kind: kind={kind!r}; valid choices: {', '.join(KINDS)}"
        )
    return kind


def validate_difficulty(difficulty: Any) -> int:
    """Return ``difficulty`` as an int if it is one of 1..5, else raise ``ValueError``."""
    if (
        isinstance(difficulty, bool)
        or not isinstance(difficulty, (int, np.integer))
        or (int(difficulty) not in DIFFICULTIES)
    ):
        raise ValueError(
            f"Invalid procedural difficulty: difficulty={difficulty!r}; valid choices: "
            f"{', '.join(map(str, DIFFICULTIES))}"
        )
    return int(difficulty)


def worked_solution(generated: gens.Generated, digest: str) -> dict[str, Any]:
    """The ``solution_steps``, ``corrupted_steps`` and ``first_error_step`` metadata.

    The corruption generator is seeded from ``digest`` (a hash of the problem's content), so it
    is reproducible and leaves the problem stream's own generator untouched.

    Raises:
        AssertionError: if the worked solution does not reach the generator's answer.
    """
    calculation = generated.calculation
    if calculation is None:
        raise AssertionError(f"generator gave no worked solution for {generated.question!r}")
    if calculation.answer != generated.answer:
        raise AssertionError(
            f"worked solution of {generated.question!r} ends at {calculation.answer}, "
            f"not the answer {generated.answer}"
        )
    corrupted, first_error = calculation.corrupt(np.random.default_rng(int(digest[:16], 16)))
    return {
        "solution_steps": calculation.steps(),
        "corrupted_steps": corrupted,
        "first_error_step": first_error,
    }


class ProceduralSource:
    """An infinite, reproducible stream of generated problems of one kind and difficulty.

    Two access paths are offered:

    * ``source[i]`` (and iteration) is a pure function of ``(seed, i)``, so the i-th problem
      of a seeded source is the same in every process;
    * ``source.sample(rng)`` draws only from ``rng`` -- the environment passes gymnasium's
      ``np_random`` so episodes are reproducible from ``env.reset(seed=...)``.

    Args:
        kind: One of ``arithmetic``, ``chained_sums``, ``linear_equation``, ``fractions``,
            ``word_problem`` or ``mixed``.
        difficulty: 1 (one-step, single digits: ``What is 2 + 3?``) to 5 (multi-step).
            It may be reassigned later (e.g. by a curriculum); it is re-validated.
        seed: Non-negative int fixing the indexed sequence. ``None`` picks a fresh random
            seed, readable afterwards from ``source.seed``.
        terms: ``chained_sums`` only: the number of terms (2..12) in place of the level's, so
            the number of solution steps (``terms - 1`` sums and the answer) is set apart from
            the operand size. Ids carry it (``d1t5``), so two chain lengths never share an id.

    Raises:
        ValueError: on an unknown kind, a difficulty outside 1..5, a bad seed, or ``terms``
            out of range or given for another kind.

    Example:
        >>> src = ProceduralSource("arithmetic", difficulty=1, seed=0)
        >>> p = src[0]
        >>> p.id, p.question.startswith("What is"), p.metadata["difficulty"]
        ('procedural/arithmetic/d1/0/0', True, 1)
        >>> src[0] == ProceduralSource("arithmetic", 1, seed=0)[0]
        True
        >>> q = src.sample(np.random.default_rng(123))
    """

    def __init__(
        self,
        kind: str = "arithmetic",
        difficulty: int = 1,
        seed: int | None = None,
        terms: int | None = None,
    ) -> None:
        self.kind = validate_kind(kind)
        if terms is not None:
            if self.kind != "chained_sums":
                raise ValueError(
                    f"Invalid procedural terms: terms={terms!r} is only for kind 'chained_sums', "
                    f"got kind={self.kind!r}"
                )
            if isinstance(terms, bool) or not isinstance(terms, (int, np.integer)) or not (
                MIN_TERMS <= terms <= MAX_TERMS
            ):
                raise ValueError(
                    f"Invalid procedural terms: terms={terms!r}; expected an int in "
                    f"{MIN_TERMS}..{MAX_TERMS}"
                )
            terms = int(terms)
        self.terms: int | None = terms
        self.difficulty = difficulty  # validated by the property setter
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(
                f"Invalid procedural seed: seed={seed!r}; expected an int >= 0 or None"
            )
        self.seed: int = int(seed)
        self.name: str = f"procedural/{self.kind}"

    @property
    def difficulty(self) -> int:
        """Current difficulty level (1..5)."""
        return self._difficulty

    @difficulty.setter
    def difficulty(self, value: int) -> None:
        self._difficulty = validate_difficulty(value)

    def __repr__(self) -> str:
        extra = f", terms={self.terms}" if self.terms is not None else ""
        return (
            f"ProceduralSource(kind={self.kind!r}, difficulty={self.difficulty}, "
            f"seed={self.seed}{extra})"
        )

    @property
    def _level(self) -> str:
        """The level part of an id: ``d2``, or ``d1t5`` with a chain length set."""
        return f"d{self.difficulty}" + (f"t{self.terms}" if self.terms is not None else "")

    def _make(
        self, rng: np.random.Generator, problem_id: str | None, extra: dict[str, Any]
    ) -> Problem:
        kind = self.kind
        if kind == "mixed":
            kind = gens.choice(rng, tuple(GENERATORS))
        if self.terms is not None:
            generated = gens.chained_sums(rng, self.difficulty, num_terms=self.terms)
        else:
            generated = GENERATORS[kind](rng, self.difficulty)
        answer = format_fraction(generated.answer)
        digest = hashlib.sha1(f"{kind}\x00{generated.question}\x00{answer}".encode()).hexdigest()
        if problem_id is None:
            problem_id = f"procedural/{self.kind}/{self._level}/h{digest[:16]}"
        if self.terms is not None:
            extra = {**extra, "terms": self.terms}
        metadata = {"kind": kind, "difficulty": self.difficulty, **extra, **generated.metadata,
                    **worked_solution(generated, digest)}  # fmt: skip
        return Problem(
            id=problem_id,
            question=generated.question,
            answer=answer,
            source=self.name,
            metadata=metadata,
        )

    def sample(self, rng: np.random.Generator) -> Problem:
        """Generate one problem using ``rng`` as the only source of randomness.

        The id is ``procedural/<kind>/d<difficulty>/h<content hash>``.

        Example:
            >>> src = ProceduralSource("fractions", 2)
            >>> a = src.sample(np.random.default_rng(7))
            >>> a == src.sample(np.random.default_rng(7))
            True
        """
        return self._make(rng, None, {})

    def __getitem__(self, index: int) -> Problem:
        """The ``index``-th problem of this source, a pure function of ``(seed, index)``.

        Raises:
            IndexError: for a negative index (the sequence is infinite, so there is no end).
            TypeError: for a non-integer index.
        """
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"ProceduralSource indices must be int, got {type(index).__name__}")
        if index < 0:
            raise IndexError(f"ProceduralSource is infinite; negative index {index} is invalid")
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(index)]))
        problem_id = f"procedural/{self.kind}/{self._level}/{self.seed}/{int(index)}"
        return self._make(rng, problem_id, {"seed": self.seed, "index": int(index)})

    def __iter__(self) -> Iterator[Problem]:
        """Iterate ``self[0], self[1], ...`` forever (use ``itertools.islice`` to bound it)."""
        index = 0
        while True:
            yield self[index]
            index += 1
