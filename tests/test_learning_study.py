"""benchmarks/learning_study.py: the bootstrap intervals and the compute accounting of the study."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("learning_study", ROOT / "benchmarks" / "learning_study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_point_is_the_mean_over_seeds_of_the_mean_over_problems(study):
    seeds = [np.array([0.0, 1.0, 1.0, 1.0]), np.array([0.0, 0.0])]  # 0.75 and 0.0
    point, lo, hi = study.two_level_ci(seeds, reps=500)
    assert point == pytest.approx(0.375)
    assert 0.0 <= lo < point < hi <= 1.0


def test_identical_values_give_a_zero_width_interval(study):
    assert study.two_level_ci([np.full(5, 0.25)] * 3, reps=200) == (0.25, 0.25, 0.25)


def test_seed_resampling_widens_the_interval(study):
    """Two seeds that disagree completely: resampling seeds must reach both ends."""
    point, lo, hi = study.two_level_ci([np.zeros(50), np.ones(50)], reps=2000)
    assert point == pytest.approx(0.5) and lo == 0.0 and hi == 1.0


def test_bad_flags_are_one_line(study, capsys):
    with pytest.raises(SystemExit) as e:
        study.main(["--updates", "0"])
    assert e.value.code == 2
    assert "--updates must be >= 1, got 0" in capsys.readouterr().err


def test_method_difference_shares_problems_and_resamples_seeds(study):
    rng = np.random.default_rng(0)
    problems = rng.random(64)  # per-problem difficulty, shared by both methods
    a = [np.clip(problems + 0.2, 0, 1) for _ in range(3)]
    b = [problems.copy() for _ in range(3)]
    point, lo, hi = study.diff_ci(a, b, reps=400)
    assert point == pytest.approx(np.mean(a[0]) - np.mean(b[0]))
    # the same problems are drawn for both: the per-problem spread cancels, the interval is tight
    assert lo == pytest.approx(point, abs=0.03) and hi == pytest.approx(point, abs=0.03)
    # seeds that disagree widen it
    noisy = [problems + d for d in (-0.2, 0.0, 0.2)]
    _, lo2, hi2 = study.diff_ci(noisy, b, reps=400)
    assert lo2 < -0.1 and hi2 > 0.1


def test_compute_counts_policy_prover_and_verifier_tokens(study, tmp_path):
    import json
    from types import SimpleNamespace as NS

    prm, vh = tmp_path / "prm", tmp_path / "vh"
    for d, col in ((prm, {"policy_tokens": 100, "continuation_tokens": 900}), (vh, None)):
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({"collection": col}))
    cfg = NS(shaping=NS(services={"prm": {"model": str(prm), "kind": "quantile"},
                                  "prover": {"value_head": str(vh)}}))
    assert study.verifier_tokens(cfg) == 1000.0  # a folder without collection stats adds 0
    assert study.verifier_tokens(NS(shaping=NS(services={}))) == 0.0
    row = {"tokens": 50.0, "prover_tokens": 7.0, "verifier_tokens": 1000.0}
    assert study.compute_tokens(row) == 1057.0
    assert study.compute_tokens({"tokens": 50.0}) == 50.0  # rows written before the prover counts
