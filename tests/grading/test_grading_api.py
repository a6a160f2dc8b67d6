"""Public API: Verdict, module-level functions, bad references, math-verify, CLI, import cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import reasonenv.grading as grading
from reasonenv.grading import Grader, Verdict, grade, grade_batch
from reasonenv.grading.cli import add_grade_arguments, main, run_grade

REPO_ROOT = Path(grading.__file__).parents[2]


def test_public_api_exports() -> None:
    for name in ("Verdict", "extract_answer", "has_final_answer", "grade", "grade_batch", "Grader"):
        assert name in grading.__all__ and hasattr(grading, name)


def test_verdict_to_dict_is_json() -> None:
    v = grade(r"\boxed{4}", "4")
    d = v.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["correct"] is True and d["reason"] == "exact" and d["reference_ok"] is True
    assert set(d) >= {"correct", "extracted", "reference", "pred_normalized", "ref_normalized",
                      "reason", "reference_ok", "timed_out", "error", "second_opinion"}  # fmt: skip
    with pytest.raises(AttributeError):
        v.correct = False  # type: ignore[misc]  # frozen


def test_verdict_to_dict_equals_asdict_plus_disagreement() -> None:
    import dataclasses

    from reasonenv.grading import Verdict

    for v in (grade(r"\boxed{4}", "4"), grade("no answer here", "4"),
              Verdict(True, "1", "1", "1", "1", "exact", second_opinion=False),
              Verdict(False, None, "x", None, None, "error", reference_ok=False, timed_out=True,
                      error="boom")):
        want = {**dataclasses.asdict(v), "disagreement": v.disagreement}
        assert v.to_dict() == want and list(v.to_dict()) == list(want)


def test_verdict_fields() -> None:
    v = grade(r"Thus \boxed{\dfrac{1}{2}}.", "0.5")
    assert (v.correct, v.extracted, v.pred_normalized, v.ref_normalized, v.reason) == (
        True, r"\dfrac{1}{2}", r"\frac{1}{2}", "0.5", "numeric")  # fmt: skip
    assert v.reference == "0.5"


def test_no_answer() -> None:
    v = grade("I am not sure.", "5")
    assert (v.correct, v.extracted, v.reason, v.reference_ok) == (False, None, "no_answer", True)
    v = grade("It is 5.", "5", last_number_fallback=True)
    assert v.correct and v.extracted == "5"


@pytest.mark.parametrize(
    "reference", ["", "   ", r"\frac{1}{", "???", "(1,2", r"\boxed{}", "x" * 5000]
)
def test_bad_reference(grader: Grader, reference: str) -> None:
    for response in (r"\boxed{1}", "no answer at all"):
        v = grader.grade(response, reference)
        assert v.reason == "bad_reference", v
        assert v.reference_ok is False and v.correct is False


def test_good_references_are_ok(grader: Grader) -> None:
    for ref in (
        r"\frac{\sqrt{3}}{2}",
        r"\text{Monday}",
        "(B)",
        r"\{1,2\}",
        r"y=2x+1",
        r"(-\infty, 0]",
    ):
        v = grader.grade("no answer", ref)
        assert v.reason == "no_answer" and v.reference_ok, v


def test_grade_batch_order_and_parallelism(grader: Grader) -> None:
    pairs = [(rf"\boxed{{{i}x+{i}}}", f"{i}(x+1)") for i in range(1, 13)] + [("#### 3", "4")]
    verdicts = grader.grade_batch(pairs)
    assert [v.correct for v in verdicts] == [True] * 12 + [False]
    assert [v.reference for v in verdicts] == [p[1] for p in pairs]
    assert [v.correct for v in grade_batch([("#### 1,234", "1234"), ("#### 3", "4")])] == [
        True,
        False,
    ]
    assert grader.grade_batch([]) == []


def test_cheap_answers_do_not_start_workers() -> None:
    g = Grader(n_workers=1)
    try:
        assert g.grade("#### 1,234", "1234").correct
        assert not g.grade(r"\boxed{(1,2)}", "[1,2]").correct
        assert g.grade(r"\boxed{\text{(B)}}", "B").correct
        assert g.pool.worker_pids() == []
    finally:
        g.close()


def test_closed_grader_never_raises() -> None:
    g = Grader(n_workers=1)
    g.close()
    v = g.grade(r"\boxed{x+1}", "1+x")
    assert isinstance(v, Verdict) and v.reason == "error" and not v.correct
    assert g.grade("#### 2", "2").correct  # cheap path still works


def test_math_verify_second_opinion(grader: Grader) -> None:
    pytest.importorskip("math_verify")
    v = grader.grade(
        r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt{2}}", use_math_verify=True, timeout=20
    )
    assert v.correct and v.second_opinion is True and not v.disagreement
    v = grader.grade(r"\boxed{3}", "4", use_math_verify=True, timeout=20)
    assert not v.correct and v.second_opinion is False
    assert grader.grade(r"\boxed{3}", "3").second_opinion is None  # only when asked


def test_import_is_cheap() -> None:
    code = "import sys, reasonenv.grading; print('sympy' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))  # fmt: skip
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_cli_human_and_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--response", r"so the answer is \boxed{\frac{1}{2}}", "--reference", "0.5"]) == 0
    assert capsys.readouterr().out == "correct: True  (numeric)\n"
    assert main(["--response", "The answer is 7.", "--reference", "8", "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["correct"] is False and d["reason"] == "mismatch" and d["extracted"] == "7"
    f = tmp_path / "resp.txt"
    f.write_text(r"Long derivation ... \boxed{x^2+2x+1}", encoding="utf-8")
    assert main(["--response-file", str(f), "--reference", "(x+1)^2", "--timeout", "20"]) == 0
    assert capsys.readouterr().out.startswith("correct: True  (symbolic)")
    assert main(["--response", "it is 5", "--reference", "5", "--last-number"]) == 0
    capsys.readouterr()
    assert main(["--response", "#### 5", "--reference", r"\frac{1}{"]) == 2
    assert "bad_reference" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--reference", "5"])  # a response is required


def test_cli_parser_hooks() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd")
    add_grade_arguments(sub.add_parser("grade"))
    args = parser.parse_args(["grade", "--response", "#### 4", "--reference", "4", "--json"])
    assert args.cmd == "grade" and args.json and args.timeout == 2.0
    assert run_grade(args) == 0


def test_cli_module_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "reasonenv.grading.cli", "--response", r"\boxed{30^\circ}", "--reference", "30"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "correct: True  (exact)"
