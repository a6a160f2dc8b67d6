"""The evaluator end to end: rollouts through the env, the files of a run, resume, diagnostics,
the CLI (scripted, python: and openai: specs against a loopback stub), and compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonenv.evaluation.diagnostics import auroc, first_error_prediction, shaper_diagnostics
from reasonenv.evaluation.evaluate import benchmark_problems, evaluate
from reasonenv.evaluation.samples import read_samples
from reasonenv.policy import ScriptedPolicy

BENCH = "procedural:arithmetic?difficulty=1"


class CountingPolicy(ScriptedPolicy):
    """Answers every problem with the boxed answer it reads off the prompt's sum; counts calls."""

    def __init__(self) -> None:
        import re

        def script(prompt: str) -> str:
            a, op, b = re.search(r"(-?\d+) ([-+*]) (-?\d+)", prompt).groups()
            value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
            return f"{a} {op} {b} = {value}.\n\nThe answer is \\boxed{{{value}}}."

        super().__init__(script)
        self.prompts: list[str] = []

    def reset(self, slots):
        super().reset(slots)

    def act(self, observations, slots):
        self.prompts.extend(o for o, s in zip(observations, slots) if s not in self._queues)
        return super().act(observations, slots)


class HalfPolicy:
    """Even slots answer (wrongly) at once; odd slots ramble until the step budget truncates them."""

    def reset(self, slots):
        pass

    def act(self, observations, slots):
        return ["The answer is \\boxed{-999}." if s % 2 == 0 else "x\n\n" for s in slots]


def test_metrics_of_a_policy_that_answers_half_the_time():
    res = evaluate(HalfPolicy(), benchmarks=[BENCH], n=2, limit=4, progress=False,
                   env_kwargs={"max_steps": 3})
    s = res.summaries[BENCH]
    assert s.n_problems == 4 and s.metrics["avg@n"].value == 0.0
    assert s.metrics["format_rate"].value == pytest.approx(0.5)  # the rambler has no final answer
    assert s.metrics["truncation_rate"].value == pytest.approx(0.5)  # and hits max_steps
    assert {len(r["steps"]) for r in res.samples} == {1, 3}


def test_a_plain_callable_is_a_policy():
    res = evaluate(lambda obs: "The answer is \\boxed{0}.", benchmarks=[BENCH], n=1, limit=2,
                   progress=False)
    assert res.summaries[BENCH].n_samples == 2


def test_run_folder_files_and_resume_skips_finished_problems(tmp_path):
    out = tmp_path / "run"
    pol = CountingPolicy()
    res = evaluate(pol, benchmarks=[BENCH], n=3, limit=5, out_dir=out, progress=False)
    assert res.summaries[BENCH].metrics["avg@n"].value == 1.0 and res.new_samples == 15
    assert len(pol.prompts) == 15
    for name in ("samples.jsonl", "results.json", "passk.png", "eval_config.json"):
        assert (out / name).stat().st_size > 0
    rec = read_samples(out)[0]
    assert set(rec) >= {"prompt", "response", "steps", "verdict", "reward_terms", "n_tokens"}
    assert rec["steps"][-1].startswith("The answer is") and rec["reward_terms"][-1]["outcome"] == 1.0
    # Interrupt: drop the last problem's samples and cut one line in half, then resume.
    lines = (out / "samples.jsonl").read_text().splitlines()
    (out / "samples.jsonl").write_text("\n".join(lines[:11]) + "\n" + lines[11][:30])
    pol2 = CountingPolicy()
    res2 = evaluate(pol2, benchmarks=[BENCH], n=3, limit=5, out_dir=out, progress=False)
    assert res2.new_samples == 6 and len(pol2.prompts) == 6  # problems 4 and 5 only
    assert len(read_samples(out)) == 15
    assert res2.summaries[BENCH].metrics["avg@n"].value == 1.0
    with pytest.raises(ValueError, match=r"other settings \(n:"):
        evaluate(CountingPolicy(), benchmarks=[BENCH], n=2, limit=5, out_dir=out, progress=False)


