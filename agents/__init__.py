"""Policies and the GRPO-family trainer. Imported as ``reasonenv.agents``.

Importing this package is cheap; backends that need torch import it when constructed.
"""

from reasonenv.policy import Policy, ScriptedPolicy

__all__ = [
    "HFPolicy",
    "HFPolicyConfig",
    "OpenAIHTTPError",
    "OpenAIHTTPPolicy",
    "Policy",
    "ScriptedPolicy",
    "Trainer",
    "TrainConfig",
    "VLLMPolicy",
    "load_config",
]

_LAZY = {
    "HFPolicy": "hf",
    "HFPolicyConfig": "hf",
    "OpenAIHTTPPolicy": "http_policy",
    "OpenAIHTTPError": "http_policy",
    "VLLMPolicy": "vllm_policy",
    "Trainer": "trainer",
    "TrainConfig": "config",
    "load_config": "config",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"reasonenv.agents.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'reasonenv.agents' has no attribute {name!r}")
