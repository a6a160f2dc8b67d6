"""The inverse-CDF token sampler draws exactly from the given categorical distribution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reasonenv.models.sampler import sample_categorical, top_p_filter


def chi2_limit(df: int, z: float = 4.75) -> float:
    """Wilson-Hilferty upper quantile of chi-square(df) at the normal quantile ``z`` (p ~ 1e-6)."""
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3


def draw_counts(weights: torch.Tensor, n: int, seed: int = 0) -> np.ndarray:
    """Counts of ``n`` draws from one row of weights, drawn as ``n`` identical rows at once."""
    g = torch.Generator().manual_seed(seed)
    toks = sample_categorical(weights[None].expand(n, -1), g)
    return np.bincount(toks.numpy(), minlength=weights.shape[0])


def chi2(counts: np.ndarray, weights: torch.Tensor) -> tuple[float, int]:
    p = (weights.double() / weights.double().sum()).numpy()
    n = counts.sum()
    support = p > 0
    exp = n * p[support]
    return float(((counts[support] - exp) ** 2 / exp).sum()), int(support.sum()) - 1


DISTRIBUTIONS = {
    "uniform-5": torch.ones(5),
    "peaked": torch.tensor([0.9, 0.05, 0.03, 0.015, 0.005]),
    "unnormalised": torch.tensor([3.0, 1.0, 0.0, 6.0, 2.0]),
    "dirichlet-200": torch.distributions.Dirichlet(torch.full((200,), 0.5)).sample(),
    "zeros-at-both-ends": torch.tensor([0.0, 0.2, 0.3, 0.5, 0.0]),
}


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_frequencies_match_the_distribution(name: str) -> None:
    torch.manual_seed(123)  # the Dirichlet row is drawn at import; this only fixes later draws
    w = DISTRIBUTIONS[name]
    counts = draw_counts(w, 200_000)
    stat, df = chi2(counts, w)
    assert stat < chi2_limit(df), (name, stat, chi2_limit(df))
    assert counts[(w == 0).numpy()].sum() == 0


def test_rows_are_sampled_independently_of_each_other() -> None:
    # Two different rows in one call: each row's frequencies follow its own weights.
    a, b = torch.tensor([0.7, 0.2, 0.1, 0.0]), torch.tensor([0.0, 0.1, 0.2, 0.7])
    n = 100_000
    toks = sample_categorical(torch.stack([a, b]).repeat(n, 1), torch.Generator().manual_seed(1))
    toks = toks.view(n, 2).numpy()
    for col, w in ((0, a), (1, b)):
        stat, df = chi2(np.bincount(toks[:, col], minlength=4), w)
        assert stat < chi2_limit(df)


def test_agrees_with_torch_multinomial_in_distribution() -> None:
    # Same target, two samplers: the empirical frequencies agree to sampling error.
    w = torch.softmax(torch.randn(50, generator=torch.Generator().manual_seed(7)) * 2, -1)
    n = 200_000
    ours = draw_counts(w, n, seed=3) / n
    theirs = np.bincount(torch.multinomial(w, n, replacement=True,
                                           generator=torch.Generator().manual_seed(4)).numpy(),
                         minlength=50) / n
    sd = np.sqrt(w.double().numpy() * (1 - w.double().numpy()) / n)
    assert np.all(np.abs(ours - theirs) < 6 * np.sqrt(2) * sd + 1e-12)


def test_extreme_uniforms_never_pick_a_zero_weight_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # u = (1 - rand) * total lies in (0, total]: rand = 0 gives u = total exactly, which must map
    # to the last token of positive weight, not to the zero-weight tail; rand -> 1 gives u -> 0+,
    # which must map to the first token of positive weight, not to a zero-weight head.
    w = torch.tensor([[0.0, 0.5, 0.5, 0.0], [0.0, 0.5, 0.5, 0.0]])
    for value, want in ((0.0, 2), (1.0 - 2.0**-53, 1)):
        monkeypatch.setattr(torch, "rand", lambda *a, _v=value, **k: torch.full(a[0], _v, dtype=torch.float64))
        assert sample_categorical(w).tolist() == [want, want]


def test_works_after_top_p_filtering() -> None:
    w = torch.tensor([0.5, 0.3, 0.15, 0.05])
    kept = top_p_filter(w[None], 0.7)[0]  # keeps the two largest (0.5 + 0.3 >= 0.7)
    counts = draw_counts(kept, 50_000)
    assert counts[2:].sum() == 0
    stat, df = chi2(counts, kept)
    assert stat < chi2_limit(df)


def test_seeded_generator_is_reproducible() -> None:
    w = torch.rand(16, 30, generator=torch.Generator().manual_seed(0))
    a = sample_categorical(w, torch.Generator().manual_seed(5))
    b = sample_categorical(w, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("row", [torch.zeros(3), torch.tensor([0.5, float("nan"), 0.5])])
def test_a_row_with_nothing_to_sample_names_the_row(row: torch.Tensor) -> None:
    w = torch.stack([torch.ones(3), row])
    with pytest.raises(ValueError, match=r"probs row 1 sums to"):
        sample_categorical(w)


def test_a_negative_weight_is_refused_even_when_the_row_sums_to_one() -> None:
    w = torch.tensor([[0.2, 0.8, 0.0], [0.6, -0.1, 0.5]])
    with pytest.raises(ValueError, match=r"probs row 1 holds a negative weight \(-0\.1"):
        sample_categorical(w)


def test_shape_is_checked() -> None:
    with pytest.raises(ValueError, match=r"probs must be \(N, V\), got shape \(3,\)"):
        sample_categorical(torch.ones(3))


def test_hf_policy_samples_the_tempered_softmax() -> None:
    # HFPolicy's per-token draw: frequencies follow softmax(logits / T), and the log-prob it
    # returns is that distribution's log-prob of the drawn token.
    from reasonenv.agents.hf import HFPolicy, HFPolicyConfig
    from reasonenv.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    pol = HFPolicy(tiny_model(tok, seed=0, num_layers=1), tok, HFPolicyConfig(temperature=0.7, seed=11))
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, -3.0])
    n = 100_000
    toks, lps = pol._sample(logits[None].expand(n, -1))
    target = torch.softmax(logits / 0.7, -1)
    stat, df = chi2(np.bincount(toks.numpy(), minlength=5), target)
    assert stat < chi2_limit(df)
    assert torch.allclose(lps, target.log()[toks], atol=1e-6)
