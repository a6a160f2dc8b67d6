"""Train stable-baselines3 PPO on ``MathTokens-v0`` and evaluate it through the step env.

One command (CPU, a few minutes)::

    python examples/sb3_ppo.py --timesteps 30000 --out runs/sb3

It prints the mean episode return of the untrained and of the trained agent, saves
``runs/sb3/model.zip``, evaluates the agent with :func:`reasonenv.evaluation.evaluate.evaluate`
through ``MathSteps-v0`` (the table; ``runs/sb3/eval/`` holds results.json, samples.jsonl and the
plot) and writes ``runs/sb3/eval.yaml``, a preset with which ``reasonenv eval --policy
sb3:runs/sb3/model.zip --preset runs/sb3/eval.yaml`` evaluates the zip the same way.

The task is chosen so that token-level exploration finds reward. Difficulty-1 arithmetic
(``What is 8 + 6?``, answers 2..18) with a short prompt and a two-token budget: the response is
the answer itself (``14``, or ``9`` and any non-digit), graded by its last number. A random
agent writes a number only about one episode in six and the right one about one in three
hundred, so a small format penalty for writing no number (``outcome`` shaper) gives it a first
thing to learn; the outcome does the rest. Token ids are categories, so the policy embeds them
(:class:`~reasonenv.agents.sb3_policy.TokenEmbedding`) instead of reading them as magnitudes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import yaml

import reasonenv  # noqa: F401  (registers the envs)
from reasonenv.shaping.base import Shaper, StepContext


@dataclass
class ExampleConfig:
    """Everything the run depends on; one line of why per field."""

    timesteps: int = 30_000  # tokens sampled in training (two per episode)
    seed: int = 0  # PPO, the envs' problem draws and the measurements
    problems: str = "procedural:arithmetic?difficulty=1"  # a + b with single digits
    prompt: str = "{question} "  # the question alone: few positions the policy must ignore
    # Every difficulty-1 prompt ("What is a + b? ") is 15 characters: with max_prompt_tokens=15
    # the observation ends where the budget does, so a zip loaded without max_tokens (reasonenv
    # eval) stops exactly where training did.
    max_prompt_tokens: int = 15
    max_tokens: int = 2  # room for the answer and nothing else
    format_penalty: float = 0.1  # outcome shaper: subtracted when no number was written
    prefix_weight: float = 0.5  # AnswerPrefixShaper: dense credit per right leading digit
    n_envs: int = 8  # env copies; one batched forward per vector step
    n_steps: int = 64  # per env and rollout: 512 tokens per update, many small updates
    batch_size: int = 256
    n_epochs: int = 10  # the env is the expensive part: reuse each rollout
    learning_rate: float = 2e-3
    ent_coef: float = 0.0  # 102 actions keep entropy high enough on their own
    embed_dim: int = 8  # TokenEmbedding width per position
    hidden: int = 128  # two hidden layers, shared by the policy and value heads' MLPs
    measure_episodes: int = 300  # episodes behind each "mean return" measurement
    eval_problems: int = 20  # problems of the final evaluation (held-out seed)
    eval_n: int = 4  # samples per problem


def matched_prefix(response: str, answer: str) -> int:
    """How many leading characters of ``answer`` the response starts with.

    Example:
        >>> matched_prefix("1x", "14"), matched_prefix("14", "14"), matched_prefix("4", "14")
        (1, 2, 0)
    """
    n = 0
    while n < min(len(response), len(answer)) and response[n] == answer[n]:
        n += 1
    return n


class AnswerPrefixShaper(Shaper):
    """A dense process reward: credit for each leading character of the answer written.

    Potential-based: with ``phi = matched_prefix(response, answer) / len(answer)``, a step's
    term is ``weight * (phi_after - phi_before)``, so the terms of an episode sum to
    ``weight * phi`` of its response, largest exactly for the right answer. With one token per
    step (``split="fixed:1"``) the first right digit is rewarded on its own token, which turns
    a search over two tokens at once into two one-token searches.
    """

    name = "answer_prefix"
    enters = "reward"
    bounds = (-1.0, 1.0)  # with weight <= 1

    @dataclass
    class Config:
        weight: float = 0.5  # relative to the outcome's 1.0

    def step_terms(self, steps: Sequence[StepContext]) -> list[float]:
        out = []
        for c in steps:
            answer = c.problem.answer
            now = "".join(c.steps)
            before = now[: len(now) - len(c.step_text)]
            gain = matched_prefix(now, answer) - matched_prefix(before, answer)
            out.append(self.config.weight * gain / len(answer))
        return out


def env_kwargs(cfg: ExampleConfig) -> dict[str, Any]:
    """``MathTokens-v0`` arguments of the task (the char tokenizer is the default)."""
    shapers: list[Any] = [{"name": "outcome", "format_penalty": cfg.format_penalty}]
    if cfg.prefix_weight:
        shapers.append(AnswerPrefixShaper(AnswerPrefixShaper.Config(weight=cfg.prefix_weight)))
    return {"problems": cfg.problems, "prompt": cfg.prompt, "max_tokens": cfg.max_tokens,
            "max_prompt_tokens": cfg.max_prompt_tokens, "last_number_fallback": True,
            "split": "fixed:1", "shapers": shapers}


def make_model(cfg: ExampleConfig) -> Any:
    """PPO on ``n_envs`` copies of the task env, with token embeddings."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from reasonenv.agents.sb3_policy import TokenEmbedding

    venv = make_vec_env(lambda: gym.make("reasonenv/MathTokens-v0", **env_kwargs(cfg)),
                        n_envs=cfg.n_envs, seed=cfg.seed)
    policy_kwargs = {"features_extractor_class": TokenEmbedding,
                     "features_extractor_kwargs": {"dim": cfg.embed_dim},
                     "net_arch": [cfg.hidden, cfg.hidden]}
    # gamma = lambda = 1: two-token episodes, the reward is the outcome at the end.
    return PPO("MultiInputPolicy", venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
               n_epochs=cfg.n_epochs, learning_rate=cfg.learning_rate, gamma=1.0, gae_lambda=1.0,
               ent_coef=cfg.ent_coef, policy_kwargs=policy_kwargs, seed=cfg.seed, verbose=0)


