"""SB3Policy: an SB3 agent trained on MathTokens-v0, evaluated through the step-level env.

The adapter must show the model exactly what MathTokens-v0 shows it (else an evaluation
measures a model on inputs it never saw), cut steps where the token env cuts them, and run
through ``reasonenv eval --policy sb3:<zip>``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import reasonenv  # noqa: F401  (registers the envs)
from reasonenv.envs.math_tokens import MathTokensEnv
from reasonenv.envs.termination import final_answer_end
from reasonenv.problems import render_solution

pytest.importorskip("stable_baselines3")
th = pytest.importorskip("torch")

from stable_baselines3 import PPO  # noqa: E402

from reasonenv.agents.sb3_policy import SB3Policy, TokenEmbedding, token_observation  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHORT = {"problems": "procedural:arithmetic?difficulty=1", "prompt": "{question} "}


class ReplayModel:
    """SB3-shaped stand-in: answers scripted tokens one at a time and records what it saw."""

    def __init__(self, env: gym.Env, tokens: list[int]) -> None:
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        self.policy = object()  # no distribution: the adapter goes through predict()
        self.tokens = list(tokens)
        self.seen: list[dict[str, np.ndarray]] = []

    def predict(self, obs, deterministic=False):
        assert obs["token_ids"].shape == (1, *self.observation_space["token_ids"].shape)
        self.seen.append({k: v[0].copy() for k, v in obs.items()})
        return np.array([self.tokens[len(self.seen) - 1]]), None


def _replay(text: str, **env_kwargs) -> ReplayModel:
    env = MathTokensEnv(**SHORT, **env_kwargs)
    return ReplayModel(env, env.tokenizer.encode(text, add_special_tokens=False))


def _env_trace(env: MathTokensEnv, tokens: list[int], seed: int):
    """Step ``tokens`` through the token env: its observation before each token, its steps and
    its last observation."""
    obs, _ = env.reset(seed=seed)
    seen, steps, start = [], [], 0
    for k, tok in enumerate(tokens):
        seen.append(obs)
        obs, _, term, trunc, info = env.step(tok)
        if info["step_end"]:
            steps.append(tokens[start : k + 1])
            start = k + 1
        if term or trunc:
            return seen, steps, obs
    raise AssertionError("the token env never ended the episode")


@pytest.mark.parametrize("max_prompt_tokens,max_tokens", [(16, 40), (40, 48)])
def test_the_model_sees_exactly_what_math_tokens_returns(max_prompt_tokens, max_tokens):
    env = MathTokensEnv(**SHORT, max_prompt_tokens=max_prompt_tokens, max_tokens=max_tokens)
    env.reset(seed=0)
    steps = env.state.problem.metadata["solution_steps"]  # 8 + 6 = 14., The answer is ...
    tokens = env.tokenizer.encode(render_solution(steps) + " more", add_special_tokens=False)
    env_obs, env_steps, last_obs = _env_trace(env, tokens, seed=0)
    model = ReplayModel(env, tokens)
    pol = SB3Policy(model, split="\n\n", max_tokens=max_tokens)
    pol.reset([5])
    prompt, actions = env.state.prompt, []
    while not (actions and (actions[-1]["eos"] or final_answer_end("".join(a["text"] for a in actions)))):
        actions.extend(pol.act([prompt], [5]))
    # one observation per token, each equal to the env's (ids, zero padding and length)
    assert len(model.seen) == len(env_obs) == sum(len(s) for s in env_steps)
    for ours, theirs in zip(model.seen, env_obs):
        assert ours.keys() == theirs.keys()
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key])
            assert ours[key].dtype == theirs[key].dtype == np.int64
    # the same step cuts: the blank line, then the token that closes the box (" more" unseen)
    assert [a["token_ids"] for a in actions] == env_steps
    assert [a["text"] for a in actions] == [steps[0] + "\n\n", steps[1].rstrip(".")]
    assert not any(a["eos"] for a in actions)
    for key in last_obs:
        np.testing.assert_array_equal(pol.observation(5)[key], last_obs[key])


def test_token_observation_pads_with_zeros_and_counts():
    obs = token_observation([3, 4], 4)
    assert obs["token_ids"].tolist() == [3, 4, 0, 0] and obs["length"].tolist() == [2]
    with pytest.raises(ValueError, match="max_len=4"):
        token_observation([1] * 5, 4)


PROMPT = "What is 2 + 3? "  # 15 tokens: 7 free in the 22-token buffer of max_prompt 16 + max 6


@pytest.mark.parametrize("kwargs,want", [
    # the budget, then an empty EOS step should the env still ask (its budget is larger)
    ({"max_tokens": 2}, [("ab", False), ("", True)]),
    ({"split": "fixed:100"}, [("abcdefg", False), ("", True)]),  # a full buffer: the same
    ({"split": "fixed:3"}, [("abc", False), ("def", False), ("g", False), ("", True)]),
    ({"max_step_tokens": 4}, [("abcd", False), ("efg", False), ("", True)]),
    ({"split": "\n"}, [("ab\n", False), ("cdef", False), ("", True)]),
])
def test_budget_buffer_and_split_cut_steps(kwargs, want):
    text = "ab\ncdefghij" if kwargs.get("split") == "\n" else "abcdefghij"
    model = _replay(text, max_prompt_tokens=16, max_tokens=6)
    pol = SB3Policy(model, **kwargs)
    pol.reset([0])
    got = [(a["text"], a["eos"]) for a in (pol.act([PROMPT], [0])[0] for _ in want)]
    assert got == want


def test_eos_token_ends_the_step_and_the_response():
    model = _replay("ab<eos>cd", max_prompt_tokens=16, max_tokens=6)
    pol = SB3Policy(model)
    pol.reset([0])
    (a,) = pol.act([PROMPT], [0])
    assert a["text"] == "ab<eos>" and a["eos"] and a["token_ids"][-1] == pol.eos_id == 2


class EchoModel(ReplayModel):
    """Answers, for every row of the batch, the first token of that row's prompt."""

    def predict(self, obs, deterministic=False):
        self.seen.append({k: v.copy() for k, v in obs.items()})
        return obs["token_ids"][:, 0].copy(), None


