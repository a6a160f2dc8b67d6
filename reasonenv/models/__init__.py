"""Torch-backed services and model assets (imports torch; never imported by ``import reasonenv``).

The torch-free core names these by string in service configs and imports them lazily:

* :mod:`reasonenv.models.assets` - model names -> local folders (packaged GGUF -> safetensors).
* :mod:`reasonenv.models.ref_scorer` - :class:`HFRefScorer`, reference log-probs (PRL).
* :mod:`reasonenv.models.prm` - :class:`HFStepPRM`, :class:`QuantileHeadPRM` (PROGRS).
* :mod:`reasonenv.models.sampler` - :class:`HFSampler` (the prover's base policy), ``top_p_filter``.
* :mod:`reasonenv.models.value_head` - :class:`ValueHeadProver`, a learned PAV estimator.
* :mod:`reasonenv.models.hf_utils` - loading by name, id padding, hidden states, step layout.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "HFRefScorer": "ref_scorer",
    "HFStepPRM": "prm",
    "QuantileHeadPRM": "prm",
    "pinball_loss": "prm",
    "HFSampler": "sampler",
    "top_p_filter": "sampler",
    "ValueHeadProver": "value_head",
    "resolve_model": "assets",
    "load_model": "hf_utils",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"reasonenv.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'reasonenv.models' has no attribute {name!r}")
