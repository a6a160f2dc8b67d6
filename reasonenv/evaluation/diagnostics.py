"""Shaper diagnostics: does a shaper's score tell correct from incorrect responses, and does it
point at the first wrong step of a corrupted worked solution (ProcessBench-style)?

Per sample, a shaper's **episode score** is the sum of its weighted terms as the env reported
them (step terms, the episode-end term on the last step, and its group term). Token terms are
trainer-only and not counted.

Example:
    >>> auroc([0.9, 0.8, 0.1], [True, True, False])
    1.0
    >>> auroc([0.1, 0.9], [True, False])
    0.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` for predicting ``labels`` (ties count half);
    None without both classes.

    Equals the probability that a random positive scores above a random negative (the
    Mann-Whitney statistic).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def episode_score(sample: Mapping[str, Any], name: str) -> float:
    """The shaper's weighted step + episode-end + group terms of one sample record."""
    total = sum(float(t.get(name, 0.0)) for t in sample.get("reward_terms", []))
    return total + float(sample.get("group_terms", {}).get(name, 0.0))


def step_scores(sample: Mapping[str, Any], name: str) -> list[float]:
    """The shaper's term on each step (the episode-end term excluded from the last step)."""
    terms = [float(t.get(name, 0.0)) for t in sample.get("reward_terms", [])]
    if terms:
        terms[-1] -= float(sample.get("episode_terms", {}).get(name, 0.0))
    return terms


def first_error_prediction(terms: Sequence[float]) -> tuple[int | None, int | None]:
    """``(first step with a negative term, step with the lowest term)``; None when no steps
    (the first is None too when no term is negative)."""
    if not terms:
        return None, None
    neg = next((k for k, t in enumerate(terms) if t < 0), None)
    return neg, int(np.argmin(terms))


def shaper_diagnostics(samples: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per shaper: mean episode score on correct / incorrect responses, the AUROC of the score
    for predicting correctness, the "fluent but wrong" rate (incorrect responses scoring above
    the median correct one) and, on corrupted worked solutions (``variant == "corrupted"``),
    how often the first step with a negative term, or the lowest term, is the first wrong step.
    """
    scored = [s for s in samples if s.get("reference_ok", True)]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        sc = np.array([episode_score(s, name) for s in scored])
        y = np.array([bool(s["correct"]) for s in scored])
        d: dict[str, Any] = {
            "samples": int(len(scored)),
            "mean_correct": float(sc[y].mean()) if y.any() else None,
            "mean_incorrect": float(sc[~y].mean()) if (~y).any() else None,
            "auroc": auroc(sc, y),
            "fluent_but_wrong": (float((sc[~y] > np.median(sc[y])).mean())
                                 if y.any() and (~y).any() else None),
        }
        corrupted = [s for s in scored if s.get("variant") == "corrupted"
                     and s.get("first_error_step") is not None]
        per_step = [step_scores(s, name) for s in corrupted]
        if not any(any(t != 0 for t in terms) for terms in per_step):
            corrupted = []  # no step terms (e.g. a group-level shaper): nothing to localise with
        hits_neg = hits_min = 0
        for s, terms in zip(corrupted, per_step):
            neg, low = first_error_prediction(terms)
            hits_neg += int(neg == s["first_error_step"])
            hits_min += int(low == s["first_error_step"])
        d["corrupted_solutions"] = len(corrupted)
        d["first_error_by_first_negative"] = hits_neg / len(corrupted) if corrupted else None
        d["first_error_by_lowest"] = hits_min / len(corrupted) if corrupted else None
        out[name] = d
    return out