def test_slots_are_batched_and_each_stops_on_its_own():
    pol = SB3Policy(EchoModel(MathTokensEnv(**SHORT, max_prompt_tokens=16, max_tokens=6), []),
                    max_step_tokens=5)
    pol.reset([0, 1, 2])
    acts = pol.act(["\nrest", "xyz", "yes!"], [2, 0, 1])
    assert [a["text"] for a in acts] == ["\n\n", "xxxxx", "yyyyy"]  # "\n\n" ends slot 2's step
    assert [len(o["length"]) for o in pol.model.seen] == [3, 3, 2, 2, 2]  # one forward per token
    assert pol.forward_calls == 5
    np.testing.assert_array_equal(pol.model.seen[2]["length"], [[5], [6]])  # "xyz", "yes!" + 2


@pytest.fixture(scope="module")
def short_ppo():
    env = gym.make("reasonenv/MathTokens-v0", **SHORT, max_prompt_tokens=16, max_tokens=6)
    return env, PPO("MultiInputPolicy", env, n_steps=16, batch_size=16, seed=0,
                    policy_kwargs={"features_extractor_class": TokenEmbedding})


def test_sampled_tokens_carry_the_models_logprobs_of_the_env_observation(short_ppo):
    env, model = short_ppo
    pol = SB3Policy(model, max_tokens=6)
    th.manual_seed(0)
    obs, _ = env.reset(seed=1)
    pol.reset([0])
    (action,) = pol.act([env.unwrapped.state.prompt], [0])
    assert len(action["token_ids"]) == len(action["logprobs"]) >= 1
    for tok, lp in zip(action["token_ids"], action["logprobs"]):
        tensor, _ = model.policy.obs_to_tensor(obs)
        with th.no_grad():
            _, want, _ = model.policy.evaluate_actions(tensor, th.tensor([tok]))
        assert lp == pytest.approx(float(want), abs=1e-5)
        obs, *_ = env.step(tok)


def test_deterministic_tokens_are_model_predict_on_the_env_observation(short_ppo):
    env, model = short_ppo
    pol = SB3Policy(model, max_tokens=6, deterministic=True)
    obs, _ = env.reset(seed=2)
    pol.reset([0, 1])
    a, b = pol.act([env.unwrapped.state.prompt, env.unwrapped.state.prompt], [0, 1])
    assert "logprobs" not in a and a["token_ids"] == b["token_ids"]
    for tok in a["token_ids"]:
        want, _ = model.predict(obs, deterministic=True)
        assert tok == int(want)
        obs, *_ = env.step(tok)


