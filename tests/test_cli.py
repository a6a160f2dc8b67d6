from __future__ import annotations

import json
import subprocess
import sys

from reasonenv.cli import main


def test_envs_lists_registered_ids(capsys):
    assert main(["envs"]) == 0
    assert capsys.readouterr().out.split() == ["reasonenv/MathSteps-v0", "reasonenv/MathTokens-v0"]


def test_grade_subcommand_json(capsys):
    code = main(["grade", "--response", "so \\boxed{\\dfrac{1}{2}}", "--reference", "0.5", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["correct"] is True


def test_demo_scripted_part_runs_and_prints_rewards():
    out = subprocess.run(
        [sys.executable, "-m", "reasonenv.cli", "demo", "--skip-model", "--episodes", "2"],
        check=True, capture_output=True, text=True,
    ).stdout
    assert out.count("[oracle]") == 2 and "outcome=1" in out
    assert "reward=+1.000" in out
