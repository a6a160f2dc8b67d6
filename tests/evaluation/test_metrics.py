"""Sampling metrics against brute-force enumeration, voting by grader equivalence, bootstrap CIs."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from reasonenv.evaluation import (
    SampleRecord,
    avg_at_n,
    bootstrap_ci,
    bootstrap_means,
    maj_at_n,
    majority_vote,
    paired_difference_ci,
    pass_at_k,
    pass_at_k_per_problem,
    pass_hat_k,
    pass_hat_k_per_problem,
    summarize,
)
from reasonenv.grading import grade


def enumerate_subsets(n: int, c: int, k: int) -> tuple[Fraction, Fraction]:
    """(P[some of k is correct], P[all k correct]) by walking every k-subset of n samples."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    some = sum(any(s) for s in subsets)
    every = sum(all(s) for s in subsets)
    return Fraction(some, len(subsets)), Fraction(every, len(subsets))


ALL_NCK = [(n, c, k) for n in range(1, 9) for c in range(n + 1) for k in range(1, n + 1)]


@pytest.mark.parametrize("n,c,k", ALL_NCK)
def test_pass_at_k_and_pass_hat_k_equal_exact_enumeration(n: int, c: int, k: int) -> None:
    some, every = enumerate_subsets(n, c, k)
    assert pass_at_k(n, c, k) == pytest.approx(float(some), abs=1e-12)
    assert pass_hat_k(n, c, k) == pytest.approx(float(every), abs=1e-12)


def test_vectorised_helpers_match_the_scalar_functions() -> None:
    rows = [(n, c) for n in range(4, 9) for c in range(n + 1)]
    n = np.array([r[0] for r in rows])
    c = np.array([r[1] for r in rows])
    for k in (1, 2, 4):
        assert pass_at_k_per_problem(n, c, k).tolist() == pytest.approx(
            [pass_at_k(int(a), int(b), k) for a, b in rows], abs=1e-12)
        assert pass_hat_k_per_problem(n, c, k).tolist() == pytest.approx(
            [pass_hat_k(int(a), int(b), k) for a, b in rows], abs=1e-12)


def test_large_n_is_stable_and_exact() -> None:
    n, c, k = 1000, 3, 400
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9)
    hat = Fraction(math.comb(700, 50), math.comb(n, 50))
    assert pass_hat_k(n, 700, 50) == pytest.approx(float(hat), rel=1e-9)


def test_one_correct_of_four_gives_pass_at_4_of_one() -> None:
    # the bias issue 8 names: a biased best@k gives 0.684 here
    assert pass_at_k(4, 1, 4) == 1.0


@pytest.mark.parametrize("n,c,k", [(4, 5, 1), (4, -1, 1), (4, 2, 5), (4, 2, 0)])
def test_bad_counts_raise(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
    with pytest.raises(ValueError):
        pass_hat_k(n, c, k)


# --------------------------------------------------------------------- avg@n and maj@n


def test_avg_at_n_weighs_problems_equally() -> None:
    assert avg_at_n([[True, False, False, False], [True, True]]) == pytest.approx(0.625)
    assert avg_at_n([[False], [False, False]]) == 0.0


def test_equivalent_answers_vote_together_under_the_grader() -> None:
    answers = ["3", "0.5", "3", "1/2", "\\frac{1}{2}"]
    correct = [False, True, False, True, True]
    # by string, "3" has the most votes (2 of 5); by the grader, the three halves win
    assert majority_vote(answers, lambda a, b: a == b) == 0
    assert majority_vote(answers) == 1
    assert maj_at_n([answers], [correct]) == 1.0
    assert maj_at_n([answers], [correct], equivalent=lambda a, b: a == b) == 0.0


def test_tie_goes_to_the_cluster_formed_first() -> None:
    assert majority_vote(["4", "3", "3", "4"]) == 0
    assert majority_vote(["3", "4", "4", "3"]) == 0
    assert majority_vote(["7", "8"]) == 0
    assert maj_at_n([["4", "3", "3", "4"]], [[False, True, True, False]]) == 0.0
    assert maj_at_n([["3", "4", "4", "3"]], [[True, False, False, True]]) == 1.0


def test_samples_without_an_answer_do_not_vote() -> None:
    answers = [None, None, None, "5", "6", "5"]
    assert majority_vote(answers) == 3
    assert maj_at_n([answers], [[False, False, False, True, False, True]]) == 1.0
    assert majority_vote([None, None]) is None
    assert maj_at_n([[None, None]], [[False, False]]) == 0.0


def test_summarize_majority_ignores_no_answer_records_with_text() -> None:
    # an answer string whose verdict says no_answer (e.g. an empty box) must not vote
    recs = [SampleRecord("p", False, "", reason="no_answer")] * 3 + [
        SampleRecord("p", True, "2", reason="exact")]
    assert summarize(recs, n_resamples=50).metrics["maj@n"].value == 1.0


# --------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2024)
    true_mean, problems, n = 0.4, 80, 4
    covered, width_ratios = 0, []
    trials = 200
    for trial in range(trials):
        p = rng.beta(2.0, 3.0, size=problems)  # mean 0.4 per-problem difficulty
        values = rng.binomial(n, p) / n
        est = bootstrap_ci(values, n_resamples=1000, seed=trial)
        covered += est.low <= true_mean <= est.high
        normal_width = 2 * 1.96 * values.std() / np.sqrt(problems)
        width_ratios.append((est.high - est.low) / normal_width)
    assert 0.90 <= covered / trials <= 0.99, covered / trials
    # coverage alone barely separates 95 % from 99.9 % in 200 trials; the width does
    assert 0.9 <= np.mean(width_ratios) <= 1.1, np.mean(width_ratios)


def test_bootstrap_is_seeded() -> None:
    values = np.random.default_rng(0).random(50)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)
    assert bootstrap_means(values, n_resamples=7).shape == (7,)
    assert bootstrap_means(np.stack([values, values], 1), n_resamples=7).shape == (7, 2)


