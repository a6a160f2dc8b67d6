"""VLLMPolicy / VLLMSampler against HFPolicy on a tiny random Llama.

Tests marked ``vllm`` need an interpreter with vLLM: ``$REASONENV_VLLM_PYTHON`` (e.g.
``.venv-vllm/bin/python`` from ``scripts/setup_vllm_venv.sh``) or vLLM importable here. Run
them with ``REASONENV_VLLM_PYTHON=.venv-vllm/bin/python pytest -m vllm``. The other tests
(step cutting with a fake engine, error reporting) run everywhere.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from typing import Any

import numpy as np
import pytest

from reasonenv.segmentation import IncrementalDecoder

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from reasonenv.agents.vllm_policy import (  # noqa: E402
    VLLMEngine,
    VLLMEngineConfig,
    VLLMPolicy,
    VLLMPolicyConfig,
    VLLMSampler,
    VLLMWorkerError,
)

PROMPTS = ["What is 2 + 3?", "Q: 7 + 1 = ?\nA: Let's think step by step.\n"]


def _vllm_python() -> str | None:
    if os.environ.get("REASONENV_VLLM_PYTHON"):
        return os.environ["REASONENV_VLLM_PYTHON"]
    return sys.executable if importlib.util.find_spec("vllm") is not None else None


@pytest.fixture(scope="module")
def vllm_python() -> str:
    py = _vllm_python()
    if py is None:
        pytest.skip("no vLLM interpreter: set REASONENV_VLLM_PYTHON (scripts/setup_vllm_venv.sh) "
                    "or install vllm here")
    return py


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tok) -> str:
    """A tiny random Llama (head_dim 64, which vLLM's CPU attention supports) as safetensors."""
    from reasonenv.testing import tiny_model

    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model(tiny_tok, hidden_size=256).save_pretrained(path)
    tiny_tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def hf_lm(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def vpol(vllm_python, model_dir):
    t0 = time.perf_counter()
    pol = VLLMPolicy(model_dir, config=VLLMPolicyConfig(temperature=0.0, max_step_tokens=8),
                     engine_config=VLLMEngineConfig(dtype="float32", max_model_len=512,
                                                    cpu_kv_cache_gib=1),
                     python=vllm_python)
    print(f"\nvLLM engine start: {time.perf_counter() - t0:.1f} s; worker info: {pol.engine.info}")
    yield pol
    pol.close()
    assert pol.engine._proc.poll() is not None


def _hf_policy(lm, tok, temperature: float = 0.0):
    from reasonenv.agents import HFPolicy, HFPolicyConfig

    return HFPolicy(lm, tok, HFPolicyConfig(temperature=temperature, max_step_tokens=8))


def _run_steps(pol, steps: int = 2) -> list[list[dict[str, Any]]]:
    pol.reset([0, 1])
    return [pol.act(PROMPTS, [0, 1]) for _ in range(steps)]


def _teacher_forced(lm, tok, prompt: str, ids: list[int]) -> list[float]:
    ctx = tok.encode(prompt, add_special_tokens=False)
    with torch.no_grad():
        logp = torch.log_softmax(lm(torch.tensor([ctx + ids])).logits[0].float(), -1)
    return [float(logp[len(ctx) + j - 1, t]) for j, t in enumerate(ids)]


# -- vLLM ------------------------------------------------------------------------------------
@pytest.mark.vllm
def test_hf_and_vllm_policies_produce_the_same_greedy_text(vpol, hf_lm, tiny_tok):
    hf_steps = _run_steps(_hf_policy(hf_lm, tiny_tok))
    t0 = time.perf_counter()
    v_steps = _run_steps(vpol)
    print(f"\nvLLM greedy: 2 steps x 2 slots in {time.perf_counter() - t0:.2f} s")
    for hf_acts, v_acts in zip(hf_steps, v_steps):
        for h, v in zip(hf_acts, v_acts):
            assert v["token_ids"] == h["token_ids"] and v["text"] == h["text"]
            assert v["eos"] == h["eos"]
            assert v["logprobs"] == pytest.approx(h["logprobs"], abs=1e-3)


@pytest.mark.vllm
def test_vllm_sampled_logprobs_match_teacher_forcing(vpol, hf_lm, tiny_tok):
    pol = VLLMPolicy(vpol.engine.model_path, tiny_tok, VLLMPolicyConfig(temperature=1.0, seed=5),
                     engine=vpol.engine)
    for steps in (_run_steps(pol, 1), _run_steps(pol, 1)):
        for prompt, a in zip(PROMPTS, steps[0]):
            assert 0 < len(a["token_ids"]) == len(a["logprobs"])
            assert a["text"] == IncrementalDecoder(tiny_tok).extend(a["token_ids"]).text
            ref = _teacher_forced(hf_lm, tiny_tok, prompt, a["token_ids"])
            assert a["logprobs"] == pytest.approx(ref, abs=1e-3)
            n = len(a["token_ids"])  # the step ends at its last token, not before
            for k in range(1, n):
                text = IncrementalDecoder(tiny_tok).extend(a["token_ids"][:k]).text
                assert not pol.segmenter.ends_step(text, k)
    pol.close()  # shares the engine: must not stop it
    assert vpol.engine._proc.poll() is None


@pytest.mark.vllm
def test_vllm_fixed_split_and_newline_split(vpol, tiny_tok):
    for split in ("fixed:3", "\n"):
        pol = VLLMPolicy("", tiny_tok, VLLMPolicyConfig(temperature=1.0, split=split, seed=1),
                         engine=vpol.engine)
        for step in _run_steps(pol, 2):
            for a in step:
                n = len(a["token_ids"])
                assert a["eos"] or pol.segmenter.ends_step(a["text"], n) or n == 8
                assert split != "fixed:3" or a["eos"] or n == 3


@pytest.mark.vllm
def test_vllm_sampler_matches_hf_greedy_and_is_seeded(vpol, hf_lm, tiny_tok):
    from reasonenv.models.sampler import HFSampler

    greedy = VLLMSampler(vpol.engine, tiny_tok, temperature=0.0, max_new_tokens=10)
    hf = HFSampler(hf_lm, tiny_tok, temperature=0.0, max_new_tokens=10)
    assert greedy.sample(PROMPTS, 2, seed=0) == hf.sample(PROMPTS, 2, seed=0)
    sampler = VLLMSampler(vpol.engine, tiny_tok, temperature=1.0, max_new_tokens=10)
    a = sampler.sample(PROMPTS, 3, seed=7)
    assert len(a) == 2 and all(len(c) == 3 for c in a)
    assert sampler.sample(PROMPTS, 3, seed=7) == a
    assert sampler.sample(PROMPTS[::-1], 3, seed=7) == a[::-1]  # per-prompt streams


@pytest.mark.vllm
def test_vllm_sync_weights_follows_the_trainer(vpol, model_dir, tiny_tok):
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    before = _run_steps(vpol)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in lm.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    hf_after = _run_steps(_hf_policy(lm, tiny_tok))
    assert [a["token_ids"] for s in hf_after for a in s] != [a["token_ids"] for s in before for a in s]
    seconds = vpol.sync_weights(lm)
    print(f"\nsync_weights (save + in-place reload): {seconds:.2f} s")
    after = _run_steps(vpol)
    for hs, vs in zip(hf_after, after):
        for h, v in zip(hs, vs):
            assert v["token_ids"] == h["token_ids"] and v["text"] == h["text"]
            assert v["logprobs"] == pytest.approx(h["logprobs"], abs=1e-3)


@pytest.mark.vllm
def test_vllm_worker_reports_a_bad_model_path(vllm_python, tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(VLLMWorkerError, match="does not exist"):
        VLLMEngine(str(tmp_path / "no-such-model"), python=vllm_python)
    assert time.perf_counter() - t0 < 60


@pytest.mark.vllm
def test_vllm_worker_reports_an_unloadable_model(vllm_python, tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(VLLMWorkerError, match="init"):
        VLLMEngine(str(tmp_path), python=vllm_python,
                   config=VLLMEngineConfig(startup_timeout=300))


# -- no vLLM needed ---------------------------------------------------------------------------
class FakeEngine:
    """Returns scripted completions (possibly running past the step boundary)."""

    model_path = ""

    def __init__(self, outputs: list[list[int]], finish: str = "stop", stop_reason: Any = "\n\n"):
        self.outputs, self.finish, self.stop_reason = outputs, finish, stop_reason
        self.prompts: list[list[int]] = []

    def generate(self, prompts, **kw):
        self.prompts += [list(p) for p in prompts]
        out = self.outputs.pop(0)
        return [[{"token_ids": out, "logprobs": [-0.5] * len(out), "text": "",
                  "finish_reason": self.finish, "stop_reason": self.stop_reason}]]


def test_steps_are_cut_at_the_segmenter_boundary(tiny_tok):
    first = tiny_tok.encode("a\n\nbc", add_special_tokens=False)
    eng = FakeEngine([first, tiny_tok.encode("d", add_special_tokens=False)], finish="length",
                     stop_reason=None)
    pol = VLLMPolicy("", tiny_tok, VLLMPolicyConfig(max_step_tokens=8), engine=eng)  # type: ignore[arg-type]
    pol.reset([3])
    (a,) = pol.act(["Q"], [3])
    assert a["text"] == "a\n\n" and not a["eos"]
    assert len(a["token_ids"]) == len(a["logprobs"]) < len(first)
    (b,) = pol.act(["ignored"], [3])
    prompt = tiny_tok.encode("Q", add_special_tokens=False)
    assert eng.prompts[1] == prompt + a["token_ids"]  # the dropped tokens are not context
    assert b["text"] == "d"


def test_eos_and_stop_token_end_the_episode(tiny_tok):
    ids = tiny_tok.encode("ab", add_special_tokens=False) + [tiny_tok.eos_token_id]
    pol = VLLMPolicy("", tiny_tok, engine=FakeEngine([ids], stop_reason=None))  # type: ignore[arg-type]
    (a,) = pol.act(["Q"], [0])
    assert a["eos"] and a["token_ids"] == ids
    other = tiny_tok.encode("ab", add_special_tokens=False)  # stopped on a generation_config eos
    pol = VLLMPolicy("", tiny_tok, engine=FakeEngine([other], stop_reason=other[-1]))  # type: ignore[arg-type]
    assert pol.act(["Q"], [0])[0]["eos"]


def test_worker_without_vllm_fails_with_a_clear_error(tmp_path):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is importable here")
    t0 = time.perf_counter()
    with pytest.raises(VLLMWorkerError, match="No module named 'vllm'"):
        VLLMEngine(str(tmp_path), python=sys.executable)
    assert time.perf_counter() - t0 < 30


def test_missing_interpreter_is_a_clear_error(tmp_path):
    with pytest.raises(VLLMWorkerError, match="cannot start the vLLM worker"):
        VLLMEngine(str(tmp_path), python=str(tmp_path / "no-python"))


@pytest.mark.vllm
def test_trainer_runs_an_update_with_vllm_rollouts(vllm_python, tiny_tok, tmp_path, monkeypatch):
    """rollout.backend=vllm: vLLM samples, the trainer updates, the worker reloads the weights."""
    from reasonenv.agents.config import load_config
    from reasonenv.agents.trainer import Trainer
    from reasonenv.testing import tiny_model

    monkeypatch.setenv("REASONENV_VLLM_PYTHON", vllm_python)
    cfg = load_config(None, [
        f"run.out_dir={tmp_path}", "run.steps=2", "run.tensorboard=false", "run.progress=false",
        "run.plot=false", "rollout.backend=vllm", "rollout.num_problems=2", "rollout.group_size=4",
        "rollout.max_step_tokens=6", "env.max_tokens=12", "env.chat=false", "optim.lr=1e-2",
        "rollout.vllm.compile=false", "rollout.vllm.cpu_kv_cache_gib=0.25"])
    import zlib

    from reasonenv.grading import Verdict

    def parity_grader(pairs):  # mixed outcomes from a random model, so the update is non-zero
        return [Verdict(zlib.crc32(r.encode()) % 2 == 0, r[-5:], a, None, a, "exact") for r, a in pairs]

    cfg.shaping.services = {"grader": parity_grader}
    model = tiny_model(tiny_tok, hidden_size=256)
    before = [p.detach().clone() for p in model.parameters()]
    tr = Trainer(cfg, model, tiny_tok)
    engine = tr.policy.engine.config  # rollout.vllm reaches the engine; the model has 1024 positions
    assert (engine.compile, engine.cpu_kv_cache_gib, engine.max_model_len) == (False, 0.25, 1024)
    try:
        hist = tr.train()
    finally:
        tr.policy.close()
    assert len(hist) == 2 and all(np.isfinite(h["loss"]) for h in hist)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
