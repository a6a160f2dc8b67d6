"""Group-relative normalisation shared by the trainer and the shapers that reason about it.

PROGRS's dominance guarantee is computed against exactly this normalisation, so the trainer
and the shapers import it from one place.
"""

from __future__ import annotations

import numpy as np

GRPO_EPS = 1e-6


def grpo_advantages(scores: np.ndarray, eps: float = GRPO_EPS) -> np.ndarray:
    """GRPO advantages ``(x - mean x) / (std x + eps)`` with the population std.

    Example:
        >>> grpo_advantages(np.array([1.0, 0.0, 0.0, 1.0]), eps=0.0).tolist()
        [1.0, -1.0, -1.0, 1.0]
    """
    x = np.asarray(scores, dtype=np.float64).reshape(-1)
    return (x - x.mean()) / (x.std() + eps)