def test_bad_models_and_prompts_fail_with_one_line_naming_them(short_ppo, tmp_path):
    from reasonenv.testing import tiny_tokenizer

    _, model = short_ppo
    with pytest.raises(ValueError, match=r"Discrete\(102\).*tokenizer"):
        SB3Policy(model, tokenizer=tiny_tokenizer())
    with pytest.raises(ValueError, match="max_step_tokens must be a positive int, got 0"):
        SB3Policy(model, max_step_tokens=0)
    pol = SB3Policy(model)
    with pytest.raises(ValueError, match="slot 3: the prompt has 30 tokens.*max_len=22"):
        pol.act(["x" * 30], [3])
    with pytest.raises(ValueError, match="same slot twice"):
        pol.act(["a", "b"], [1, 1])
    missing = tmp_path / "nope.zip"
    with pytest.raises(ValueError, match=f"sb3 model '{missing}' does not exist"):
        SB3Policy.load(missing)
    (tmp_path / "junk.zip").write_text("not a zip")
    with pytest.raises(ValueError, match="is not an SB3 zip"):
        SB3Policy.load(tmp_path / "junk.zip")
    with pytest.raises(ValueError, match="algo must be one of"):
        SB3Policy.load(tmp_path / "junk.zip", algo="sac")


def test_the_default_tokenizer_renders_the_plain_prompts_math_tokens_trains_on():
    from reasonenv.tokenizers import char_tokenizer

    env = gym.make("reasonenv/MathTokens-v0")
    pol = SB3Policy(PPO("MultiInputPolicy", env, n_steps=8, batch_size=8))
    assert pol.tokenizer.chat_template is None and char_tokenizer().chat_template is not None
    assert pol.tokenizer.get_vocab() == char_tokenizer().get_vocab()


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory) -> Path:
    """A randomly initialised PPO agent of the default MathTokens-v0, trained 256 steps, saved."""
    env = gym.make("reasonenv/MathTokens-v0")
    model = PPO("MultiInputPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0)
    model.learn(256)
    path = tmp_path_factory.mktemp("sb3") / "agent.zip"
    model.save(path)
    return path


def test_load_reads_the_algorithm_and_round_trips(tiny_zip):
    pol = SB3Policy.load(tiny_zip, deterministic=True)
    assert type(pol.model).__name__ == "PPO" and pol.max_len == 512
    assert SB3Policy.load(str(tiny_zip)[: -len(".zip")]).max_len == 512  # SB3's ".zip" lookup


def test_reasonenv_eval_runs_an_sb3_zip(tiny_zip, capsys):
    from reasonenv.cli import main

    bench = "procedural:arithmetic?difficulty=1"
    rc = main(["eval", "--policy", f"sb3:{tiny_zip}", "--benchmark", bench, "--n", "2",
               "--limit", "2", "--no-progress", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    summary = out["benchmarks"][bench]
    assert summary["n_problems"] == 2 and summary["n_samples"] == 4
    assert summary["metrics"]["mean_tokens"]["value"] > 0  # the agent wrote tokens
    assert out["config"]["policy"] == f"sb3:{tiny_zip}"


def test_reasonenv_eval_rejects_a_missing_zip_in_one_line(tmp_path, capsys):
    from reasonenv.cli import main

    missing = tmp_path / "missing.zip"
    rc = main(["eval", "--policy", f"sb3:{missing}", "--benchmark", "procedural", "--n", "1",
               "--limit", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"reasonenv eval: sb3 model '{missing}' does not exist"


# -- loading a zip without unpickling it -------------------------------------------------------
# An SB3 zip's "data" JSON holds cloudpickles that SB3's own loader unpickles; SB3Policy.load
# rebuilds each from the readable fields beside it, so a zip someone hands us runs no code.
TINY = {**SHORT, "max_prompt_tokens": 16, "max_tokens": 4}
TINY_KWARGS = {"features_extractor_class": TokenEmbedding, "features_extractor_kwargs": {"dim": 8},
               "net_arch": [16, 16]}
ALGOS = {  # a few steps of learning, so the zip also carries the rollout state (_last_obs, ...)
    "ppo": ({"n_steps": 8, "batch_size": 8, "n_epochs": 1}, 8),
    "a2c": ({"n_steps": 4}, 4),
    "dqn": ({"buffer_size": 64, "learning_starts": 4, "batch_size": 4}, 8),
}


def _pickled(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        data = json.loads(zf.read("data"))
    return {k: v for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v}


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """``src`` with its "data" JSON passed through ``edit`` (every other member as it was)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            body = zin.read(info.filename)
            if info.filename == "data":
                data = json.loads(body)
                edit(data)
                body = json.dumps(data).encode()
            zout.writestr(info, body)
    return dst


@pytest.fixture(scope="module")
def algo_zips(tmp_path_factory) -> dict[str, Path]:
    import stable_baselines3 as sb3

    th.set_num_threads(1)
    env = gym.make("reasonenv/MathTokens-v0", **TINY)
    out, base = {}, tmp_path_factory.mktemp("algos")
    for name, (kwargs, steps) in ALGOS.items():
        model = getattr(sb3, name.upper())("MultiInputPolicy", env, seed=0, policy_kwargs=TINY_KWARGS,
                                          **kwargs)
        model.learn(steps)
        model.save(base / f"{name}.zip")
        out[name] = base / f"{name}.zip"
    return out


def _observations(n: int = 6) -> dict[str, np.ndarray]:
    env = gym.make("reasonenv/MathTokens-v0", **TINY)
    obs = []
    for seed in range(n):
        o, _ = env.reset(seed=seed)
        obs.append(o)
        for tok in range(seed % 4):  # some with response tokens too (at most 3 of the 4)
            o, *_ = env.step(30 + tok)
            obs.append(o)
    return {k: np.stack([o[k] for o in obs]) for k in obs[0]}


def _same_predictions(ours, trusted) -> None:
    batch = _observations()
    np.testing.assert_array_equal(ours.predict(batch, deterministic=True)[0],
                                  trusted.predict(batch, deterministic=True)[0])
    with th.no_grad():
        a, _ = ours.policy.obs_to_tensor(batch)
        b, _ = trusted.policy.obs_to_tensor(batch)
        if hasattr(trusted.policy, "get_distribution"):
            got = ours.policy.get_distribution(a).distribution.logits
            want = trusted.policy.get_distribution(b).distribution.logits
        else:
            got, want = ours.q_net(a), trusted.q_net(b)
    assert th.equal(got, want)


@pytest.mark.parametrize("algo", list(ALGOS))
def test_load_rebuilds_every_pickle_and_predicts_what_sb3s_own_load_does(algo, algo_zips, monkeypatch):
    import stable_baselines3 as sb3
    from stable_baselines3.common import save_util

    path = algo_zips[algo]
    pickled = _pickled(path)
    assert {"policy_class", "policy_kwargs", "observation_space", "action_space"} <= set(pickled)
    trusted = getattr(sb3, algo.upper()).load(path)
    unpickled, real_loads = [], save_util.cloudpickle.loads
    monkeypatch.setattr(save_util.cloudpickle, "loads", lambda b: unpickled.append(b) or real_loads(b))
    pol = SB3Policy.load(path, deterministic=True)
    assert unpickled == [] and type(pol.model) is type(trusted)  # nothing went through cloudpickle
    model = pol.model
    for key in ("policy_class", "policy_kwargs", "observation_space", "action_space"):
        assert getattr(model, key) == getattr(trusted, key), key
    assert type(model.policy) is type(trusted.policy)
    if algo == "dqn":
        assert model.train_freq == trusted.train_freq
    _same_predictions(model, trusted)


class Payload:
    """Unpickled, it creates ``marker``: what a hostile zip could do (here harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _payload(marker: Path) -> str:
    import base64

    import cloudpickle

    return base64.b64encode(cloudpickle.dumps(Payload(marker))).decode()


def test_the_payload_is_live(tmp_path):
    import base64

    import cloudpickle

    marker = tmp_path / "marker"
    cloudpickle.loads(base64.b64decode(_payload(marker))).close()
    assert marker.exists()  # so the tests below would see an unpickling


def test_a_hostile_pickle_under_every_known_key_is_never_unpickled(algo_zips, tmp_path):
    marker = tmp_path / "marker"

    def poison(data):
        for value in data.values():
            if isinstance(value, dict) and ":serialized:" in value:
                value[":serialized:"] = _payload(marker)  # the readable fields stay as saved

    bad = _rewrite(algo_zips["ppo"], tmp_path / "hostile.zip", poison)
    assert "policy_class" in _pickled(bad)
    try:
        pol = SB3Policy.load(bad, deterministic=True)
    finally:  # checked even when the load fails
        assert not marker.exists(), "a pickle of the zip ran"
    _same_predictions(pol.model, PPO.load(algo_zips["ppo"]))
    with contextlib.suppress(Exception):  # control: SB3's own loader runs the payload
        PPO.load(bad)
    assert marker.exists()


@pytest.mark.parametrize("algo,key", [("ppo", "hostile"), ("a2c", "hostile"), ("dqn", "hostile"),
                                      ("dqn", "train_freq"), ("ppo", "action_noise")])
def test_a_hostile_pickle_under_a_key_we_cannot_rebuild_is_refused_in_one_line(
        algo, key, algo_zips, tmp_path):
    marker = tmp_path / "marker"

    def poison(data):
        old = data.get(key) if isinstance(data.get(key), dict) else {}
        data[key] = {**old, ":type:": old.get(":type:", "<class 'abc.ABCMeta'>"),
                     ":serialized:": _payload(marker)}

    bad = _rewrite(algo_zips[algo], tmp_path / "hostile.zip", poison)
    try:
        with pytest.raises(ValueError) as err:
            SB3Policy.load(bad)
    finally:
        assert not marker.exists(), "a pickle of the zip ran"
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg and f"refusing to unpickle {key!r}" in msg


@pytest.mark.parametrize("key,field,value,found", [
    ("policy_kwargs", "features_extractor_class", "<class 'evil.Extractor'>", "evil.Extractor"),
    ("policy_kwargs", "activation_fn", "<class 'reasonenv.agents.sb3_policy.TokenEmbedding'>",
     "TokenEmbedding'>, not one of the allowlisted ['torch.nn"),
    ("policy_kwargs", "features_extractor_kwargs", "{'dim': __import__('os').getpid()}",
     "not a Python literal"),
    ("policy_class", "__init__", "<function Evil.__init__ at 0x7f00>", "stable_baselines3.common.policies.Evil"),
    ("policy_class", "__module__", "evil", "found evil.MultiInputActorCriticPolicy"),
    ("observation_space", "spaces", "{'token_ids': Evil(0, 1)}", "{'token_ids': Evil(0, 1)}"),
    ("observation_space", "spaces", "{'token_ids': Box(0, 101, (20,), object)}", "dtype object"),
    ("action_space", "n", "__import__('os')", "n=__import__('os')"),
    ("clip_range", "value_schedule", "<function <lambda> at 0x7f00>", "FloatSchedule(<function"),
])
def test_readable_fields_outside_the_allowlist_are_refused_naming_them(
        key, field, value, found, algo_zips, tmp_path):
    def edit(data):
        data[key][field] = value

    bad = _rewrite(algo_zips["ppo"], tmp_path / "bad.zip", edit)
    with pytest.raises(ValueError) as err:
        SB3Policy.load(bad)
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg and repr(key) in msg and found in msg, msg


def test_an_algorithm_that_did_not_write_the_zip_is_refused(algo_zips):
    with pytest.raises(ValueError, match=r"stable_baselines3.dqn.policies.MultiInputPolicy, not one "
                                         r"of the allowlisted policies"):
        SB3Policy.load(algo_zips["dqn"], algo="ppo")


def _example():
    spec = importlib.util.spec_from_file_location("sb3_ppo_example", ROOT / "examples" / "sb3_ppo.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while it is executed
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules[spec.name]
    return mod


@pytest.mark.slow
def test_the_example_learns_the_return_rises():
    """The example's seeded training run: the measured mean return rises well above the start."""
    ex = _example()
    th.set_num_threads(1)
    res = ex.train(ex.ExampleConfig(timesteps=12_288, seed=0, measure_episodes=200))
    (r0, w0), (r1, w1) = res.start, res.end
    assert r0 < -0.05 and w0 < 0.03  # mostly no number at all: the format penalty
    assert r1 > r0 + 0.1 and w1 > w0 + 0.05, (res.start, res.end)
    assert res.curve[-1][1] > res.curve[0][1] + 0.05
