"""Sampling metrics (pass@k, pass^k, avg@n, maj@n) and the per-run summary with intervals.

Everything here is a pure function of per-sample outcomes; numpy is the only dependency (the
default answer-equivalence for majority voting imports :mod:`reasonenv.grading` when first used).

Definitions, for a problem with ``n`` sampled responses of which ``c`` are correct:

* ``pass@k = 1 - C(n-c, k) / C(n, k)``: the unbiased estimate of "at least one of k samples is
  correct" (Chen et al., 2021), computed as a product of ratios in ``[0, 1]`` so it never
  overflows.
* ``pass^k = C(c, k) / C(n, k)``: the unbiased estimate of "all k samples are correct".
* ``avg@n = c / n``: mean correctness.
* ``maj@n``: 1 if the answer with the most votes is correct, where votes are grouped by the
  grader's equivalence (``"1/2"`` and ``"0.5"`` are one vote bucket), else 0.

Each is averaged over problems; :func:`summarize` adds percentile-bootstrap intervals over
problems. See docs/evaluation.md for the formulas and the resampling method.

Example:
    >>> round(pass_at_k(n=4, c=1, k=4), 3), round(pass_at_k(n=4, c=1, k=1), 3)
    (1.0, 0.25)
    >>> round(pass_hat_k(n=4, c=3, k=2), 3)
    0.5
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from reasonenv.evaluation.bootstrap import MetricEstimate, bootstrap_means, percentiles

#: ``equivalent(answer, representative) -> bool``: do two extracted answers vote together?
Equivalence = Callable[[str, str], bool]

_NO_ANSWER = "no_answer"  # reasonenv.grading.verdict.NO_ANSWER, not imported to stay light


# ----------------------------------------------------------------------------- estimators


def _counts(n: ArrayLike, c: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate sample counts and return them as int64 arrays of a common shape."""
    n_arr, c_arr = np.broadcast_arrays(np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64))
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got k={k!r}")
    if np.any(c_arr < 0) or np.any(c_arr > n_arr):
        raise ValueError(f"need 0 <= c <= n for every problem, got n={n!r}, c={c!r}")
    if np.any(n_arr < k):
        raise ValueError(f"k={k} exceeds the number of samples n={n!r} of some problem")
    return n_arr, c_arr


def _ratio_of_binomials(top: np.ndarray, n: np.ndarray, k: int) -> np.ndarray:
    """``C(top, k) / C(n, k)`` for ``0 <= top <= n`` as ``prod_j (top - j) / (n - j)``, j < k.

    Every factor lies in ``[0, 1]`` (a factor is 0 once ``top < k``), so the product is stable
    for any n, unlike the binomials themselves.
    """
    j = np.arange(k, dtype=np.float64)
    factors = (top[..., None] - j) / (n[..., None] - j)
    return np.prod(np.clip(factors, 0.0, 1.0), axis=-1)


def pass_at_k_per_problem(n: ArrayLike, c: ArrayLike, k: int) -> np.ndarray:
    """Unbiased pass@k of each problem, vectorised over problems.

    Args:
        n: Samples per problem (scalar or array).
        c: Correct samples per problem, ``0 <= c <= n``.
        k: Subset size, ``1 <= k <= n`` for every problem.

    Returns:
        Float array of ``1 - C(n-c, k) / C(n, k)``, one value per problem.

    Raises:
        ValueError: on ``c`` outside ``[0, n]`` or ``k`` outside ``[1, n]``.

    Example:
        >>> pass_at_k_per_problem([4, 4, 4], [0, 1, 4], k=2).round(3).tolist()
        [0.0, 0.5, 1.0]
    """
    n_arr, c_arr = _counts(n, c, k)
    return 1.0 - _ratio_of_binomials(n_arr - c_arr, n_arr, k)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased probability that at least one of ``k`` samples is correct.

    Example:
        >>> pass_at_k(n=8, c=0, k=8), pass_at_k(n=8, c=8, k=1)
        (0.0, 1.0)
        >>> round(pass_at_k(n=10, c=3, k=2), 4)  # 1 - C(7,2)/C(10,2) = 1 - 21/45
        0.5333
    """
    return float(pass_at_k_per_problem(n, c, k))


def pass_hat_k_per_problem(n: ArrayLike, c: ArrayLike, k: int) -> np.ndarray:
    """Unbiased pass^k (all of ``k`` samples correct) of each problem: ``C(c, k) / C(n, k)``.

    Example:
        >>> pass_hat_k_per_problem([4, 4], [1, 4], k=2).tolist()
        [0.0, 1.0]
    """
    n_arr, c_arr = _counts(n, c, k)
    return _ratio_of_binomials(c_arr, n_arr, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased probability that ``k`` independent samples are ALL correct.

    Example:
        >>> round(pass_hat_k(n=5, c=4, k=3), 3)  # C(4,3)/C(5,3) = 4/10
        0.4
    """
    return float(pass_hat_k_per_problem(n, c, k))