def test_procedural_benchmarks_are_fixed_sets():
    a = benchmark_problems(BENCH, 5)
    assert [p.id for p in a] == [p.id for p in benchmark_problems(BENCH, 5)]
    assert [p.id for p in benchmark_problems(BENCH, 5, seed=1)] != [p.id for p in a]
    with pytest.raises(ValueError, match="limit must be a positive int"):
        benchmark_problems(BENCH, 0)


def test_bad_arguments_fail_before_rollouts():
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        evaluate(CountingPolicy(), benchmarks=[BENCH], n=0)
    with pytest.raises(TypeError, match="Policy protocol"):
        evaluate(42, benchmarks=[BENCH])
    with pytest.raises(ValueError, match="Unknown dataset 'gsm9k'"):
        evaluate(CountingPolicy(), benchmarks=["gsm9k"])


# -- diagnostics ------------------------------------------------------------------------------
def test_auroc_and_localisation_by_hand():
    assert auroc([3, 2, 1, 0], [True, True, False, False]) == 1.0
    assert auroc([1, 1], [True, False]) == 0.5
    assert auroc([1, 2], [True, True]) is None
    assert first_error_prediction([0.1, -0.2, -0.5]) == (1, 2)
    assert first_error_prediction([0.3, 0.1]) == (None, 1)


def test_shaper_diagnostics_on_hand_made_samples():
    def s(correct, terms, variant=None, first=None, group=0.0):
        return {"correct": correct, "reward_terms": [{"x": t} for t in terms], "episode_terms": {},
                "group_terms": {"x": group}, "variant": variant, "first_error_step": first}

    samples = [s(True, [0.5, 0.5]), s(True, [0.2, 0.2]), s(False, [0.1, -0.3], "corrupted", 1),
               s(False, [0.9, 0.9], "corrupted", 0)]
    d = shaper_diagnostics(samples, ["x"])["x"]
    assert d["mean_correct"] == pytest.approx(0.7) and d["mean_incorrect"] == pytest.approx(0.8)
    assert d["auroc"] == pytest.approx(0.5)  # 1.0 > -0.2 and 1.0 < 1.8, 0.4 > -0.2, 0.4 < 1.8
    assert d["fluent_but_wrong"] == pytest.approx(0.5)  # 1.8 is above the correct median 0.7
    assert d["corrupted_solutions"] == 2
    assert d["first_error_by_first_negative"] == 0.5 and d["first_error_by_lowest"] == 1.0


