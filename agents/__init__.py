"""Policies (scripted, Hugging Face) and, later, trainers. Imported as ``reasonenv.agents``.

Importing this package is cheap; backends that need torch import it when constructed.
"""

from reasonenv.agents.policy import Policy, ScriptedPolicy

__all__ = ["HFPolicy", "HFPolicyConfig", "Policy", "ScriptedPolicy"]


def __getattr__(name: str):
    if name in ("HFPolicy", "HFPolicyConfig"):
        from reasonenv.agents import hf

        return getattr(hf, name)
    raise AttributeError(name)
