"""The policy loss against naive loops: PPO-clip with asymmetric clipping, the k3 KL, the three
aggregations, micro-batch denominators, and the guards."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from reasonenv.agents.grpo import k3, loss_denominator, policy_loss  # noqa: E402


def naive_token_loss(lp, o, a, ref, eps_low, eps_high, beta):
    r = math.exp(lp - o)
    clipped = min(max(r, 1 - eps_low), 1 + eps_high)
    loss = -min(r * a, clipped * a)
    if beta:
        x = ref - lp
        loss += beta * (math.exp(x) - x - 1)
    return loss


def naive_loss(logp, old, adv, mask, ref, eps_low, eps_high, beta, agg, max_tokens=None):
    """TRL's GRPOTrainer loss types written out: dapo = token_mean, grpo = sequence_mean, dr_grpo."""
    per_seq, n_tok = [], 0
    for i in range(len(logp)):
        s, n = 0.0, 0
        for t in range(len(logp[i])):
            if mask[i][t]:
                s += naive_token_loss(logp[i][t], old[i][t], adv[i][t], ref[i][t], eps_low, eps_high, beta)
                n += 1
        per_seq.append((s, n))
        n_tok += n
    if agg == "token_mean":
        return sum(s for s, _ in per_seq) / n_tok
    if agg == "sequence_mean":
        return sum(s / max(n, 1) for s, n in per_seq) / len(per_seq)
    return sum(s for s, _ in per_seq) / (len(per_seq) * max_tokens)


def arrays(seed, shape=(3, 5)):
    rng = np.random.default_rng(seed)
    logp = -rng.random(shape)
    old = logp + rng.normal(0, 0.5, shape)  # some ratios far outside the clip range
    adv = rng.normal(0, 1, shape)
    ref = -rng.random(shape)
    mask = (rng.random(shape) > 0.3).astype(float)
    mask[:, 0] = 1  # no empty sequence
    return logp, old, adv, ref, mask


def t(x):
    return torch.tensor(x, dtype=torch.float64)


@pytest.mark.parametrize("agg", ["token_mean", "sequence_mean", "dr_grpo"])
@pytest.mark.parametrize("beta", [0.0, 0.1])
@pytest.mark.parametrize("eps", [(0.2, 0.2), (0.2, 0.28)])
def test_policy_loss_matches_naive_loops(agg, beta, eps):
    logp, old, adv, ref, mask = arrays(1)
    loss, stats = policy_loss(t(logp), t(old), t(adv), t(mask), clip_eps_low=eps[0],
                              clip_eps_high=eps[1], ref_logp=t(ref), kl_coef=beta, agg=agg, max_tokens=8)
    want = naive_loss(logp, old, adv, mask, ref, eps[0], eps[1], beta, agg, max_tokens=8)
    assert float(loss) == pytest.approx(want, rel=1e-12)
    ratio = np.exp(logp - old)
    low = ((ratio < 1 - eps[0]) & (adv < 0)) * mask
    high = ((ratio > 1 + eps[1]) & (adv > 0)) * mask
    assert float(stats["clip_low_tokens"]) == low.sum() and float(stats["clip_high_tokens"]) == high.sum()
    assert float(stats["clip_tokens"]) == low.sum() + high.sum() and float(stats["tokens"]) == mask.sum()
    want_kl = sum(math.exp(r - p) - (r - p) - 1 for p, r, m in zip(logp.flat, ref.flat, mask.flat) if m)
    assert float(stats["kl_sum"]) == pytest.approx(want_kl, rel=1e-12)
    assert set(stats) == {"clip_low_tokens", "clip_high_tokens", "clip_tokens", "tokens", "kl_sum"}