def test_corrupted_solutions_are_recognised_and_localised_by_a_step_shaper():
    """A step shaper that penalises wrong arithmetic finds the first wrong step of every
    corrupted worked solution."""
    import re
    from dataclasses import dataclass

    from reasonenv.shaping import Shaper, register_shaper, unregister_shaper

    @register_shaper
    class ArithmeticCheck(Shaper):
        name = "t_arith"

        @dataclass
        class Config:
            pass

        def step_terms(self, steps):
            out = []
            for c in steps:
                m = re.search(r"(-?\d+) ([-+*]) \(?(-?\d+)\)? = (-?\d+)", c.step_text)
                if not m:
                    out.append(0.0)
                    continue
                a, op, b, r = m.groups()
                v = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
                out.append(0.0 if v == int(r) else -1.0)
            return out

    try:
        from reasonenv.agents.policy_specs import SolutionPolicy

        bench = "procedural:chained_sums?difficulty=2"
        probs = benchmark_problems(bench, 6)
        res = evaluate(SolutionPolicy(probs, "corrupt"), benchmarks=[bench], n=1, limit=6,
                       shapers=["t_arith"], progress=False)
        assert all(s["variant"] == "corrupted" and not s["correct"] for s in res.samples)
        d = res.diagnostics["t_arith"]
        assert d["corrupted_solutions"] == 6 and d["first_error_by_first_negative"] == 1.0
    finally:
        unregister_shaper("t_arith")


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_scripted_oracle_writes_everything(tmp_path, capsys):
    from reasonenv.cli import main

    code = main(["eval", "--policy", "scripted:oracle", "--benchmark", f"{BENCH},procedural:fractions",
                 "--n", "2", "--limit", "3", "--out", str(tmp_path / "o"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "avg@n" in out and "overall" in out
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["overall"]["metrics"]["avg@n"]["value"] == 1.0 and res["overall"]["n_problems"] == 6
    assert main(["compare", str(tmp_path / "o"), str(tmp_path / "o"), "--json", "--resamples", "50"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert cmp["avg@n"]["difference"]["value"] == 0.0 and cmp["avg@n"]["shared_problems"] == 6


@pytest.mark.parametrize("argv,match", [
    (["--policy", "scripted:nope"], "scripted policies are"),
    (["--policy", "scripted:oracle", "--benchmark", "gsm9k"], "Unknown dataset 'gsm9k'"),
    (["--policy", "scripted:oracle", "--shapers", "prll"], "unknown shaper 'prll'"),
    (["--policy", "scripted:oracle", "--n", "0"], "--n must be a positive int, got 0"),
    (["--policy", "scripted:oracle", "--preset", "nope"], "no such preset"),
    (["--policy", "openai:localhost"], "must look like openai:<base_url>:<model>"),
    (["--policy", "python:nomodule_x:obj"], "ModuleNotFoundError"),
])
def test_cli_bad_input_is_one_line(argv, match, capsys):
    from reasonenv.cli import main

    assert main(["eval", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_cli_python_spec(tmp_path, capsys, monkeypatch):
    from reasonenv.cli import main

    (tmp_path / "mypolicy.py").write_text(
        "class Always:\n    def reset(self, slots): pass\n"
        "    def act(self, obs, slots): return ['The answer is \\\\boxed{1}.' for _ in obs]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["eval", "--policy", "python:mypolicy:Always", "--benchmark", BENCH, "--n", "1",
                 "--limit", "2", "--no-progress", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["benchmarks"][BENCH]["n_samples"] == 2


def test_cli_openai_spec_against_a_loopback_stub(capsys):
    """openai:<base_url>:<model> in chat mode (the default) against a stub server."""
    from openai_stub import Stub

    stub = Stub()
    try:
        def reply(body):
            assert body["model"] == "stub" and "messages" in body
            return {"choices": [{"index": 0, "finish_reason": "stop", "stop_reason": None,
                                 "message": {"role": "assistant", "content": "The answer is \\boxed{0}."}}]}

        stub.responder = reply
        from reasonenv.cli import main

        assert main(["eval", "--policy", f"openai:{stub.url}:stub", "--benchmark", BENCH, "--n", "2",
                     "--limit", "2", "--no-progress", "--json"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["benchmarks"][BENCH]["n_samples"] == 4 and stub.paths[0].endswith("/chat/completions")
        assert len(stub.requests) == 4
    finally:
        stub.close()


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "configs").rglob("eval*.yaml"))
                         + sorted((Path(__file__).resolve().parents[2] / "configs" / "eval").glob("*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_eval_preset_resolves(path):
    from reasonenv.agents.eval_cli import _preset

    data = _preset(str(path))
    assert data["benchmarks"], path


def test_presets_load():
    from reasonenv.agents.eval_cli import _preset

    prl = _preset("prl")
    assert prl["n"] == 8 and prl["temperature"] == 1.0 and prl["max_tokens"] == 3072
    assert set(prl["benchmarks"]) == {"math500", "minerva", "olympiadbench", "amc23", "aime24"}
    progrs = _preset("progrs")
    assert progrs["n"] == 1 and progrs["temperature"] == 0.0
    assert set(progrs["benchmarks"]) == {"math500", "amc23", "aime24", "minerva", "olympiadbench"}