def avg_at_n(correct_by_problem: Sequence[Sequence[bool]]) -> float:
    """Mean correctness over each problem's samples, then over problems.

    Every problem weighs the same whatever its number of samples.

    Example:
        >>> avg_at_n([[True, False], [True, True, True, False]])
        0.625
    """
    if not correct_by_problem:
        raise ValueError("avg_at_n needs at least one problem")
    per_problem = []
    for samples in correct_by_problem:
        if not samples:
            raise ValueError("avg_at_n: a problem has no samples")
        per_problem.append(float(np.mean(np.asarray(samples, dtype=bool))))
    return float(np.mean(per_problem))


# ----------------------------------------------------------------------------- majority vote


@functools.lru_cache(maxsize=65536)
def grader_equivalent(answer: str, representative: str) -> bool:
    """Default vote equivalence: the grader accepts ``answer`` for ``representative``.

    Identical strings (after stripping) are equivalent without grading; otherwise the answer is
    boxed and graded with :func:`reasonenv.grading.grade` against the representative as the
    reference, so ``"0.5"`` joins ``"\\frac{1}{2}"``. Results are cached.

    Example:
        >>> grader_equivalent("0.5", "1/2"), grader_equivalent("2", "3")
        (True, False)
    """
    if answer.strip() == representative.strip():
        return True
    from reasonenv.grading import grade

    return bool(grade(f"\\boxed{{{answer}}}", representative).correct)


def majority_vote(
    answers: Sequence[str | None], equivalent: Equivalence | None = None
) -> int | None:
    """Index of the sample whose answer wins the vote, or ``None`` if no sample voted.

    Samples with ``None`` (no extracted answer) do not vote. The others are clustered in sample
    order: each answer joins the first existing cluster whose representative (the cluster's
    first answer) it is ``equivalent`` to, else it starts a new cluster. The largest cluster
    wins; on a tie in size, the cluster formed first (whose first vote came earliest) wins. The
    returned index is the winning cluster's first sample.

    Args:
        answers: The extracted answer of each sample (``None`` when none was found).
        equivalent: ``equivalent(answer, representative) -> bool``; default
            :func:`grader_equivalent`.

    Example:
        >>> majority_vote(["0.5", "3", "1/2", None, "3"], lambda a, b: a == b)  # string votes
        1
        >>> majority_vote(["0.5", "3", "1/2", None, "3"])  # grader votes: 0.5 and 1/2 together
        0
        >>> majority_vote([None, None]) is None
        True
    """
    same = equivalent or grader_equivalent
    clusters: list[list[int]] = []
    for index, answer in enumerate(answers):
        if answer is None:
            continue
        for members in clusters:
            rep = answers[members[0]]
            assert rep is not None
            if same(answer, rep):
                members.append(index)
                break
        else:
            clusters.append([index])
    if not clusters:
        return None
    best = max(clusters, key=len)  # max keeps the first of equally large clusters
    return best[0]


def maj_at_n_per_problem(
    answers_by_problem: Sequence[Sequence[str | None]],
    correct_by_problem: Sequence[Sequence[bool]],
    equivalent: Equivalence | None = None,
) -> np.ndarray:
    """Per-problem majority-vote correctness (1.0 or 0.0), see :func:`majority_vote`.

    The winning cluster counts as correct when its representative sample was graded correct; a
    problem where no sample voted scores 0.

    Example:
        >>> maj_at_n_per_problem([["1/2", "0.5", "2"]], [[True, True, False]]).tolist()
        [1.0]
    """
    if len(answers_by_problem) != len(correct_by_problem):
        raise ValueError("maj@n: answers and correctness must cover the same problems")
    out = np.zeros(len(answers_by_problem))
    for p, (answers, correct) in enumerate(zip(answers_by_problem, correct_by_problem, strict=True)):
        if len(answers) != len(correct):
            raise ValueError(f"maj@n: problem {p} has {len(answers)} answers, {len(correct)} grades")
        winner = majority_vote(answers, equivalent)
        out[p] = float(winner is not None and bool(correct[winner]))
    return out