def mean_return(model: Any, cfg: ExampleConfig, episodes: int, seed: int) -> tuple[float, float]:
    """``(mean return, success rate)`` of ``model`` sampling on fresh seeded episodes."""
    import torch

    torch.manual_seed(seed)
    env = gym.make("reasonenv/MathTokens-v0", **env_kwargs(cfg))
    obs, _ = env.reset(seed=seed)
    returns, wins, ret = [], 0, 0.0
    while len(returns) < episodes:
        action, _ = model.predict(obs, deterministic=False)
        obs, reward, terminated, truncated, info = env.step(int(action))
        ret += float(reward)
        if terminated or truncated:
            returns.append(ret)
            wins += bool(info["verdict"]["correct"])
            ret = 0.0
            obs, _ = env.reset()
    return float(np.mean(returns)), wins / episodes


@dataclass
class TrainResult:
    """What :func:`train` measured."""

    model: Any
    start: tuple[float, float]  # (mean return, success rate) before training
    end: tuple[float, float]  # ... and after
    seconds: float  # wall time of model.learn
    curve: list[tuple[int, float]]  # (timesteps, mean return of the last 100 training episodes)


def train(cfg: ExampleConfig, log: bool = False) -> TrainResult:
    """Measure, train for ``cfg.timesteps``, measure again (same seeded episodes)."""
    from stable_baselines3.common.callbacks import BaseCallback

    curve: list[tuple[int, float]] = []

    class Curve(BaseCallback):
        def _on_rollout_end(self) -> None:
            if self.model.ep_info_buffer:
                curve.append((self.num_timesteps,
                              float(np.mean([e["r"] for e in self.model.ep_info_buffer]))))
                if log and len(curve) % 10 == 0:
                    print(f"  {curve[-1][0]:>7} timesteps  return {curve[-1][1]:+.3f}", flush=True)

        def _on_step(self) -> bool:
            return True

    model = make_model(cfg)
    start = mean_return(model, cfg, cfg.measure_episodes, seed=cfg.seed + 1)
    t0 = time.perf_counter()
    model.learn(cfg.timesteps, callback=Curve())
    seconds = time.perf_counter() - t0
    end = mean_return(model, cfg, cfg.measure_episodes, seed=cfg.seed + 1)
    return TrainResult(model, start, end, seconds, curve)


def eval_preset(cfg: ExampleConfig) -> dict[str, Any]:
    """``reasonenv eval --preset`` settings that evaluate like :func:`evaluate_model`."""
    return {"benchmarks": [f"{cfg.problems}&seed={cfg.seed + 1000}"], "n": cfg.eval_n,
            "limit": cfg.eval_problems, "max_tokens": cfg.max_tokens, "prompt": cfg.prompt,
            "chat": "off", "last_number_fallback": True, "split": "\n\n"}


def evaluate_model(model: Any, cfg: ExampleConfig, out_dir: Path | None = None) -> Any:
    """The agent through ``MathSteps-v0`` on held-out problems: an :class:`EvalResult`."""
    from reasonenv.agents.sb3_policy import SB3Policy
    from reasonenv.evaluation.evaluate import evaluate

    preset = eval_preset(cfg)
    policy = SB3Policy(model, max_tokens=cfg.max_tokens)
    return evaluate(policy, benchmarks=preset["benchmarks"], n=cfg.eval_n, limit=cfg.eval_problems,
                    env_kwargs={"tokenizer": policy.tokenizer, "prompt": cfg.prompt,
                                "max_tokens": cfg.max_tokens, "last_number_fallback": True},
                    out_dir=out_dir, resume=False, progress=False, seed=cfg.seed)


def main(argv: list[str] | None = None) -> int:
    """Train, report the returns, save the zip and the preset, evaluate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timesteps", type=int, default=ExampleConfig.timesteps)
    parser.add_argument("--out", type=Path, default=Path("runs/sb3"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.timesteps < 1:
        parser.error(f"--timesteps must be a positive int, got {args.timesteps}")
    import torch

    torch.set_num_threads(1)  # a small MLP: threads only contend with the env
    cfg = ExampleConfig(timesteps=args.timesteps, seed=args.seed)
    print(f"PPO on MathTokens-v0, {cfg.problems}, {cfg.timesteps} timesteps")
    res = train(cfg, log=True)
    (r0, w0), (r1, w1) = res.start, res.end
    print(f"mean episode return: start {r0:+.3f} (correct {w0:.1%}) -> end {r1:+.3f} "
          f"(correct {w1:.1%}) after {cfg.timesteps} timesteps in {res.seconds:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    zip_path = args.out / "model.zip"
    res.model.save(zip_path)
    preset_path = args.out / "eval.yaml"
    preset_path.write_text(yaml.safe_dump(eval_preset(cfg), sort_keys=False), encoding="utf-8")
    (args.out / "config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False), encoding="utf-8")
    result = evaluate_model(res.model, cfg, args.out / "eval")
    print(result.table())
    print(f"saved {zip_path}; evaluate it again with:\n"
          f"  reasonenv eval --policy sb3:{zip_path} --preset {preset_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