def test_hand_values_on_policy():
    # On-policy (ratio 1, nothing clipped): the loss is minus the mean advantage.
    adv = [[1.0, 3.0, 0.0], [-2.0, 0.0, 0.0]]
    mask = [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    z = torch.zeros(2, 3, dtype=torch.float64)
    tok, _ = policy_loss(z, z, t(adv), t(mask))
    seq, _ = policy_loss(z, z, t(adv), t(mask), agg="sequence_mean")
    dr, _ = policy_loss(z, z, t(adv), t(mask), agg="dr_grpo", max_tokens=4)
    assert float(tok) == pytest.approx(-(1 + 3 - 2) / 3)
    assert float(seq) == pytest.approx(-((1 + 3) / 2 + (-2) / 1) / 2)
    assert float(dr) == pytest.approx(-(1 + 3 - 2) / (2 * 4))


@pytest.mark.parametrize("agg", ["token_mean", "sequence_mean", "dr_grpo"])
def test_micro_batches_with_the_batch_denominator_add_up_to_the_batch_loss(agg):
    logp, old, adv, _, mask = arrays(2, (4, 6))
    full, _ = policy_loss(t(logp), t(old), t(adv), t(mask), agg=agg, max_tokens=6)
    denom = loss_denominator(agg, mask.sum(), 4, 6)
    parts = sum(float(policy_loss(t(logp[s]), t(old[s]), t(adv[s]), t(mask[s]), agg=agg,
                                  denom=denom, max_tokens=6)[0])
                for s in (slice(0, 1), slice(1, 4)))
    assert parts == pytest.approx(float(full), rel=1e-12)


def test_gradient_of_clipped_tokens_is_zero_and_asymmetric_bounds_apply():
    logp = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    # ratios e^1, e^0.2 = 1.221, e^-1: token 0 clipped above (A > 0); token 1 inside (0.28);
    # token 2 clipped below (A < 0).
    old = torch.tensor([[-1.0, -0.2, 1.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0]])
    loss, st = policy_loss(logp, old, adv, torch.ones(1, 3), clip_eps_low=0.2, clip_eps_high=0.28)
    loss.backward()
    assert logp.grad[0, 0] == 0.0 and logp.grad[0, 1] != 0.0 and logp.grad[0, 2] == 0.0
    assert float(st["clip_high_tokens"]) == 1 and float(st["clip_low_tokens"]) == 1
    _, st = policy_loss(logp.detach(), old, adv, torch.ones(1, 3), clip_eps_low=0.2, clip_eps_high=0.2)
    assert float(st["clip_high_tokens"]) == 2  # 1.221 > 1.2 with the symmetric bound


def test_kl_coef_without_reference_is_an_error():
    z = torch.zeros(1, 2)
    with pytest.raises(ValueError, match=r"kl_coef=0.1 needs ref_logp"):
        policy_loss(z, z, z, torch.ones(1, 2), kl_coef=0.1)


@pytest.mark.parametrize("agg", ["token_mean", "sequence_mean", "dr_grpo"])
def test_all_padding_gives_zero_loss_not_nan(agg):
    z = torch.zeros(2, 3, requires_grad=True)
    loss, _ = policy_loss(z, z.detach(), torch.ones(2, 3), torch.zeros(2, 3), agg=agg, max_tokens=4)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.all(z.grad == 0)
    assert loss_denominator(agg, 0, 0, 4) == 1.0


def test_k3_is_the_formula_and_nonnegative():
    lp, rf = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-1.0, -1.0, -3.0])
    want = [math.exp(r - p) - (r - p) - 1 for p, r in zip(lp.tolist(), rf.tolist())]
    assert k3(lp, rf).tolist() == pytest.approx(want)
    assert torch.all(k3(lp, rf) >= 0) and torch.all(k3(lp, lp) == 0)


def test_unknown_aggregation_is_named():
    z = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="loss agg='mean'"):
        policy_loss(z, z, z, z, agg="mean")
    with pytest.raises(ValueError, match="dr_grpo' needs max_tokens"):
        loss_denominator("dr_grpo", 3, 1)


@pytest.mark.parametrize("chunk", [128, 4], ids=["one chunk", "chunks of 4 positions"])
def test_token_logprobs_equal_the_log_softmax_of_the_tempered_logits(monkeypatch, chunk):
    from reasonenv.agents import grpo
    from reasonenv.agents.grpo import token_logprobs
    from reasonenv.testing import tiny_model, tiny_tokenizer

    monkeypatch.setattr(grpo, "ENTROPY_CHUNK", chunk)  # 4 does not divide the 2 x 9 positions
    tok = tiny_tokenizer()
    model = tiny_model(tok)
    ids = torch.tensor([tok.encode("What is 2 + 2? 4.", add_special_tokens=False)] * 2)
    ids[1] = ids[1].flip(0)  # two different rows
    attn = torch.ones_like(ids)
    for temp in (1.0, 0.7):
        logp, ent = token_logprobs(model, ids, attn, temp)
        with torch.no_grad():
            full = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float() / temp, -1)
        want = full.gather(-1, ids[:, 1:, None]).squeeze(-1)
        torch.testing.assert_close(logp.detach(), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ent, -(full.exp() * full).sum(-1), rtol=1e-5, atol=1e-5)
    logp.sum().backward()  # differentiable
    assert any(p.grad is not None for p in model.parameters())


def test_token_logprobs_from_a_first_position_equal_the_full_pass_and_build_fewer_logits():
    from reasonenv.agents.grpo import token_logprobs
    from reasonenv.agents.samples import TrainSample, collate
    from reasonenv.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_model(tok)
    enc = [tok.encode(t, add_special_tokens=False) for t in ("What is 2 + 2?", "Let x = 12. Then")]
    resp = [tok.encode(t, add_special_tokens=False) for t in (" 4.", " x + 1 = 13, so 13.")]
    batch = [TrainSample(p, r, np.zeros(len(r)), np.ones(len(r))) for p, r in zip(enc, resp)]
    t = collate(batch)
    assert t["first"] == min(len(p) for p in enc) - 1 > 0
    assert not t["mask"][:, : t["first"]].any() and t["mask"][:, t["first"]].any()
    seen = []
    model.register_forward_hook(lambda m, a, out: seen.append(out.logits.shape[1]))
    full, ent_full = token_logprobs(model, t["input_ids"], t["attention_mask"], 0.8)
    part, ent_part = token_logprobs(model, t["input_ids"], t["attention_mask"], 0.8, first=t["first"])
    T = t["input_ids"].shape[1]
    assert seen == [T, T - t["first"]]  # the prompt positions' logits were never built
    m = t["mask"].bool()
    torch.testing.assert_close(part[m], full[m], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent_part[m], ent_full[m], rtol=1e-5, atol=1e-5)
    assert part.shape == full.shape and not part[:, : t["first"]].any()
    # the same gradient as the full pass
    grads = []
    for lp in (full, part):
        model.zero_grad()
        (lp * t["mask"]).sum().backward(retain_graph=True)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
