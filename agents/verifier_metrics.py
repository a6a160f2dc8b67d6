"""How good is a verifier trained from Monte-Carlo rollouts? Measured on held-out problems.

Each held-out *point* is one (response, prefix) pair with the verifier's prediction, the MC
target it was trained to match and the response's final outcome:

* PRM (:class:`PRMPoints`): one point per step k = 1..K, prediction = the quantiles of step k,
  target ``c_k / m`` (the last step's target is the outcome);
* value head (:class:`ValuePoints`): one point per sampled prefix k = 0..K-1, prediction =
  Q^{BoK}, target ``bok_unbiased(c_k, m, K)``.

Metrics (docs/verifiers.md):

* ``pinball``: the mean pinball loss over the verifier's quantiles (a value head is the median
  predictor: tau = 0.5, i.e. half the absolute error); ``mse`` of the median prediction;
* ``ece``: binned calibration error of the median prediction against the MC target
  (:func:`binned_ece`, 10 equal-width bins);
* ``auroc``: AUROC of the median prediction for the response's final outcome
  (``auroc_by_quantile``: the same for each quantile level);
* localisation on corrupted worked solutions (ProcessBench-style): from the verifier's values
  ``s_{-1}`` (before step 1) and ``s_0..s_{K-1}`` (after each step), the progress terms
  ``s_k - s_{k-1}``; is the first negative one (``first_drop``), or the lowest one
  (``lowest``), the first wrong step? ``chance`` is the mean of 1/K (a random step),
  ``always_first`` the hit rate of always naming step 0 (what a flat verifier below its
  prior gets from ``first_drop``).
  ``worked_vs_corrupted_auroc``: AUROC of the value after the last step for "worked" over
  "corrupted". A PRM has no score before step 1: ``s_{-1}`` is its prompt prior, the mean MC
  success rate of the training prompts.

Example:
    >>> binned_ece([0.1, 0.1, 0.9], [0.0, 0.2, 1.0], bins=10)
    0.0333
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reasonenv.evaluation.diagnostics import auroc, first_error_prediction


def binned_ece(pred: Sequence[float], target: Sequence[float], bins: int = 10) -> float | None:
    """Expected calibration error: ``sum_b (n_b / N) |mean pred_b - mean target_b|``.

    Bins are ``bins`` equal-width intervals of the prediction in [0, 1]; rounded to 4 places;
    None without points.
    """
    p = np.clip(np.asarray(pred, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(target, dtype=np.float64)
    if p.size == 0:
        return None
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() / p.size * abs(p[sel].mean() - y[sel].mean())
    return round(float(total), 4)


def pinball(pred: np.ndarray, target: np.ndarray, quantiles: Sequence[float]) -> float | None:
    """Mean pinball loss of ``pred`` (N, Q) against ``target`` (N,) (the PRM's training loss).

    Example:
        >>> round(pinball(np.array([[0.2, 0.5]]), np.array([1.0]), (0.1, 0.5)), 3)
        0.165
    """
    import torch

    from reasonenv.models.prm import pinball_loss

    if len(target) == 0:
        return None
    return float(pinball_loss(torch.as_tensor(pred, dtype=torch.float64),
                              torch.as_tensor(target, dtype=torch.float64), quantiles))


def median_column(quantiles: Sequence[float]) -> int:
    """Index of the quantile level closest to 0.5."""
    return int(np.argmin([abs(q - 0.5) for q in quantiles]))


def prompt_prior(records: Sequence[Mapping[str, Any]]) -> float:
    """Mean MC success rate of the bare prompt (``c[0] / m``) over responses with steps."""
    vals = [r["c"][0] / r["m"] for r in records if r["steps"]]
    return float(np.mean(vals)) if vals else 0.5


class PRMPoints:
    """Held-out points and value trajectories of a quantile PRM."""

    def __init__(self, prm: Any, prior: float) -> None:
        self.prm, self.prior = prm, float(prior)
        self.quantiles = tuple(prm.quantiles)

    def points(self, records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pred (N, Q), target (N,), outcome (N,))`` over every step of every response."""
        from reasonenv.agents.verifiers import prm_dataset

        items, ys = prm_dataset(records)
        outs = [bool(r["outcome"]) for r in records if r["steps"]]
        scored = self.prm.score(items) if items else []
        pred = np.concatenate(scored) if scored else np.zeros((0, len(self.quantiles)))
        target = np.array([y for t in ys for y in t], dtype=np.float64)
        outcome = np.array([o for o, t in zip(outs, ys) for _ in t], dtype=bool)
        return pred, target, outcome

    def trajectory(self, solutions: Sequence[Mapping[str, Any]], key: str) -> list[list[float]]:
        """Per solution, ``[s_{-1}, s_0, ..., s_{K-1}]``: the prior, then each step's median."""
        col = median_column(self.quantiles)
        scored = self.prm.score([(s["question"], list(s[key])) for s in solutions]) if solutions else []
        return [[self.prior, *np.asarray(a)[:, col].tolist()] for a in scored]


class ValuePoints:
    """Held-out points and value trajectories of a value head (a median predictor, tau 0.5)."""

    quantiles = (0.5,)

    def __init__(self, value_head: Any, K: int) -> None:
        self.vh, self.K = value_head, int(K)

    def _q(self, requests: Sequence[Any]) -> list[float]:
        return self.vh.q_values(list(requests), K=self.K, m=self.K) if requests else []

    def points(self, records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pred (N, 1), target (N,), outcome (N,))`` over every sampled prefix."""
        from reasonenv.agents.verifiers import value_dataset

        reqs, ys, outs = value_dataset(records, self.K)
        pred = np.asarray(self._q(reqs), dtype=np.float64).reshape(-1, 1)
        return pred, np.asarray(ys, dtype=np.float64), np.asarray(outs, dtype=bool)

    def trajectory(self, solutions: Sequence[Mapping[str, Any]], key: str) -> list[list[float]]:
        """Per solution, ``[v(prompt), v(after step 1), ..., v(after step K)]``."""
        from reasonenv.problems.base import Problem
        from reasonenv.shaping.protocols import ProverRequest

        reqs, sizes = [], []
        for s in solutions:
            prob = Problem(id=s["problem_id"], question=s["question"], answer="", source="corrupted")
            steps = list(s[key])
            reqs += [ProverRequest(prob, s["prompt"], "".join(steps[:k])) for k in range(len(steps) + 1)]
            sizes.append(len(steps) + 1)
        q, out, at = self._q(reqs), [], 0
        for n in sizes:
            out.append(q[at: at + n])
            at += n
        return out


def corrupted_solutions(problems: Sequence[Any], prompts: Mapping[str, str], split: str) -> list[dict[str, Any]]:
    """The worked and corrupted solutions of the problems that have them, cut as the env cuts.

    Args:
        problems: Problems (procedural ones carry ``corrupted_steps`` and ``first_error_step``).
        prompts: The prompt text of each problem id (from the collected records).
        split: The env's step delimiter.
    """
    from reasonenv.problems import render_solution
    from reasonenv.segmentation import Segmenter

    seg = Segmenter(split)
    sep = split if split in ("\n", "\n\n") else "\n\n"
    out = []
    for p in problems:
        meta = p.metadata
        if p.id not in prompts or "corrupted_steps" not in meta or meta.get("first_error_step") is None:
            continue
        cut = lambda steps: [s.text for s in seg.segment_text(render_solution(steps, sep=sep))]  # noqa: E731
        out.append({"problem_id": p.id, "question": p.question, "prompt": prompts[p.id],
                    "steps": cut(meta["corrupted_steps"]), "worked_steps": cut(meta["solution_steps"]),
                    "first_error_step": int(meta["first_error_step"])})
    return out


def localisation(scorer: Any, solutions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """First-error localisation on corrupted solutions (see the module docstring)."""
    if not solutions:
        return {"solutions": 0, "first_drop": None, "lowest": None, "chance": None, "always_first": None,
                "worked_vs_corrupted_auroc": None}
    bad = scorer.trajectory(solutions, "steps")
    good = scorer.trajectory(solutions, "worked_steps")
    hits_drop = hits_low = 0
    for s, traj in zip(solutions, bad):
        terms = [b - a for a, b in zip(traj[:-1], traj[1:])]
        first, low = first_error_prediction(terms)
        hits_drop += int(first == s["first_error_step"])
        hits_low += int(low == s["first_error_step"])
    n = len(solutions)
    finals = [t[-1] for t in good] + [t[-1] for t in bad]
    return {"solutions": n, "first_drop": hits_drop / n, "lowest": hits_low / n,
            "chance": float(np.mean([1.0 / max(len(s["steps"]), 1) for s in solutions])),
            "always_first": float(np.mean([s["first_error_step"] == 0 for s in solutions])),
            "worked_vs_corrupted_auroc": auroc(finals, [True] * n + [False] * n)}


def measure(scorer: Any, records: Sequence[Mapping[str, Any]],
            solutions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Point metrics on ``records`` and localisation on ``solutions`` for one verifier state."""
    pred, target, outcome = scorer.points(records)
    return _point_metrics(pred, target, outcome, scorer.quantiles) | {
        "localisation": localisation(scorer, solutions)}


def _point_metrics(pred: np.ndarray, target: np.ndarray, outcome: np.ndarray,
                   quantiles: Sequence[float]) -> dict[str, Any]:
    med = pred[:, median_column(quantiles)] if len(pred) else np.zeros(0)
    return {"points": int(len(target)), "pinball": pinball(pred, target, quantiles),
            "mse": float(np.mean((med - target) ** 2)) if len(target) else None,
            "ece": binned_ece(med, target), "auroc": auroc(med, outcome),
            "auroc_by_quantile": {str(q): auroc(pred[:, j], outcome) if len(pred) else None
                                  for j, q in enumerate(quantiles)}}


def constant_points(scorer: Any, train: Sequence[Mapping[str, Any]],
                    val: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Two references on the held-out points: the best constant and the MC targets themselves.

    ``constant``: the training targets' empirical quantiles at the verifier's levels (the
    constant with the least pinball loss), no training of any model; ``mean_mse`` is the MSE of
    the training targets' mean (the constant with the least squared error). ``mc_target``: the AUROC
    of the MC target for the outcome (what a perfectly fitted verifier would reach).
    """
    y_tr, _ = _targets(scorer, train)
    y_va, o_va = _targets(scorer, val)
    qs = scorer.quantiles
    const = np.quantile(y_tr, qs) if len(y_tr) else np.full(len(qs), 0.5)
    pred = np.tile(const, (len(y_va), 1))
    mean = float(y_tr.mean()) if len(y_tr) else 0.5
    mean_mse = float(np.mean((y_va - mean) ** 2)) if len(y_va) else None
    return {"constant": _point_metrics(pred, y_va, o_va, qs) | {"value": const.tolist(), "mean": mean,
                                                              "mean_mse": mean_mse},
            "mc_target": {"auroc": auroc(y_va, o_va)}}


def _targets(scorer: Any, records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Targets and outcomes of the points, without running the verifier."""
    from reasonenv.agents.verifiers import prm_targets, value_targets

    if isinstance(scorer, PRMPoints):
        pairs = [(y, bool(r["outcome"])) for r in records for y in prm_targets(r)]
    else:
        pairs = [(y, bool(r["outcome"])) for r in records for y in value_targets(r, scorer.K)]
    return np.array([p[0] for p in pairs], dtype=np.float64), np.array([p[1] for p in pairs], dtype=bool)


def quality(trained: Mapping[str, Any], untrained: Mapping[str, Any],
            references: Mapping[str, Any]) -> dict[str, Any]:
    """The ``metrics.json`` body: the trained and untrained heads and the references."""
    return {"trained": dict(trained), "untrained": dict(untrained), **references}


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """A plain-text table: one row per metric; trained, untrained head, constant, MC target."""
    cols = ("trained", "untrained", "constant")
    rows = [("held-out points", "points"), ("pinball loss", "pinball"), ("MSE (median)", "mse"),
            ("ECE (median vs MC)", "ece"), ("AUROC (outcome)", "auroc")]
    head = f"{'metric':<30}" + "".join(f"{c:>12}" for c in (*cols, "mc_target"))
    lines = [f"{metrics.get('kind', '?')} verifier, held-out problems: "
             f"{len(metrics.get('val_problems', []))}", head, "-" * len(head)]
    for label, key in rows:
        mc = metrics.get("mc_target", {}).get(key) if key == "auroc" else None
        lines.append(f"{label:<30}" + "".join(f"{_fmt(metrics.get(c, {}).get(key)):>12}" for c in cols)
                     + f"{_fmt(mc):>12}")
    by_q = metrics.get("trained", {}).get("auroc_by_quantile") or {}
    if len(by_q) > 1:  # the other quantile levels of a PRM
        for q in list(by_q)[:: len(by_q) - 1]:
            vals = [metrics.get(c, {}).get("auroc_by_quantile", {}).get(q) for c in cols]
            lines.append(f"{'AUROC (outcome), q=' + q:<30}" + "".join(f"{_fmt(v):>12}" for v in vals))
    loc = [("corrupted solutions", "solutions"), ("first error = first drop", "first_drop"),
           ("first error = lowest step", "lowest"), ("worked vs corrupted AUROC", "worked_vs_corrupted_auroc")]
    for label, key in loc:
        vals = [metrics.get(c, {}).get("localisation", {}).get(key) for c in cols[:2]]
        chance = metrics.get("trained", {}).get("localisation", {}).get("chance") if key in ("first_drop", "lowest") else None
        lines.append(f"{label:<30}" + "".join(f"{_fmt(v):>12}" for v in vals)
                     + f"{_fmt(chance if chance is not None else None):>12}" + f"{'':>12}")
    lines.append("(localisation: the constant column is chance, 1/K)")
    const, loc_t = metrics.get("constant", {}), metrics.get("trained", {}).get("localisation", {})
    lines.append(f"MSE of the training targets' mean: {_fmt(const.get('mean_mse'))}; "
                 f"always naming step 0: {_fmt(loc_t.get('always_first'))}")
    return "\n".join(lines)
