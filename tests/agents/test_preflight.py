"""`reasonenv train` fails before it spends anything, in one line: every value that can be
checked without a model is checked before the model loads (and by --print-config), names
that need the hub fail fast offline, and bad config files are one line too. No network: the
tests run with the HF_*_OFFLINE switches (tests/conftest.py) or a monkeypatched probe."""

from __future__ import annotations

import json
import os
import time

import pytest

from reasonenv.agents.config import ConfigError, load_config


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model is what the checks must come before: make it an error."""
    pytest.importorskip("torch")
    import reasonenv.agents.trainer as trainer_mod

    def refuse(cfg):
        raise AssertionError("the model was loaded before the config was checked")

    monkeypatch.setattr(trainer_mod, "load_model", refuse)


@pytest.fixture
def hub_unreachable(monkeypatch):
    """No offline switch set, and the network probe says the hub cannot be reached."""
    from reasonenv.agents import hub_access

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    calls = []

    def probe(timeout=hub_access.PROBE_TIMEOUT):
        calls.append(timeout)
        return "huggingface.co:443 cannot be reached (test)"

    monkeypatch.setattr(hub_access, "probe_hub", probe)
    monkeypatch.setattr(hub_access, "_probe_result", False)
    return calls


# (override, the key and the value the one line must name)
PROBES = [
    ("env.problems=procedural:arithmetic?difficulty=99", "env.problems=", "difficulty=99"),
    ("env.problems=gsm8k:validation", "env.problems=", "'validation'"),
    ("env.problems=gsm8k:test?limit=0", "env.problems=", "limit"),
    ("env.problems=nosuchset", "env.problems=", "'nosuchset'"),
    ("shaping.shapers=[{name: prll}]", "shaping.shapers[0]=", "'prll'"),
    ("shaping.shapers=[{name: prl, etaa: 3}]", "shaping.shapers[0]=", "etaa"),
    ("shaping.shapers=[{name: prl, eta: fast}]", "shaping.shapers[0]=", "'fast'"),
    ("shaping.services={reward_model: x}", "shaping.services=", "reward_model"),
    ("shaping.services={prm: {kind: step_tag}}", "shaping.services=", "prm"),
    ("rollout.group_size=0", "rollout.group_size=0", ">= 1"),
    ("rollout.num_problems=0", "rollout.num_problems=0", ">= 1"),
    ("rollout.max_step_tokens=0", "rollout.max_step_tokens=0", ">= 1"),
    ("algo.micro_batch=0", "algo.micro_batch=0", ">= 1"),
    ("algo.inner_epochs=0", "algo.inner_epochs=0", ">= 1"),
    ("env.max_tokens=-3", "env.max_tokens=-3", ">= 1"),
    ("optim.lr=nan", "optim.lr=nan", "finite"),
    ("optim.lr=inf", "optim.lr=inf", "finite"),
    ("optim.lr=-1e-6", "optim.lr=-1e-06", ">= 0"),
    ("optim.beta2=1.0", "optim.beta2=1.0", "[0, 1)"),
    ("optim.max_grad_norm=0", "optim.max_grad_norm=0.0", "> 0"),
    ("optim.weight_decay=nan", "optim.weight_decay=nan", "finite"),
    ("optim.warmup_steps=-1", "optim.warmup_steps=-1", ">= 0"),
    ("rollout.temperature=0", "rollout.temperature=0.0", "> 0"),
    ("rollout.top_p=1.5", "rollout.top_p=1.5", "(0, 1]"),
    ("algo.kl_coef=-0.1", "algo.kl_coef=-0.1", ">= 0"),
    ("algo.clip_eps_low=nan", "algo.clip_eps_low=nan", "[0, 1]"),
    ("algo.advantage.estimator=bogus", "algo.advantage.estimator=", "'bogus'"),
    ("env.id=reasonenv/Nope-v0", "env.id=", "Nope"),
    ("model.name=/nonexistent/model", "model.name=", "'/nonexistent/model'"),
    ("model.name=bogus", "model.name=", "'bogus': no such folder, and not a packaged model"),
    ("run.steps=0", "run.steps=0", ">= 1"),
    ("run.checkpoint_every=-1", "run.checkpoint_every=-1", ">= 0"),
    ("run.seed=-1", "run.seed=-1", ">= 0"),
    ("rollout.vllm.compil=false", "rollout.vllm.compil=False", "not a VLLMEngineConfig option"),
    ("rollout.vllm.compile=1", "rollout.vllm.compile=1", "must be a bool"),
    ("rollout.vllm.cpu_kv_cache_gib=big", "rollout.vllm.cpu_kv_cache_gib='big'", "must be a float"),
    ("rollout.vllm.cpu_kv_cache_gib=true", "rollout.vllm.cpu_kv_cache_gib=True", "must be a float"),
]


def _check(overrides):
    from reasonenv.agents.preflight import check_config

    check_config(load_config(None, overrides))


@pytest.mark.parametrize("override,key,value", PROBES, ids=[p[0] for p in PROBES])
def test_check_config_names_the_key_and_the_value_in_one_line(tmp_path, override, key, value):
    with pytest.raises(ConfigError) as err:
        _check([f"run.out_dir={tmp_path}", override])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(key.split("=")[0]) and key in msg and value in msg


def test_the_defaults_and_documented_edge_values_pass(tmp_path):
    """checkpoint_every=0 keeps its meaning (only after the last update), lr=0 and an infinite
    max_grad_norm (no clipping) are accepted."""
    _check([f"run.out_dir={tmp_path}"])
    _check([f"run.out_dir={tmp_path}", "run.checkpoint_every=0", "optim.lr=0",
            "optim.max_grad_norm=inf", "env.problems=gsm8k:train?limit=3"])


# The probes, end to end through the command line.
CLI_PROBES = [p for p in PROBES if p[0].split("=")[0] in (
    "env.problems", "shaping.shapers", "rollout.group_size", "optim.lr", "env.id", "model.name",
    "run.steps", "run.checkpoint_every")]


@pytest.mark.parametrize("override,key,value", CLI_PROBES, ids=[p[0] for p in CLI_PROBES])
def test_cli_exits_2_with_one_line_before_loading_the_model(tmp_path, capsys, no_model_load,
                                                            override, key, value):
    from reasonenv.cli import main

    for extra in ([], ["--print-config"]):
        code = main(["train", "--set", f"run.out_dir={tmp_path / 'run'}", "--set", override, *extra])
        err = capsys.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith("reasonenv train: ") and key in err and value in err
    assert not (tmp_path / "run").exists()  # nothing written either


def test_trainer_checks_before_it_loads_the_model(tmp_path, no_model_load):
    """Library use (Trainer(cfg), trainer.main(cfg)) gets the same checks as the CLI."""
    from reasonenv.agents.trainer import Trainer, main

    cfg = load_config(None, [f"run.out_dir={tmp_path}", "rollout.group_size=0"])
    for run in (Trainer, main):
        with pytest.raises(ConfigError, match=r"^rollout.group_size=0: must be an int >= 1$"):
            run(cfg)


def test_out_dir_that_is_a_file_or_under_a_file(tmp_path, capsys, no_model_load):
    from reasonenv.cli import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, why in ((afile, "is a file"), (afile / "sub", f"{str(afile)!r} is a file")):
        for extra in ([], ["--print-config"]):
            assert main(["train", "--set", f"run.out_dir={out}", *extra]) == 2
            err = capsys.readouterr().err
            assert len(err.splitlines()) == 1 and f"run.out_dir={str(out)!r}" in err and why in err


def test_out_dir_without_write_permission(tmp_path, monkeypatch):
    """Root ignores permission bits, so chmod alone cannot show it there: os.access answers
    as it would for a user (what a read-only mount also answers for root)."""
    from pathlib import Path

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access

    def access(path, mode, **kw):
        return Path(path) != locked and real_access(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(ConfigError, match=r"run.out_dir=.*locked.*is not writable \(permission denied\)"):
        _check([f"run.out_dir={locked}"])
    with pytest.raises(ConfigError, match=r"cannot be created in .*locked.* \(permission denied\)"):
        _check([f"run.out_dir={locked / 'new' / 'run'}"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_out_dir_in_a_read_only_folder_chmod(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="permission denied"):
            _check([f"run.out_dir={locked / 'run'}"])
    finally:
        locked.chmod(0o755)


def test_config_file_not_utf8_or_a_folder(tmp_path, capsys, no_model_load):
    from reasonenv.cli import main

    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("run:\n  out_dir: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 0xe9 at offset 19\)"):
        load_config(bad)
    with pytest.raises(ConfigError, match="is a folder; pass a YAML file"):
        load_config(tmp_path)
    for path in (bad, tmp_path):
        assert main(["train", "--config", str(path)]) == 2
        assert len(capsys.readouterr().err.splitlines()) == 1


def test_yaml_syntax_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "\n" not in str(err.value) and "line 2, column 1" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(None, ["optim.lr=[1"])
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ the hub, offline
@pytest.mark.parametrize("override,kind", [
    ("shaping.services.ref_model=org/bogus", "model"),
    ("shaping.services={prover: {model: org/bogus}}", "model"),
    ("model.name=org/bogus", "model"),
    ("env.problems=aime24", "dataset"),
    ("env.problems=olympiadbench", "dataset"),
])
@pytest.mark.parametrize("how", ["switch", "probe"])
def test_hub_names_fail_fast_offline(tmp_path, monkeypatch, request, override, kind, how):
    """Today `ref_model` retries for 51 s and `aime24` for 23 s: now one line saying the hub is
    offline, well under the budget a retry loop would take."""
    if how == "probe":
        request.getfixturevalue("hub_unreachable")
        offline = "cannot be reached"
    else:
        var = "TRANSFORMERS_OFFLINE" if kind == "model" else "HF_DATASETS_OFFLINE"
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            monkeypatch.delenv(v, raising=False)
        monkeypatch.setenv(var, "1")
        offline = f"{var}=1 is set"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        _check([f"run.out_dir={tmp_path / 'run'}", override])
    assert time.perf_counter() - t0 < 5.0
    msg = str(err.value)
    assert "\n" not in msg and "Hugging Face hub" in msg and offline in msg and "offline" in msg


def test_cli_hub_name_offline_exits_2_fast(tmp_path, capsys, no_model_load, hub_unreachable):
    from reasonenv.cli import main

    t0 = time.perf_counter()
    code = main(["train", "--set", f"run.out_dir={tmp_path}", "--set",
                 "shaping.services.ref_model=org/bogus"])
    assert time.perf_counter() - t0 < 5.0
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "offline" in err
    assert len(hub_unreachable) == 1  # probed once


def test_probe_runs_once_and_a_cached_copy_is_accepted_offline(tmp_path, monkeypatch, hub_unreachable):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    (tmp_path / "hf" / "hub" / "models--org--cached" / "snapshots" / "abc").mkdir(parents=True)
    (tmp_path / "hf" / "datasets" / "HuggingFaceH4___aime_2024").mkdir(parents=True)
    _check([f"run.out_dir={tmp_path / 'run'}", "shaping.services.ref_model=org/cached",
            "env.problems=aime24"])
    with pytest.raises(ConfigError, match="offline"):
        _check([f"run.out_dir={tmp_path / 'run'}", "model.name=org/other"])
    assert len(hub_unreachable) == 1


def test_hub_names_pass_when_the_hub_answers(tmp_path, monkeypatch):
    from reasonenv.agents import hub_access

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub_access, "probe_hub", lambda timeout=1.5: None)
    monkeypatch.setattr(hub_access, "_probe_result", False)
    _check([f"run.out_dir={tmp_path}", "shaping.services.ref_model=org/some-ref", "env.problems=amc23"])


def test_probe_is_bounded_when_dns_hangs(monkeypatch):
    """getaddrinfo has no timeout of its own: the probe still answers within its timeout."""
    import socket

    from reasonenv.agents import hub_access

    def hang(*a, **k):  # then fail as a lookup would, so the late thread ends quietly
        time.sleep(30)
        raise OSError("name resolution timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.perf_counter()
    reason = hub_access.probe_hub(timeout=0.2)
    assert time.perf_counter() - t0 < 2.0 and "did not answer within 0.2 s" in reason


def test_probe_connects_to_the_endpoint_or_the_proxy(monkeypatch):
    """A local listening socket stands in for the hub (loopback only)."""
    import socket

    from reasonenv.agents import hub_access

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert hub_access.probe_hub(timeout=1.0) is None
        monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{port}")
        monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
        assert hub_access.probe_hub(timeout=1.0) is None
    finally:
        server.close()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")  # closed now
    assert "cannot be reached" in hub_access.probe_hub(timeout=1.0)


def test_resume_with_only_unreadable_checkpoints_is_a_config_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step_4.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"run.resume=True: no readable checkpoint .*step_4"):
        _check([f"run.out_dir={tmp_path}", "run.resume=true"])
    _check([f"run.out_dir={tmp_path}"])  # a fresh run is the user's call


def test_shipped_configs_pass_the_preflight(tmp_path, monkeypatch):
    """The checks reject bad values, not the configs we ship (the hub answers, simulated)."""
    from reasonenv.agents import hub_access
    from reasonenv.agents.preflight import check_config

    # Imported before the switches are cleared: a first import of tests.conftest (this test run
    # alone) executes it again, and it sets HF_HUB_OFFLINE.
    from tests.conftest import fake_tiny_artifacts, trainer_config_paths

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub_access, "probe_hub", lambda timeout=1.5: None)
    monkeypatch.setattr(hub_access, "_probe_result", False)

    paths = trainer_config_paths()
    assert len(paths) >= 14
    fake_tiny_artifacts(tmp_path)
    monkeypatch.chdir(tmp_path)  # the tiny configs name runs/tiny/... relative to the checkout
    for path in paths:
        check_config(load_config(path, [f"run.out_dir={tmp_path / path.parent.name / path.stem}"]))


def test_the_readme_errors_are_what_the_cli_prints(tmp_path, monkeypatch, capsys, no_model_load):
    """README's Errors block, run as printed (in a folder holding the files it names)."""
    import re
    import shlex
    from pathlib import Path

    from reasonenv.cli import main

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"### Errors\n.*?```text\n(.*?)```", readme, flags=re.S).group(1).splitlines()
    pairs = list(zip(block[0::2], block[1::2]))
    assert len(pairs) >= 15 and all(c.startswith("$ ") for c, _ in pairs)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "README.md").write_text("x")
    (tmp_path / "latin1.yaml").write_bytes("run:\n  out_dir: caf\xe9\n".encode("latin-1"))
    (tmp_path / "runs" / "broken" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "broken" / "checkpoints" / "step_4.safetensors").write_bytes(b"")
    checked = 0
    for command, expected in pairs:
        if "the disk fills up" in command:
            continue  # tests/agents/test_checkpoints.py makes the disk full
        words = shlex.split(command[2:].split("  #")[0])
        while "=" in words[0]:
            var, value = words.pop(0).split("=", 1)
            monkeypatch.setenv(var, value)
        assert words[:2] == ["reasonenv", "train"]
        assert main(words[1:]) == 2, command
        assert capsys.readouterr().err.strip() == expected, command
        checked += 1
    assert checked == len(pairs) - 1


def test_pav_K_must_be_the_K_the_value_head_was_trained_for(tmp_path):
    """The value head answers one Best-of-K; another K failed only at the first step."""
    from reasonenv.agents.preflight import check_config

    head = tmp_path / "head"
    head.mkdir()
    (head / "config.json").write_text("{}")
    (head / "value_head.json").write_text(json.dumps({"K": 4, "max_length": 64}))
    cfg = load_config(None, [f"run.out_dir={tmp_path / 'run'}"])
    cfg.shaping.services = {"prover": {"value_head": str(head)}}
    cfg.shaping.shapers = [{"name": "pav", "K": 2, "m": 4}]
    with pytest.raises(ConfigError, match=r"^shaping.shapers\[0\].K=2: .*trained for K=4$"):
        check_config(cfg, check_model=False)
    cfg.shaping.shapers = [{"name": "pav", "K": 4, "m": 4}]
    check_config(cfg, check_model=False)
