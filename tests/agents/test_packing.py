"""Padding-free loss forwards (``algo.pack``): the packed layout by hand, log-probs, entropy and
gradients equal to the padded forward's, the trainer's update unchanged by packing, and the
check that refuses a model which does not read position_ids restarts as sequence boundaries."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from reasonenv.agents.grpo import packed_token_logprobs, token_logprobs  # noqa: E402
from reasonenv.agents.samples import TrainSample, collate, collate_packed  # noqa: E402


def sample(p, r, seed=0):
    rng = np.random.default_rng(seed)
    return TrainSample(list(p), list(r), rng.normal(size=len(r)), rng.normal(size=len(r)),
                       rng.normal(size=len(r)))


def test_layout_by_hand():
    a = sample([1, 2, 3], [4, 5])                # 5 tokens
    b = sample([6], [7, 8, 9, 10, 11], seed=1)   # 6 tokens: the longest sets the row length
    c = sample([12], [13], seed=2)               # 2 tokens
    d = sample([14, 15], [16, 17], seed=3)       # 4 tokens
    t = collate_packed([a, b, c, d])
    # first-fit decreasing by length: b (6) | a (5) | d (4) + c (2)
    assert t["input_ids"].tolist() == [[6, 7, 8, 9, 10, 11], [1, 2, 3, 4, 5, 0],
                                       [14, 15, 16, 17, 12, 13]]
    assert t["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 0],
                                          [0, 1, 2, 3, 0, 1]]
    rows, cols = (x.tolist() for x in t["src"])
    dst_r, dst_c = (x.tolist() for x in t["dst"])
    # each response token j of sample i is scored at the position before it
    for r, c_, i, j in zip(rows, cols, dst_r, dst_c):
        s = [a, b, c, d][i]
        assert t["input_ids"][r, c_ + 1] == s.response_ids[j]
    assert sorted(zip(dst_r, dst_c)) == [(i, j) for i, s in enumerate([a, b, c, d])
                                         for j in range(len(s.response_ids))]
    assert t["mask"].tolist() == [[1, 1, 0, 0, 0], [1] * 5, [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]]
    np.testing.assert_allclose(t["adv"][1].numpy(), b.advantages, rtol=1e-6)
    np.testing.assert_allclose(t["old"][3, :2].numpy(), d.old_logprobs, rtol=1e-6)
    np.testing.assert_allclose(t["ref"][0, :2].numpy(), a.ref_logprobs, rtol=1e-6)
    assert t["first"] == 0  # row 0 starts with b, whose prompt is one token


@pytest.fixture(scope="module")
def lm_and_batch():
    from reasonenv.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_model(tok, seed=0)
    texts = [("What is 2 + 2?", " 4."), ("Let x = 12. Then", " x + 1 = 13, so 13."),
             ("Add 3 and 5.", " 8"), ("Q: 7 - 2?", " It is 5, since 2 + 5 = 7."),
             ("Two plus two", " is four")]
    batch = [sample(tok.encode(p, add_special_tokens=False), tok.encode(r, add_special_tokens=False),
                    seed=i) for i, (p, r) in enumerate(texts)]
    return model, batch


@pytest.mark.parametrize("temp", [1.0, 0.7])
def test_packed_logprobs_entropy_and_gradients_equal_the_padded_forward(lm_and_batch, temp):
    model, batch = lm_and_batch
    pad, pk = collate(batch), collate_packed(batch)
    assert pk["input_ids"].shape[0] < len(batch)  # something was packed together
    lp_pad, ent_pad = token_logprobs(model, pad["input_ids"], pad["attention_mask"], temp,
                                     first=pad["first"])
    lp_pk, ent_pk = packed_token_logprobs(model, pk, temp)
    for i, s in enumerate(batch):
        p, n = len(s.prompt_ids), len(s.response_ids)
        torch.testing.assert_close(lp_pk[i, :n], lp_pad[i, p - 1: p - 1 + n], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ent_pk[i, :n], ent_pad[i, p - 1: p - 1 + n], rtol=1e-5, atol=1e-5)
        assert not lp_pk[i, n:].any() and not ent_pk[i, n:].any()
    w = torch.linspace(0.5, 1.5, pk["mask"].numel()).view_as(pk["mask"]) * pk["mask"]
    grads = []
    for lp, weight in ((lp_pk, w), (lp_pad, collate_weights(batch, w, pad))):
        model.zero_grad()
        (lp * weight).sum().backward()
        grads.append(torch.cat([q.grad.flatten() for q in model.parameters() if q.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def collate_weights(batch, w, pad):
    """The response-aligned weights ``w`` moved to the padded layout."""
    out = torch.zeros_like(pad["mask"])
    for i, s in enumerate(batch):
        p, n = len(s.prompt_ids), len(s.response_ids)
        out[i, p - 1: p - 1 + n] = w[i, :n]
    return out


def cfg_for(tmp_path, *over):
    from reasonenv.agents.config import load_config

    return load_config(None, [
        f"run.out_dir={tmp_path}", "run.steps=1", "run.tensorboard=false", "run.progress=false",
        "run.plot=false", "run.checkpoint_every=0", "rollout.num_problems=2", "rollout.group_size=3",
        "rollout.max_step_tokens=6", "env.max_tokens=12", "env.max_steps=2", "env.chat=false",
        "optim.lr=1e-2", "algo.micro_batch=4", *over])


def contains_e(pairs):
    from reasonenv.grading import Verdict

    return [Verdict(correct="e" in r, extracted=r[-4:], reference=a, pred_normalized=None,
                    ref_normalized=a, reason="exact") for r, a in pairs]


@pytest.mark.parametrize("agg", ["token_mean", "sequence_mean"])
def test_an_update_with_packing_equals_one_without(tmp_path, agg):
    from reasonenv.agents.trainer import Trainer
    from reasonenv.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    trs = []
    for pack in ("false", "true"):
        cfg = cfg_for(tmp_path / pack, f"algo.pack={pack}", f"algo.loss_agg={agg}", "algo.kl_coef=0.1")
        cfg.shaping.services = {"grader": contains_e}
        trs.append(Trainer(cfg, tiny_model(tok, seed=0), tok))
    with torch.no_grad():  # move the policy off the reference, so the KL term is not zero
        for q in trs[0].model.parameters():
            q.add_(0.3 * q.std().nan_to_num(0.02) * torch.randn(q.shape, generator=torch.Generator().manual_seed(1)))
    trs[1].model.load_state_dict(trs[0].model.state_dict())
    batch = trs[0].make_batch(trs[0].rollout()[0])
    assert len({len(s.prompt_ids) + len(s.response_ids) for s in batch}) > 1
    # the rescoring (old / reference log-probs) takes the packed path too
    for a, b in zip(trs[0]._score(trs[0].model, batch), trs[1]._score(trs[1].model, batch)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert trs[1]._packing_checked and not trs[0]._packing_checked
    stats = [tr.update([TrainSample(s.prompt_ids, s.response_ids, s.old_logprobs, s.advantages,
                                    s.ref_logprobs) for s in batch]) for tr in trs]
    for k in ("loss", "kl", "entropy", "grad_norm", "clip_frac"):
        assert stats[1][k] == pytest.approx(stats[0][k], rel=1e-4, abs=1e-6), k
    assert stats[0]["kl"] > 1e-4
    for pa, pb in zip(trs[0].model.parameters(), trs[1].model.parameters()):
        # Adam's first step is about lr * sign(grad) = 1e-2 a weight: a wrong gradient moves
        # weights by ~1e-2, float noise in near-zero gradients by ~1e-5
        torch.testing.assert_close(pa, pb, rtol=1e-3, atol=1e-4)


def test_a_model_that_ignores_position_ids_is_refused(tmp_path, lm_and_batch):
    from reasonenv.agents.trainer import Trainer
    from reasonenv.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_model(tok, seed=0)
    body = model.base_model
    forward = body.forward
    body.forward = lambda *a, position_ids=None, **kw: forward(*a, **kw)  # attends across rows
    tr = Trainer(cfg_for(tmp_path, "algo.pack=true"), model, tok)
    _, batch = lm_and_batch
    with pytest.raises(ValueError, match=r"algo.pack=true: .* set algo.pack=false"):
        tr._score(tr.model, batch)
    body.forward = forward
    assert tr.check_packing(batch) < 1e-4 and tr._packing_checked
