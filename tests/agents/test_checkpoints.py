"""Checkpoints are safe (nothing is unpickled) and survivable (a broken newest file falls back to
the newest readable one), and a full disk or an unwritable folder is an error naming the file and
the cause, with nothing lost. The trainer runs with the tiny model of test_trainer.py."""

from __future__ import annotations

import errno
import os
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_trainer import make_trainer, tiny_cfg  # noqa: E402


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and a != a:
        return b != b
    return type(a) is type(b) and a == b


def test_round_trip_keeps_types_and_stores_tied_weights_once(tmp_path):
    import random

    from safetensors import safe_open

    from reasonenv.agents.checkpoints import load_checkpoint, save_checkpoint

    emb = torch.nn.Parameter(torch.randn(5, 3))
    state = {
        "step": 7,
        "model": {"embed.weight": emb, "lm_head.weight": emb, "h": torch.randn(2, dtype=torch.bfloat16),
                  "mask": torch.tensor([True, False]), "scalar": torch.tensor(2.5), "none": torch.zeros(0)},
        "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(5, 3)}},
                      "param_groups": [{"lr": 1e-6, "betas": (0.9, 0.999), "foreach": None, "params": [0]}]},
        "python_rng": random.getstate(), "numpy_rng": np.random.get_state(),
        "data_rng": np.random.default_rng([3, 0]).bit_generator.state,
        "loss": float("nan"), "count": np.int64(4), "table": np.arange(6, dtype=np.float32).reshape(2, 3),
        "__dunder__": {"__tensor__": "not a reference"},
    }
    path = save_checkpoint(tmp_path / "checkpoints" / "step_7.safetensors", state)
    back = load_checkpoint(path)
    assert _same(state, back)
    assert back["model"]["embed.weight"] is back["model"]["lm_head.weight"]
    with safe_open(str(path), "pt") as f:  # a plain safetensors file: any tool can read it
        assert "model/embed.weight" in f.keys() and "model/lm_head.weight" not in f.keys()
        assert f.metadata()["format"] == "reasonenv-checkpoint-v1"


def test_objects_are_refused_not_pickled(tmp_path):
    from reasonenv.agents.checkpoints import save_checkpoint

    with pytest.raises(TypeError, match="checkpoint entry model/x: a object cannot be stored"):
        save_checkpoint(tmp_path / "step_1.safetensors", {"model": {"x": object()}})
    assert list(tmp_path.iterdir()) == []


def test_load_state_restores_the_global_rngs(tmp_path):
    import random

    from reasonenv.agents.checkpoints import load_checkpoint, save_checkpoint

    tr = make_trainer(tiny_cfg(tmp_path, "grpo"))
    path = save_checkpoint(tmp_path / "step_0.safetensors", tr.state_dict())
    draws = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    tr.load_state(load_checkpoint(path))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]


def test_the_trainer_saves_its_weights_as_safetensors(tmp_path):
    from safetensors.torch import load_file

    tr, _ = _train(tmp_path, 1)
    weights = load_file(tmp_path / "grpo" / "checkpoints" / "step_1.safetensors")
    for name, p in tr.model.state_dict().items():
        if f"model/{name}" in weights:
            assert torch.equal(weights[f"model/{name}"], p)
    assert sum(k.startswith("model/") for k in weights) >= len(dict(tr.model.named_parameters()))


