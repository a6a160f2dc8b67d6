"""Trained verifier folders through the services config and the shapers; `reasonenv verifier`."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from verifier_data import BAD, GOOD, TEMPLATE, synthetic_records

import reasonenv
from reasonenv.agents import verifiers as V
from reasonenv.cli import main
from reasonenv.problems import Problem

torch = pytest.importorskip("torch")

PROBLEM = Problem(id="e/0", question="What is 2 + 3?", answer="5", source="t")
PROMPT = {"chat": False, "template": TEMPLATE}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from reasonenv.testing import tiny_model
    from reasonenv.tokenizers import char_tokenizer

    tok = char_tokenizer()
    out = tmp_path_factory.mktemp("tiny_char_llama")
    tiny_model(tok, seed=1, num_layers=1, max_positions=512).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def trained(model_dir, tmp_path_factory):
    """Both verifiers trained (briefly) on the synthetic task and saved: {kind: (verifier, dir)}."""
    out = {}
    for kind in ("prm", "value"):
        verifier, _ = V.train_verifier(synthetic_records(16), str(model_dir), None,
                                       V.TrainSettings(kind=kind, K=2, epochs=5, lr=0.05))
        folder = tmp_path_factory.mktemp(kind)
        verifier.save_pretrained(str(folder))
        out[kind] = (verifier, folder)
    return out


# -- loading by path through services ---------------------------------------------------------------
def test_prm_folder_loads_through_services_with_the_same_scores(trained):
    from reasonenv.models.prm import QuantileHeadPRM
    from reasonenv.shaping.service_factory import build_services, check_services

    prm, folder = trained["prm"]
    spec = {"prm": {"model": str(folder), "kind": "quantile"}}
    assert check_services(spec) == {"prm.model": str(folder)}
    loaded = build_services(spec).prm
    assert isinstance(loaded, QuantileHeadPRM) and loaded.quantiles == (0.1, 0.5, 0.9)
    items = [("What is 3?", [GOOD, BAD, "so \\boxed{1}."])]
    np.testing.assert_allclose(loaded.score(items)[0], prm.score(items)[0], atol=1e-6)
    assert (folder / "quantile_head.safetensors").is_file() and not list(folder.glob("*.pt"))


def test_prm_folder_of_the_older_pickle_format_still_loads(trained, tmp_path):
    import shutil

    from reasonenv.models.prm import QuantileHeadPRM

    prm, folder = trained["prm"]
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    (old / "quantile_head.safetensors").unlink()
    torch.save(prm.head.state_dict(), old / "quantile_head.pt")
    items = [("What is 3?", [GOOD, "so \\boxed{1}."])]
    np.testing.assert_allclose(QuantileHeadPRM.from_pretrained(str(old)).score(items)[0],
                               prm.score(items)[0], atol=1e-6)
    (old / "quantile_head.pt").unlink()
    with pytest.raises(FileNotFoundError, match="not a QuantileHeadPRM folder"):
        QuantileHeadPRM.from_pretrained(str(old))


def test_value_head_folder_loads_through_services_with_the_same_values(trained):
    from reasonenv.models.value_head import ValueHeadProver
    from reasonenv.shaping.protocols import ProverRequest
    from reasonenv.shaping.service_factory import build_services, check_services

    vh, folder = trained["value"]
    spec = {"prover": {"value_head": str(folder)}}
    assert check_services(spec) == {"prover.value_head": str(folder)}
    loaded = build_services(spec).prover
    assert isinstance(loaded, ValueHeadProver) and loaded.K == 2
    reqs = [ProverRequest(PROBLEM, "Q: x\nA:\n", p) for p in ("", GOOD, GOOD + BAD)]
    np.testing.assert_allclose(loaded.q_values(reqs, K=2, m=2), vh.q_values(reqs, K=2, m=2), atol=1e-6)
    with pytest.raises(ValueError, match="trained for K=2"):
        loaded.q_values(reqs, K=4, m=4)
    with pytest.raises(ValueError, match="unknown services\\['prover'\\] key"):
        build_services({"prover": {"value_head": str(folder), "temperature": 1.0}})


def test_pav_shaper_steps_with_the_learned_value_head(trained):
    from reasonenv.shaping.protocols import ProverRequest

    vh, folder = trained["value"]
    env = gym.make("reasonenv/MathSteps-v0", tokenizer=vh.tokenizer, prompt=PROMPT, max_steps=4,
                   shapers=[{"name": "pav", "K": 2, "m": 2, "alpha": 3.0}],
                   services={"prover": {"value_head": str(folder)}})
    obs, _ = env.reset(options={"problem": PROBLEM})
    _, _, _, _, info = env.step(GOOD)
    q0, q1 = vh.q_values([ProverRequest(PROBLEM, obs, ""), ProverRequest(PROBLEM, obs, GOOD)], K=2, m=2)
    assert q0 != q1
    assert info["reward_terms"]["pav"] == pytest.approx(3.0 * (q1 - q0), abs=1e-6)
    *_, info = env.step("so \\boxed{5}.")  # last step: Q after it is the verified outcome (1)
    assert info["reward_terms"]["pav"] == pytest.approx(3.0 * (1.0 - q1), abs=1e-6)


def test_progrs_shaper_centres_the_learned_prm_scores(trained):
    prm, folder = trained["prm"]
    venv = reasonenv.make_group_env("reasonenv/MathSteps-v0", num_problems=1, group_size=3,
                                    tokenizer=prm.tokenizer, prompt=PROMPT,
                                    shapers=[{"name": "progrs", "agg": "last", "gamma": 0.0, "lam": 0.5}],
                                    services={"prm": {"model": str(folder), "kind": "quantile"}})
    venv.reset(seed=0, options={"problems": [PROBLEM]})
    plans = [[GOOD, "\\boxed{5}"], [BAD, "\\boxed{4}"], [GOOD, GOOD, "\\boxed{7}"]]
    steps = [list(p) for p in plans]
    g = None
    while g is None:
        *_, info = venv.step([p.pop(0) if p else "" for p in plans])
        g = info["group_end"][0] if "group_end" in info else None
    assert g.outcomes.tolist() == [1.0, 0.0, 0.0]
    last = [prm.score([(PROBLEM.question, s)])[0][-1, 1] for s in steps]  # median of the last step
    mean_wrong = (last[1] + last[2]) / 2
    want = [0.0, 0.5 * (last[1] - mean_wrong), 0.5 * (last[2] - mean_wrong)]  # lam * centred
    assert np.asarray(g.group_terms["progrs"]) == pytest.approx(want, abs=1e-6)
    assert abs(want[1]) > 1e-6  # the learned PRM tells the two wrong responses apart


# -- the command line --------------------------------------------------------------------------------
@pytest.fixture
def no_model_load(monkeypatch):
    """Any model load or collection fails the test: bad flags must stop before them."""
    import reasonenv.models.hf_utils as hf_utils
    from reasonenv.agents import hf

    def boom(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(hf.HFPolicy, "__init__", boom)
    monkeypatch.setattr(hf_utils, "load_model", boom)
    monkeypatch.setattr(V, "collect", boom)
    monkeypatch.setattr(V, "train_verifier", boom)


@pytest.mark.parametrize("argv,flag,value", [
    (["collect", "--m", "0"], "--m", "0"),
    (["collect", "--n", "-1"], "--n", "-1"),
    (["collect", "--limit", "0"], "--limit", "0"),
    (["collect", "--temperature", "-0.5"], "--temperature", "-0.5"),
    (["collect", "--top-p", "nan"], "--top-p", "nan"),
    (["collect", "--split", "tab"], "--split", "tab"),
    (["collect", "--problems", "procedural:nope"], "--problems", "procedural:nope"),
    (["collect", "--prompt", "no placeholder"], "--prompt", "no placeholder"),
    (["collect", "--m", "abc"], "--m", "abc"),
    (["collect", "--chat", "maybe"], "--chat", "maybe"),
    (["collect", "--policy", "/nonexistent/model"], "--policy", "/nonexistent/model"),
    (["train", "--kind", "prm", "--quantiles", "0.9,0.1"], "--quantiles", "0.9,0.1"),
    (["train", "--kind", "prm", "--quantiles", "0,0.5"], "--quantiles", "0,0.5"),
    (["train", "--kind", "prm", "--val-frac", "1.5"], "--val-frac", "1.5"),
    (["train", "--kind", "prm", "--lr", "0"], "--lr", "0"),
    (["train", "--kind", "prm", "--epochs", "0"], "--epochs", "0"),
    (["train", "--kind", "value", "--K", "9"], "--K", "9"),
    (["train", "--kind", "nope"], "--kind", "nope"),
    (["train", "--kind", "prm", "--data", "/nonexistent/data"], "--data", "/nonexistent/data"),
])
def test_bad_flag_exits_2_with_one_line_before_any_model_loads(argv, flag, value, model_dir, tmp_path,
                                                              capsys, no_model_load):
    data = tmp_path / "data"
    data.mkdir()
    (data / V.RECORDS_FILE).write_text("".join(json.dumps(r) + "\n" for r in synthetic_records(8, m=4)))
    (data / V.CONFIG_FILE).write_text(json.dumps({"policy": str(model_dir), "problems": "x"}))
    base = {"collect": ["--policy", str(model_dir), "--out", str(tmp_path / "o")],
            "train": ["--data", str(data), "--out", str(tmp_path / "m")]}[argv[0]]
    try:
        code = main(["verifier", argv[0], *base, *argv[1:]])
    except SystemExit as e:  # argparse's own checks (types, choices)
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and value in lines[0], err


def test_collect_then_train_both_kinds_from_the_command_line(model_dir, tmp_path, capsys):
    data, prm_dir, vh_dir = tmp_path / "mc", tmp_path / "prm", tmp_path / "vh"
    assert main(["verifier", "collect", "--policy", str(model_dir), "--limit", "4", "--n", "2",
                 "--m", "2", "--max-tokens", "16", "--max-step-tokens", "8", "--chat", "off",
                 "--prompt", TEMPLATE, "--problems", "procedural:chained_sums?difficulty=1&seed=9",
                 "--out", str(data)]) == 0
    out = capsys.readouterr().out
    assert "continuations" in out and "policy tokens" in out
    stats = json.loads((data / V.STATS_FILE).read_text())
    assert stats["responses"] == 8 and stats["continuations"] == 2 * stats["prefixes_sampled"]
    for kind, folder in (("prm", prm_dir), ("value", vh_dir)):
        assert main(["verifier", "train", "--data", str(data), "--kind", kind, "--K", "2",
                     "--epochs", "2", "--val-frac", "0.25", "--out", str(folder)]) == 0
        out = capsys.readouterr().out
        assert "held-out" in out and "services:" in out
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["kind"] == kind and metrics["collection"]["responses"] == 8
        assert metrics["trained"]["points"] > 0
        assert metrics["trained"]["localisation"]["solutions"] == len(metrics["val_problems"])
        card = json.loads((folder / "verifier.json").read_text())
        from reasonenv.shaping.service_factory import build_services

        svc = build_services(card["services"])  # the printed services spec loads the folder
        assert (svc.prm if kind == "prm" else svc.prover) is not None