def maj_at_n(
    answers_by_problem: Sequence[Sequence[str | None]],
    correct_by_problem: Sequence[Sequence[bool]],
    equivalent: Equivalence | None = None,
) -> float:
    """Majority-vote accuracy over problems, votes grouped by ``equivalent`` (the grader's).

    Example:
        >>> maj_at_n([["1/2", "0.5", "2"], ["7", None, None]], [[True, True, False], [False] * 3])
        0.5
    """
    if not answers_by_problem:
        raise ValueError("maj_at_n needs at least one problem")
    return float(maj_at_n_per_problem(answers_by_problem, correct_by_problem, equivalent).mean())


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SampleRecord:
    """One graded sample of one problem, the unit :func:`summarize` aggregates.

    Attributes:
        problem_id: Id of the problem the sample answers.
        correct: The grader's verdict.
        extracted: The extracted final answer, ``None`` when none was found.
        reference_ok: ``False`` when the grader could not parse the reference; the whole problem
            is then excluded from every metric (and counted), never scored 0.
        reason: The verdict's reason (``"exact"``, ``"no_answer"``, ...). ``None`` means unknown:
            the answer then counts as found when ``extracted`` is not ``None``.
        n_tokens: Response length in tokens.
        truncated: The response hit the token budget.

    Example:
        >>> SampleRecord("p0", False, None, reason="no_answer").has_answer
        False
    """

    problem_id: str
    correct: bool
    extracted: str | None = None
    reference_ok: bool = True
    reason: str | None = None
    n_tokens: int = 0
    truncated: bool = False

    @property
    def has_answer(self) -> bool:
        """A final answer was found (the format-rate criterion)."""
        if self.reason is not None:
            return self.reason != _NO_ANSWER
        return self.extracted is not None

    @classmethod
    def from_verdict(
        cls, problem_id: str, verdict: Any, *, n_tokens: int = 0, truncated: bool = False
    ) -> SampleRecord:
        """Build a record from a :class:`~reasonenv.grading.Verdict` (or any object with its
        ``correct``, ``extracted``, ``reference_ok`` and ``reason`` attributes).

        Example:
            >>> from reasonenv.grading import grade
            >>> SampleRecord.from_verdict("p0", grade("\\\\boxed{4}", "4"), n_tokens=9).correct
            True
        """
        return cls(problem_id, bool(verdict.correct), verdict.extracted,
                   bool(verdict.reference_ok), verdict.reason, int(n_tokens), bool(truncated))  # fmt: skip


@dataclass(frozen=True)
class EvalSummary:
    """Every metric of one run with its interval, plus the per-problem values behind it.

    Attributes:
        metrics: ``"avg@n"``, ``"pass@k"`` and ``"pass^k"`` for each k, ``"maj@n"``,
            ``"mean_tokens"``, ``"format_rate"``, ``"truncation_rate"``.
        per_problem: For each metric, its value on each scored problem (what a paired
            comparison of two runs resamples).
        n_problems: Problems scored.
        n_samples: Samples of the scored problems.
        min_samples: Fewest samples of a scored problem (the largest k reported).
        n_excluded_problems: Problems excluded because their reference was unparseable.
        n_excluded_samples: Samples of those problems.
        confidence: Interval coverage, e.g. 0.95.
        n_resamples: Bootstrap resamples.
    """

    metrics: dict[str, MetricEstimate]
    per_problem: dict[str, dict[str, float]]
    n_problems: int
    n_samples: int
    min_samples: int
    n_excluded_problems: int
    n_excluded_samples: int
    confidence: float
    n_resamples: int
    ks: tuple[int, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the per-problem values)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("metrics", "per_problem")}
        out["metrics"] = {name: est.to_dict() for name, est in self.metrics.items()}
        return out


