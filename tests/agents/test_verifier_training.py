"""Training the verifiers, their quality metrics, loading them through services, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from verifier_data import BAD, GOOD, synthetic_records

from reasonenv.agents import verifier_metrics as vm
from reasonenv.agents import verifiers as V

torch = pytest.importorskip("torch")




# -- the quantile head's loss ------------------------------------------------------------------------
def wql(pred: np.ndarray, target: np.ndarray, betas) -> float:
    """The quantile-regression PRM loss, term by term as the papers write it:
    (1/N_q) sum_n [ beta_n max(0, p - r(beta_n)) + (1 - beta_n) max(0, r(beta_n) - p) ],
    averaged over the points (p: MC success rate, r(beta): predicted beta-quantile)."""
    per_point = []
    for r, p in zip(pred, target):
        per_point.append(np.mean([b * max(0.0, p - r[j]) + (1 - b) * max(0.0, r[j] - p)
                                  for j, b in enumerate(betas)]))
    return float(np.mean(per_point))


def test_pinball_loss_on_hand_values():
    from reasonenv.models.prm import pinball_loss

    qs = (0.1, 0.5, 0.9)
    # target 0.6: under-predictions cost tau * gap, over-predictions (1 - tau) * gap
    pred = torch.tensor([[0.2, 0.5, 0.9]])
    # 0.1 * 0.4 + 0.5 * 0.1 + 0.1 * 0.3 = 0.04 + 0.05 + 0.03, over 3 quantiles
    assert float(pinball_loss(pred, torch.tensor([0.6]), qs)) == pytest.approx(0.12 / 3)
    # a high quantile predicted too low is expensive, too high is cheap
    assert float(pinball_loss(torch.tensor([[0.0]]), torch.tensor([1.0]), (0.9,))) == pytest.approx(0.9)
    assert float(pinball_loss(torch.tensor([[1.0]]), torch.tensor([0.0]), (0.9,))) == pytest.approx(0.1)


def test_pinball_loss_equals_the_transcribed_formula():
    from reasonenv.models.prm import pinball_loss

    rng = np.random.default_rng(0)
    for qs in [(0.1, 0.5, 0.9), (0.25, 0.75), (0.5,)]:
        pred, target = rng.random((20, len(qs))), rng.random(20)
        got = float(pinball_loss(torch.tensor(pred), torch.tensor(target), qs))
        assert got == pytest.approx(wql(pred, target, qs), abs=1e-12)
        assert vm.pinball(pred, target, qs) == pytest.approx(got, abs=1e-12)


def test_pinball_minimiser_is_the_quantile():
    from reasonenv.models.prm import pinball_loss

    # 9 points: the tau-quantile is the ceil(9 tau)-th smallest, the unique minimiser
    y = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0], dtype=torch.float64)
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    for tau, want in [(0.1, 0.0), (0.5, 0.4), (0.9, 1.0)]:
        losses = torch.stack([pinball_loss(torch.full((9, 1), float(g), dtype=torch.float64), y, (tau,))
                              for g in grid])
        assert float(grid[int(losses.argmin())]) == pytest.approx(want, abs=1e-9), tau


def test_binned_ece_and_localisation_by_hand():
    assert vm.binned_ece([0.15, 0.15, 0.85, 0.85], [0.0, 0.0, 1.0, 1.0]) == pytest.approx(0.15)
    assert vm.binned_ece([], []) is None

    class Scorer:  # value trajectories [before step 1, after step 1, ...] given directly
        def trajectory(self, solutions, key):
            return [s["traj_bad" if key == "steps" else "traj_good"] for s in solutions]

    sols = [{"steps": ["a", "b", "c"], "first_error_step": 1, "traj_bad": [0.5, 0.6, 0.2, 0.1],
             "traj_good": [0.5, 0.6, 0.7, 0.9]},
            {"steps": ["a", "b", "c"], "first_error_step": 2, "traj_bad": [0.5, 0.4, 0.45, 0.0],
             "traj_good": [0.5, 0.6, 0.7, 0.8]},
            {"steps": ["a", "b"], "first_error_step": 0, "traj_bad": [0.5, 0.3, 0.4],
             "traj_good": [0.5, 0.7, 0.8]}]
    loc = vm.localisation(Scorer(), sols)
    # 1: terms [+0.1, -0.4, -0.1]: first drop 1 (hit), lowest 1 (hit)
    # 2: terms [-0.1, +0.05, -0.45]: first drop 0 (miss: the error is step 2), lowest 2 (hit)
    # 3: terms [-0.2, +0.1]: first drop 0 (hit), lowest 0 (hit)
    assert loc["first_drop"] == pytest.approx(2 / 3) and loc["lowest"] == 1.0
    assert loc["chance"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 2) / 3)
    assert loc["always_first"] == pytest.approx(1 / 3)
    assert loc["worked_vs_corrupted_auroc"] == 1.0


# -- training ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["prm", "value"])
def test_trained_verifier_beats_untrained_and_constant_on_held_out_problems(char_lm, kind):
    model, tok = char_lm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recs = synthetic_records(40)
    settings = V.TrainSettings(kind=kind, K=2, epochs=20, lr=0.05, val_frac=0.3)
    verifier, met = V.train_verifier(recs, model, tok, settings)
    loss = met["train_loss"]
    assert len(loss) == 20 and loss[-1] < 0.8 * loss[0]
    trained, untrained, const = met["trained"], met["untrained"], met["constant"]
    assert trained["points"] == untrained["points"] > 0
    assert trained["pinball"] < untrained["pinball"]
    assert trained["pinball"] < 0.8 * const["pinball"] and trained["mse"] < const["mse"]
    assert trained["mse"] < const["mean_mse"]  # also beats the least-squares constant
    assert trained["auroc"] > 0.6 and 0.5 < met["mc_target"]["auroc"] <= 1.0
    levels = ["0.1", "0.5", "0.9"] if kind == "prm" else ["0.5"]
    assert list(trained["auroc_by_quantile"]) == levels
    assert trained["auroc_by_quantile"]["0.5"] == trained["auroc"]
    assert set(met["train_problems"]).isdisjoint(met["val_problems"])
    assert met["train_responses"] + met["val_responses"] == 40
    # the base stays frozen (only the head trains) and nothing is left trainable-flagged
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    json.dumps(met)  # metrics.json material


def test_training_sees_only_the_training_problems(char_lm, monkeypatch):
    from reasonenv.models.prm import QuantileHeadPRM
    from reasonenv.models.value_head import ValueHeadProver

    model, tok = char_lm
    recs = synthetic_records(20)
    by_q = {r["question"]: r["problem_id"] for r in recs}
    by_prompt = {r["prompt"]: r["problem_id"] for r in recs}
    seen: dict[str, set] = {"prm": set(), "value": set()}

    def prm_fit(self, items, targets, **kw):
        seen["prm"] |= {by_q[q] for q, _ in items}
        return [0.0]

    def value_fit(self, requests, targets, **kw):
        seen["value"] |= {by_prompt[r.prompt] for r in requests}
        return [0.0]

    monkeypatch.setattr(QuantileHeadPRM, "fit", prm_fit)
    monkeypatch.setattr(ValueHeadProver, "fit", value_fit)
    for kind in ("prm", "value"):
        _, met = V.train_verifier(recs, model, tok, V.TrainSettings(kind=kind, K=2, epochs=1, val_frac=0.3))
        assert seen[kind] == set(met["train_problems"]) and met["val_problems"]


def test_trained_quantiles_are_ordered(char_lm):
    model, tok = char_lm
    prm, _ = V.train_verifier(synthetic_records(12), model, tok,
                              V.TrainSettings(kind="prm", epochs=3, lr=0.05, val_frac=0.25))
    (q,) = prm.score([("What is 3?", [GOOD, BAD, "so \\boxed{1}."])])
    assert q.shape == (3, 3) and (np.diff(q, axis=1) >= 0).all() and ((q > 0) & (q < 1)).all()


def test_value_kind_needs_k_at_most_m(char_lm):
    model, tok = char_lm
    with pytest.raises(ValueError, match="K=9 needs m >= K"):
        V.train_verifier(synthetic_records(8), model, tok, V.TrainSettings(kind="value", K=9))
