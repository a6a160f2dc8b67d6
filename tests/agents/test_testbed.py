"""reasonenv testbed (make demo): SFT, held-out eval, RL, eval again, on a model small enough
for seconds. The held-out sets must be the ones SFT removed, and before/after must be paired."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from reasonenv.agents.config import load_config  # noqa: E402
from reasonenv.agents.testbed import heldout_spec, run_testbed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SFT_TINY = ["model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "model.num_kv_heads=2",
            "model.intermediate_size=64", "data.num_examples=128", "data.val_examples=16",
            "data.holdout_limit=20", "train.steps=10", "train.batch_size=8", "train.warmup_steps=2",
            "run.progress=false", "run.threads=1"]


def tiny_testbed(tmp_path, rl_dir, steps, eval_limit, eval_n, log):
    """run_testbed on the shipped configs, shrunk to seconds (SFT in tmp_path/sft, cached)."""
    return run_testbed(ROOT / "configs" / "tiny" / "sft.yaml", ROOT / "configs" / "tiny" / "demo.yaml",
                       sft_overrides=[*SFT_TINY, f"run.out_dir={tmp_path / 'sft'}"],
                       overrides=[f"run.out_dir={tmp_path / rl_dir}", f"run.steps={steps}",
                                  "rollout.num_problems=2", "rollout.group_size=2", "env.max_tokens=24",
                                  "run.progress=false", "run.plot=false"],
                       eval_limit=eval_limit, eval_n=eval_n, log=log)


def test_heldout_sets_are_the_seeds_sft_removed_from_its_data():
    from reasonenv.agents.sft import load_sft_config

    scfg = load_sft_config(ROOT / "configs" / "tiny" / "sft.yaml", [])
    cfg = load_config(ROOT / "configs" / "tiny" / "demo.yaml", [])
    assert heldout_spec(cfg, "test") == f"{scfg.data.problems}&seed=0"
    assert heldout_spec(cfg, "validation") == f"{scfg.data.problems}&seed=1"
    assert {0, 1} <= set(scfg.data.holdout_seeds)
    with pytest.raises(ValueError, match="split must be one of"):
        heldout_spec(cfg, "train")


def test_testbed_runs_end_to_end_and_pairs_before_with_after(tmp_path):
    logs: list[str] = []
    res = tiny_testbed(tmp_path, "rl", 2, 3, 2, logs.append)
    assert (tmp_path / "sft" / "model.safetensors").is_file()
    assert [h["step"] for h in res.history] == [1, 2]
    assert res.before["problems"] == res.after["problems"] and len(res.before["problems"]) == 3
    diff = np.mean(np.array(res.after["correct"]) - np.array(res.before["correct"])) / 2
    assert res.diff.value == pytest.approx(diff) and res.diff.n_problems == 3
    assert any("[4/4]" in line for line in logs)
    first = len(logs)
    again = tiny_testbed(tmp_path, "rl2", 1, 2, 1, logs.append)
    assert any("found, same config hash" in line for line in logs[first:])  # SFT is cached
    assert [h["step"] for h in again.history] == [1]


def test_a_bad_trainer_value_stops_before_sft(tmp_path, capsys):
    from reasonenv.cli import main

    rc = main(["testbed", "--sft-set", f"run.out_dir={tmp_path / 'sft'}", "--set", "rollout.group_size=0"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rollout.group_size" in err[0]
    assert not (tmp_path / "sft").exists()


def test_the_reported_difference_is_after_minus_before_per_problem(tmp_path, monkeypatch):
    """Scripted held-out results, so before and after differ: the paired difference is the
    mean over problems of (after - before) / n, with the sign that way round."""
    import reasonenv.agents.testbed as tb

    results = iter([{"problems": ["a", "b", "c"], "correct": [0, 1, 4], "n": 4, "avg": 5 / 12, "seconds": 0},
                    {"problems": ["a", "b", "c"], "correct": [2, 1, 4], "n": 4, "avg": 7 / 12, "seconds": 0}])
    monkeypatch.setattr(tb, "heldout_eval", lambda *a, **k: next(results))
    res = tiny_testbed(tmp_path, "rl", 1, 3, 4, lambda line: None)
    assert res.diff.value == pytest.approx(2 / 4 / 3) and res.diff.n_problems == 3
    assert res.diff.low <= res.diff.value <= res.diff.high


@pytest.mark.parametrize("flag,value", [("--eval-limit", "0"), ("--eval-n", "-1")])
def test_bad_eval_sizes_are_one_line_before_sft(tmp_path, capsys, flag, value):
    from reasonenv.cli import main

    assert main(["testbed", "--sft-set", f"run.out_dir={tmp_path / 'sft'}", flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag[2:].replace("-", "_") in err[0] and value in err[0]
    assert not (tmp_path / "sft").exists()