class Payload:
    """Unpickling this creates ``marker`` (a stand-in for os.system)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _train(tmp_path, steps, **over):
    cfg = tiny_cfg(tmp_path, "grpo", **{"run.steps": steps, "run.checkpoint_every": 1, **over})
    tr = make_trainer(cfg)
    return tr, tr.train()


def _newest(run):
    return max((run / "checkpoints").iterdir(), key=lambda p: p.stat().st_mtime_ns)


def test_a_crafted_pickle_in_checkpoints_does_not_run(tmp_path):
    run = tmp_path / "grpo"
    _train(tmp_path, 2)
    marker = tmp_path / "PWNED"
    ckpts = run / "checkpoints"
    torch.save({"step": 99, "model": Payload(marker)}, ckpts / "step_99.pt")  # the old format's name
    (ckpts / "step_98.safetensors").write_bytes(pickle.dumps(Payload(marker)))  # the new one's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tr, hist = _train(tmp_path, 3, **{"run.resume": True})
        finally:
            assert not marker.exists(), "resuming unpickled the crafted checkpoint"
    assert [h["step"] for h in hist] == [3]
    text = " | ".join(str(w.message) for w in caught)
    assert "step_99.pt: a pickle checkpoint; not loaded" in text and "step_98.safetensors is unreadable" in text


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_broken_newest_checkpoint_falls_back_to_the_newest_readable(tmp_path, damage):
    run = tmp_path / "grpo"
    _train(tmp_path, 2)
    good = _newest(run)
    broken = {"truncated": good.read_bytes()[: good.stat().st_size // 2], "empty": b"",
              "garbage": np.random.default_rng(0).bytes(4096)}[damage]
    third = good.with_name(f"step_3{good.suffix}")
    third.write_bytes(broken)
    with pytest.warns(UserWarning, match=rf"{third.name} is unreadable: .*trying the previous"):
        tr, hist = _train(tmp_path, 3, **{"run.resume": True})
    assert [h["step"] for h in hist] == [3]  # resumed from step 2
    from reasonenv.agents.checkpoints import load_checkpoint

    assert load_checkpoint(third)["step"] == 3  # the broken one was replaced


def test_stray_files_are_ignored_with_a_warning(tmp_path):
    run = tmp_path / "grpo"
    _train(tmp_path, 1)
    for name in ("step_x.pt", "step_x.safetensors", "step_2.safetensors.tmp", "notes.txt"):
        (run / "checkpoints" / name).write_text("stray")
    with pytest.warns(UserWarning) as caught:
        _, hist = _train(tmp_path, 2, **{"run.resume": True})
    assert [h["step"] for h in hist] == [2]
    ignored = sorted(str(w.message).split("/")[-1] for w in caught if "ignoring" in str(w.message))
    assert ignored == ["notes.txt: not named step_<N>.safetensors",
                       "step_2.safetensors.tmp: an interrupted save",
                       "step_x.pt: a pickle checkpoint; not loaded, as unpickling can run code",
                       "step_x.safetensors: not named step_<N>.safetensors"]


def test_resume_without_a_checkpoint_says_so_and_starts_at_0(tmp_path):
    with pytest.warns(UserWarning, match=r"run.resume=true but .*checkpoints holds no checkpoint; "
                                         "starting at step 0"):
        _, hist = _train(tmp_path, 1, **{"run.resume": True})
    assert [h["step"] for h in hist] == [1]


def test_only_unreadable_checkpoints_is_an_error(tmp_path):
    from reasonenv.agents.checkpoints import CheckpointError, CheckpointWarning, load_latest

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step_5.safetensors").write_bytes(b"\x00" * 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        with pytest.raises(CheckpointError, match=r"no readable checkpoint in .*newest: step_5"):
            load_latest(tmp_path)
    assert load_latest(tmp_path / "elsewhere") is None


# ------------------------------------------------------------------ disk full, unwritable
def _fail_writes_to(monkeypatch, suffix, err):
    """os.write raises ``err`` for files whose name ends with ``suffix`` (found via /proc)."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    real = os.write

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(suffix):
            raise OSError(err, os.strerror(err))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


def test_disk_full_on_a_checkpoint_names_the_file_and_loses_nothing(tmp_path, monkeypatch):
    run = tmp_path / "grpo"
    _train(tmp_path, 1)
    _fail_writes_to(monkeypatch, "step_2.safetensors.tmp", errno.ENOSPC)
    with pytest.raises(OSError) as err:
        _train(tmp_path, 2, **{"run.resume": True})
    assert str(err.value) == (f"cannot write {run / 'checkpoints' / 'step_2.safetensors'}: No space left on "
                              "device (errno 28 ENOSPC); earlier checkpoints are kept")
    assert err.value.errno == errno.ENOSPC
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_1.safetensors"]
    from reasonenv.agents.checkpoints import load_checkpoint
    from reasonenv.agents.runlog import read_metrics

    assert load_checkpoint(run / "checkpoints" / "step_1.safetensors")["step"] == 1
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]  # logged before the save


def test_disk_full_on_the_metrics_names_the_file(tmp_path, monkeypatch):
    _fail_writes_to(monkeypatch, "metrics.jsonl", errno.ENOSPC)
    with pytest.raises(OSError, match=r"cannot write .*metrics\.jsonl: No space left on device"):
        _train(tmp_path, 1)


def test_unwritable_checkpoint_folder_names_the_file(tmp_path, monkeypatch):
    """What a read-only folder gives a non-root user (root ignores chmod, so os.open is told)."""
    real_open = os.open

    def deny(path, flags, *args, **kw):
        if "checkpoints" in str(path) and flags & os.O_WRONLY:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(OSError, match=r"cannot write .*step_1\.safetensors: Permission denied"):
        _train(tmp_path, 1)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_checkpoint_folder_chmod(tmp_path):
    run = tmp_path / "grpo"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints").chmod(0o555)
    try:
        with pytest.raises(OSError, match=r"cannot write .*step_1\.safetensors: Permission denied"):
            _train(tmp_path, 1)
    finally:
        (run / "checkpoints").chmod(0o755)


def test_cli_disk_full_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    from reasonenv.cli import main
    from reasonenv.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    tiny_model(tok).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    _fail_writes_to(monkeypatch, ".safetensors.tmp", errno.ENOSPC)
    code = main(["train", "--set", f"model.name={tmp_path / 'model'}", "--set", f"run.out_dir={tmp_path / 'run'}",
                 "--set", "run.steps=1", "--set", "run.progress=false", "--set", "run.tensorboard=false",
                 "--set", "run.plot=false", "--set", "env.chat=false", "--set", "env.max_tokens=12",
                 "--set", "rollout.max_step_tokens=6", "--set", "rollout.group_size=2",
                 "--set", "rollout.num_problems=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("reasonenv train: cannot write ")
    assert "step_1.safetensors: No space left on device" in err[-1]
