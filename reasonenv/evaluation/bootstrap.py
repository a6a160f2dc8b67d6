"""Percentile-bootstrap confidence intervals over problems, and the paired difference of two runs.

Problems are the resampling unit: a run's per-problem values (one number per problem, e.g. its
pass@1) are resampled with replacement, the mean is taken on each resample, and the interval is
the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those means. Draws come
from a seeded numpy Generator, so an interval is reproducible.

Example:
    >>> est = bootstrap_ci([1, 0, 1, 1], n_resamples=200, seed=0)
    >>> est.value, est.low <= est.value <= est.high
    (0.75, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

_CHUNK_ELEMENTS = 2_000_000  # bootstrap index matrices are built in chunks of this many entries


@dataclass(frozen=True)
class MetricEstimate:
    """A metric's value over problems and its bootstrap confidence interval.

    Attributes:
        value: The metric on the observed problems.
        low: Lower end of the interval (percentile bootstrap).
        high: Upper end of the interval.
        n_problems: Problems the value averages over.

    Example:
        >>> MetricEstimate(0.5, 0.4, 0.6, 100).to_dict()["high"]
        0.6
    """

    value: float
    low: float
    high: float
    n_problems: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def _as_generator(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def bootstrap_means(
    values: ArrayLike, *, n_resamples: int = 2000, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement) of the rows of ``values``.

    Args:
        values: Per-problem values, shape ``(m,)`` or ``(m, q)`` for q metrics resampled with
            the SAME problem draws.
        n_resamples: Number of bootstrap resamples.
        seed: Seed or numpy Generator for the problem draws.

    Returns:
        Array of shape ``(n_resamples,)`` or ``(n_resamples, q)``.

    Example:
        >>> bootstrap_means([1.0, 1.0, 1.0], n_resamples=5).tolist()
        [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise ValueError(f"bootstrap needs a non-empty (m,) or (m, q) array, got shape {x.shape}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = _as_generator(seed)
    m = x.shape[0]
    rows = max(1, _CHUNK_ELEMENTS // m)
    out = []
    for start in range(0, n_resamples, rows):
        idx = rng.integers(0, m, size=(min(rows, n_resamples - start), m))  # (r, m)
        out.append(x[idx].mean(axis=1))  # (r,) or (r, q)
    return np.concatenate(out, axis=0)


def percentiles(means: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The two-sided percentile interval of bootstrap ``means`` (per column when 2-D).

    Example:
        >>> [round(float(v), 6) for v in percentiles(np.arange(101.0), 0.9)]
        [5.0, 95.0]
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high


def bootstrap_ci(
    values: ArrayLike,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | np.random.Generator = 0,
) -> MetricEstimate:
    """Mean of per-problem ``values`` with a percentile-bootstrap interval over problems.

    Example:
        >>> est = bootstrap_ci([0, 1] * 50, n_resamples=500)
        >>> est.value, est.low < 0.5 < est.high
        (0.5, True)
    """
    x = np.asarray(values, dtype=np.float64)
    means = bootstrap_means(x, n_resamples=n_resamples, seed=seed)
    low, high = percentiles(means, confidence)
    return MetricEstimate(float(x.mean()), float(low), float(high), int(x.shape[0]))


def paired_difference_ci(
    run_a: Mapping[str, float],
    run_b: Mapping[str, float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | np.random.Generator = 0,
) -> MetricEstimate:
    """Mean of ``a - b`` over the problems both runs scored, with a paired bootstrap interval.

    Problems are resampled once and both runs are read on the same draw, so the interval
    reflects only the per-problem differences (narrower than comparing two separate intervals
    when the runs agree on which problems are hard).

    Args:
        run_a: Per-problem metric values of run A, keyed by problem id.
        run_b: The same for run B.

    Raises:
        ValueError: if the runs share no problem.

    Example:
        >>> a = {"p0": 1.0, "p1": 1.0, "p2": 0.0}
        >>> b = {"p0": 0.0, "p1": 1.0, "p2": 0.0, "p9": 1.0}
        >>> est = paired_difference_ci(a, b, n_resamples=200)
        >>> round(est.value, 4), est.n_problems
        (0.3333, 3)
    """
    shared = [pid for pid in run_a if pid in run_b]
    if not shared:
        raise ValueError("paired_difference_ci: the two runs share no problem id")
    diffs = [float(run_a[pid]) - float(run_b[pid]) for pid in shared]
    return bootstrap_ci(diffs, confidence=confidence, n_resamples=n_resamples, seed=seed)
