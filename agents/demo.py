"""The built-in demo: a scripted policy and a Hugging Face policy stepping MathSteps-v0."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym


def _print_episode(title: str, ep: Any) -> None:
    print(f"  [{title}] problem={ep.problem_id} outcome={ep.outcome:.0f} "
          f"answer={ep.verdict.get('extracted')!r} reason={ep.verdict.get('reason')}")
    for k, (text, r, terms) in enumerate(zip(ep.steps, ep.rewards, ep.reward_terms)):
        shown = text.strip().replace("\n", " ")
        shown = shown if len(shown) <= 70 else shown[:67] + "..."
        print(f"    step {k}: reward={r:+.3f} terms={terms} | {shown}")


def run_demo(model: str = "smollm2-135m-instruct", episodes: int = 4, seed: int = 0,
             problems: str = "procedural:arithmetic?difficulty=1", skip_model: bool = False) -> int:
    """Run the demo; returns a process exit code."""
    import reasonenv  # noqa: F401  (registers the envs)
    from reasonenv.agents import ScriptedPolicy
    from reasonenv.rollout import run_episodes

    print(f"== reasonenv demo: {problems}, {episodes} episodes per policy, seed {seed}")
    env = gym.make("reasonenv/MathSteps-v0", problems=problems, max_steps=8)
    # A scripted policy that knows the gold answers (the env alone judges them).
    import numpy as np

    rng = np.random.default_rng(seed)
    picked = [env.unwrapped.source.sample(rng) for _ in range(episodes)]

    def oracle(prompt: str) -> str:
        ans = next(p.answer for p in picked if p.question in prompt)
        return f"I work it out carefully.\n\nThe result is {ans}.\n\nThe answer is \\boxed{{{ans}}}."

    print("-- scripted oracle policy")
    for ep in run_episodes(env, ScriptedPolicy(oracle), episodes, problems=picked):
        _print_episode("oracle", ep)
    if skip_model:
        return 0
    from reasonenv.agents import HFPolicy, HFPolicyConfig

    print(f"-- Hugging Face policy: {model} (greedy, chat template)")
    t0 = time.perf_counter()
    policy = HFPolicy(model, config=HFPolicyConfig(temperature=0.0, max_step_tokens=96))
    print(f"   loaded in {time.perf_counter() - t0:.1f}s")
    env = gym.make("reasonenv/MathSteps-v0", problems=problems, tokenizer=policy.tokenizer,
                   prompt={"chat": True}, max_steps=6, max_tokens=256,
                   last_number_fallback=True)  # a 135M model rarely writes \boxed{}
    correct = 0
    t0 = time.perf_counter()
    for n in range(episodes):
        (ep,) = run_episodes(env, policy, 1, seed=seed + n)
        correct += int(ep.outcome)
        _print_episode("hf", ep)
    print(f"   {correct}/{episodes} correct in {time.perf_counter() - t0:.1f}s")
    return 0



def run_demo_command(args: Any) -> int:
    """``reasonenv demo`` (argparse namespace from :mod:`reasonenv.cli`)."""
    return run_demo(args.model, args.episodes, args.seed, args.problems, args.skip_model)