def test_paired_ci_is_narrower_than_unpaired_on_correlated_runs() -> None:
    rng = np.random.default_rng(7)
    m = 300
    skill = rng.random(m)
    run_a = (rng.random(m) < skill).astype(float)
    run_b = run_a.copy()
    flip = rng.random(m) < 0.1  # B disagrees with A on 10 % of problems
    run_b[flip] = 1.0 - run_b[flip]
    a = {f"p{i}": v for i, v in enumerate(run_a)}
    b = {f"p{i}": v for i, v in enumerate(run_b)}
    paired = paired_difference_ci(a, b, n_resamples=2000, seed=0)
    assert paired.value == pytest.approx(run_a.mean() - run_b.mean())
    unpaired = bootstrap_means(run_a, seed=1) - bootstrap_means(run_b, seed=2)
    low, high = np.quantile(unpaired, [0.025, 0.975])
    assert paired.high - paired.low < 0.6 * (high - low)
    assert paired.low <= paired.value <= paired.high


def test_paired_ci_uses_only_shared_problems() -> None:
    est = paired_difference_ci({"a": 1.0, "b": 0.0, "x": 1.0}, {"a": 0.0, "b": 0.0, "y": 0.0},
                               n_resamples=100)
    assert (est.value, est.n_problems) == (0.5, 2)
    with pytest.raises(ValueError, match="share no problem"):
        paired_difference_ci({"a": 1.0}, {"b": 1.0})


# --------------------------------------------------------------------- summarize


def test_unparseable_references_are_excluded_and_counted_not_scored_zero() -> None:
    bad = grade("\\boxed{1}", "\\frac{")  # a reference the grader cannot parse
    assert bad.reference_ok is False
    good = [SampleRecord("g", True, "1", reason="exact"), SampleRecord("g", False, "2")]
    broken = [SampleRecord.from_verdict("bad", bad), SampleRecord.from_verdict("bad", bad)]
    with_bad = summarize(good + broken, n_resamples=50)
    without = summarize(good, n_resamples=50)
    assert with_bad.metrics["avg@n"].value == without.metrics["avg@n"].value == 0.5
    assert (with_bad.n_problems, with_bad.n_excluded_problems, with_bad.n_excluded_samples) == (1, 1, 2)
    assert "bad" not in with_bad.per_problem["avg@n"]


def test_summarize_on_hand_made_records() -> None:
    recs = [
        SampleRecord("a", True, "1/2", reason="numeric", n_tokens=10),
        SampleRecord("a", True, "0.5", reason="exact", n_tokens=20),
        SampleRecord("a", False, "3", reason="mismatch", n_tokens=30, truncated=True),
        SampleRecord("a", False, None, reason="no_answer", n_tokens=40, truncated=True),
        SampleRecord("b", False, "7", reason="mismatch", n_tokens=5),
        SampleRecord("b", False, "7", reason="mismatch", n_tokens=5),
        SampleRecord("b", True, "8", reason="exact", n_tokens=5),
        SampleRecord("b", False, None, reason="no_answer", n_tokens=5),
    ]
    s = summarize(recs, n_resamples=100)
    m = {name: est.value for name, est in s.metrics.items()}
    assert s.ks == (1, 2, 3, 4) and s.min_samples == 4
    assert m["avg@n"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert m["pass@1"] == pytest.approx(m["avg@n"])
    assert m["pass@4"] == 1.0
    assert m["pass@2"] == pytest.approx((pass_at_k(4, 2, 2) + pass_at_k(4, 1, 2)) / 2)
    assert m["pass^2"] == pytest.approx((1 / 6 + 0) / 2)
    assert m["maj@n"] == 0.5  # a: the halves win (correct); b: "7" wins (wrong)
    assert m["mean_tokens"] == pytest.approx((25 + 5) / 2)
    assert m["format_rate"] == pytest.approx(0.75)
    assert m["truncation_rate"] == pytest.approx(0.25)
    for est in s.metrics.values():
        assert est.low <= est.value <= est.high and est.n_problems == 2
    assert s.per_problem["avg@n"] == {"a": 0.5, "b": 0.25}
    assert set(s.to_dict()["metrics"]) == set(s.metrics)


def test_summarize_rejects_k_above_the_fewest_samples() -> None:
    recs = [SampleRecord("a", True)] * 3 + [SampleRecord("b", False)] * 2
    assert summarize(recs, n_resamples=10).ks == (1, 2)
    with pytest.raises(ValueError, match="exceed"):
        summarize(recs, ks=(3,))


def test_summarize_with_nothing_scored_is_empty_not_an_error() -> None:
    s = summarize([SampleRecord("a", False, reference_ok=False)])
    assert s.metrics == {} and s.n_problems == 0 and s.n_excluded_problems == 1
