"""Evaluation: the metrics papers report, with bootstrap confidence intervals.

Torch-free (numpy only). The evaluator that runs policies through the env builds on these.

Example:
    >>> from reasonenv.evaluation import SampleRecord, summarize
    >>> recs = [SampleRecord("p0", True, "4"), SampleRecord("p0", False, "5"),
    ...         SampleRecord("p1", True, "9"), SampleRecord("p1", True, "9")]
    >>> summarize(recs, ks=(1, 2)).metrics["pass@2"].value
    1.0
"""

from reasonenv.evaluation.bootstrap import (
    MetricEstimate,
    bootstrap_ci,
    bootstrap_means,
    paired_difference_ci,
)
from reasonenv.evaluation.metrics import (
    EvalSummary,
    SampleRecord,
    avg_at_n,
    grader_equivalent,
    maj_at_n,
    maj_at_n_per_problem,
    majority_vote,
    pass_at_k,
    pass_at_k_per_problem,
    pass_hat_k,
    pass_hat_k_per_problem,
    summarize,
)

__all__ = [
    "EvalSummary",
    "MetricEstimate",
    "SampleRecord",
    "avg_at_n",
    "bootstrap_ci",
    "bootstrap_means",
    "grader_equivalent",
    "maj_at_n",
    "maj_at_n_per_problem",
    "majority_vote",
    "paired_difference_ci",
    "pass_at_k",
    "pass_at_k_per_problem",
    "pass_hat_k",
    "pass_hat_k_per_problem",
    "summarize",
]