def summarize(
    records: Sequence[SampleRecord],
    ks: Sequence[int] | None = None,
    *,
    equivalent: Equivalence | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | np.random.Generator = 0,
) -> EvalSummary:
    """All metrics of a run with percentile-bootstrap intervals over problems.

    Records are grouped by ``problem_id`` (order of first appearance). A problem any of whose
    records has ``reference_ok=False`` is excluded and counted. Every metric is a mean over the
    scored problems of a per-problem value; the sample-level rates (``mean_tokens``,
    ``format_rate``, ``truncation_rate``) are per-problem means first, which equals the plain mean
    over samples when every problem has the same number of samples. All metrics are resampled
    with the same problem draws.

    Args:
        records: The graded samples.
        ks: The k of pass@k and pass^k; default every k from 1 to the fewest samples of a
            scored problem.
        equivalent: Vote equivalence for maj@n (default :func:`grader_equivalent`).
        confidence: Interval coverage.
        n_resamples: Bootstrap resamples.
        seed: Seed or Generator of the resampling.

    Raises:
        ValueError: if a k exceeds the samples of some scored problem.

    Example:
        >>> recs = [SampleRecord("a", True, "1/2", n_tokens=10),
        ...         SampleRecord("a", True, "0.5", n_tokens=20),
        ...         SampleRecord("a", False, "3", n_tokens=30),
        ...         SampleRecord("b", False, None, reason="no_answer", truncated=True),
        ...         SampleRecord("b", False, "4"), SampleRecord("b", False, "4"),
        ...         SampleRecord("c", False, "x", reference_ok=False)]
        >>> s = summarize(recs, ks=(1, 3), n_resamples=200)
        >>> s.n_problems, s.n_excluded_problems
        (2, 1)
        >>> round(s.metrics["avg@n"].value, 3), s.metrics["maj@n"].value, s.metrics["pass@3"].value
        (0.333, 0.5, 0.5)
    """
    groups: dict[str, list[SampleRecord]] = {}
    for record in records:
        groups.setdefault(record.problem_id, []).append(record)
    scored = {pid: recs for pid, recs in groups.items() if all(r.reference_ok for r in recs)}
    excluded = [recs for pid, recs in groups.items() if pid not in scored]
    sizes = np.array([len(recs) for recs in scored.values()], dtype=np.int64)
    n_min = int(sizes.min()) if len(sizes) else 0
    ks_used = tuple(range(1, n_min + 1)) if ks is None else tuple(int(k) for k in ks)
    if any(k > n_min for k in ks_used) and len(sizes):
        raise ValueError(f"ks={ks_used} exceed the fewest samples of a scored problem ({n_min})")

    columns: dict[str, np.ndarray] = {}
    if len(sizes):
        recs_list = list(scored.values())
        correct = np.array([sum(r.correct for r in recs) for recs in recs_list], dtype=np.int64)
        columns["avg@n"] = correct / sizes
        for k in ks_used:
            columns[f"pass@{k}"] = pass_at_k_per_problem(sizes, correct, k)
        for k in ks_used:
            columns[f"pass^{k}"] = pass_hat_k_per_problem(sizes, correct, k)
        columns["maj@n"] = maj_at_n_per_problem(
            [[r.extracted if r.has_answer else None for r in recs] for recs in recs_list],
            [[r.correct for r in recs] for recs in recs_list],
            equivalent,
        )
        columns["mean_tokens"] = np.array([np.mean([r.n_tokens for r in rs]) for rs in recs_list])
        columns["format_rate"] = np.array([np.mean([r.has_answer for r in rs]) for rs in recs_list])
        columns["truncation_rate"] = np.array([np.mean([r.truncated for r in rs]) for rs in recs_list])

    metrics: dict[str, MetricEstimate] = {}
    if columns:
        table = np.stack(list(columns.values()), axis=1)  # (problems, metrics)
        lows, highs = percentiles(bootstrap_means(table, n_resamples=n_resamples, seed=seed),
                                   confidence)  # fmt: skip
        for j, name in enumerate(columns):
            metrics[name] = MetricEstimate(float(table[:, j].mean()), float(lows[j]),
                                           float(highs[j]), len(sizes))  # fmt: skip
    return EvalSummary(
        metrics=metrics,
        per_problem={name: dict(zip(scored, map(float, col), strict=True))
                     for name, col in columns.items()},  # fmt: skip
        n_problems=len(scored),
        n_samples=int(sizes.sum()),
        min_samples=n_min,
        n_excluded_problems=len(excluded),
        n_excluded_samples=sum(len(recs) for recs in excluded),
        confidence=confidence,
        n_resamples=n_resamples,
        ks=ks_used,
    )

