"""The trainer's pure math against naive reference implementations on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest

from reasonenv.agents.grpo import Response, ShaperMeta, compose_advantages, ppo_clip_objective
from reasonenv.plugins.prl import prl_token_advantages

torch = pytest.importorskip("torch")

OUTCOME = ShaperMeta("outcome", ("episode",), "reward")


def resp(outcome, step_lens, terms=None, group=None, old=None, ref=None):
    L = sum(step_lens)
    step_ids = [[1] * n for n in step_lens]
    return Response(
        prompt_ids=[5, 6], step_ids=step_ids,
        old_logprobs=np.asarray(old if old is not None else [-1.0] * L),
        outcome=outcome,
        step_terms=terms or [{"outcome": outcome if k == len(step_lens) - 1 else 0.0} for k in range(len(step_lens))],
        group_terms=group or {}, ref_logprobs=None if ref is None else np.asarray(ref),
    )


def naive_grpo(xs, eps=1e-6):
    m = sum(xs) / len(xs)
    sd = (sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5
    return [(x - m) / (sd + eps) for x in xs]


def test_plain_grpo_gives_every_token_the_normalised_outcome():
    group = [resp(1.0, [2, 3]), resp(0.0, [4]), resp(0.0, [1, 1]), resp(1.0, [2])]
    advs = compose_advantages(group, [OUTCOME])
    expect = naive_grpo([1.0, 0.0, 0.0, 1.0])
    for a, e, r in zip(advs, expect, group):
        assert a.shape == (len(r.response_ids),)
        np.testing.assert_allclose(a, e)


def test_step_terms_advantage_per_step_and_reward_return_to_go():
    pav = ShaperMeta("pav", ("step",), "advantage")
    dense = ShaperMeta("dense", ("step",), "reward")
    terms = [{"outcome": 0.0, "pav": 0.3, "dense": 1.0}, {"outcome": 1.0, "pav": -0.1, "dense": 2.0}]
    g = [resp(1.0, [2, 1], terms=terms),
         resp(0.0, [3], terms=[{"outcome": 0.0, "pav": 0.5, "dense": 0.0}])]
    a0, a1 = compose_advantages(g, [OUTCOME, pav, dense])
    base = naive_grpo([1.0, 0.0])
    # step 0 tokens: own pav term + dense return-to-go (1 + 2); step 1: -0.1 + 2
    np.testing.assert_allclose(a0, [base[0] + 0.3 + 3.0] * 2 + [base[0] - 0.1 + 2.0])
    np.testing.assert_allclose(a1, [base[1] + 0.5] * 3)


def test_group_terms_enter_reward_or_advantage():
    adv_meta = ShaperMeta("progrs", ("group",), "advantage")
    g = [resp(1.0, [1], group={"progrs": 0.0}), resp(0.0, [1], group={"progrs": 0.2}),
         resp(0.0, [1], group={"progrs": -0.2})]
    got = [a[0] for a in compose_advantages(g, [OUTCOME, adv_meta])]
    base = naive_grpo([1.0, 0.0, 0.0])
    assert got == pytest.approx([base[0], base[1] + 0.2, base[2] - 0.2])
    rew_meta = ShaperMeta("progrs", ("group",), "reward")
    got = [a[0] for a in compose_advantages(g, [OUTCOME, rew_meta])]
    assert got == pytest.approx(naive_grpo([1.0, 0.2, -0.2]))


@pytest.mark.parametrize("mode", ["orm", "prm"])
def test_prl_composition_matches_the_plugin_reference(mode):
    rng = np.random.default_rng(0)
    lens = [[3, 2], [4], [1, 1, 2]]
    outcomes = [1.0, 0.0, 1.0]
    group = []
    for o, sl in zip(outcomes, lens):
        L = sum(sl)
        old = -rng.random(L)
        ref = -rng.random(L)
        r = resp(o, sl, old=old, ref=ref)
        r.step_terms = [{"outcome": o if k == len(sl) - 1 else 0.0, "prl": 0.0} for k in range(len(sl))]
        group.append(r)
    prl = ShaperMeta("prl", ("step",), "advantage", 1.0, {"eta": 2.0, "mode": mode})
    got = compose_advantages(group, [OUTCOME, prl])
    expect = prl_token_advantages(
        np.array(outcomes), [g.old_logprobs - g.ref_logprobs for g in group],
        [g.boundaries for g in group], 2.0, mode)
    for a, e in zip(got, expect):
        np.testing.assert_allclose(a, e, atol=1e-9)


def naive_ppo(logp, old, adv, mask, eps, ref=None, beta=0.0):
    total, n = 0.0, 0
    for i in range(len(logp)):
        for t in range(len(logp[i])):
            if not mask[i][t]:
                continue
            ratio = np.exp(logp[i][t] - old[i][t])
            obj = min(ratio * adv[i][t], np.clip(ratio, 1 - eps, 1 + eps) * adv[i][t])
            loss = -obj
            if ref is not None and beta:
                r = ref[i][t] - logp[i][t]
                loss += beta * (np.exp(r) - r - 1)
            total += loss
            n += 1
    return total / n


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_ppo_clip_objective_matches_naive_loops(beta):
    rng = np.random.default_rng(1)
    logp = -rng.random((3, 5))
    old = logp + rng.normal(0, 0.5, (3, 5))  # some ratios far outside the clip range
    adv = rng.normal(0, 1, (3, 5))
    ref = -rng.random((3, 5))
    mask = (rng.random((3, 5)) > 0.3).astype(float)
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    loss, stats = ppo_clip_objective(t(logp), t(old), t(adv), t(mask), clip_eps=0.2,
                                     ref_logp=t(ref), kl_coef=beta)
    assert float(loss) == pytest.approx(naive_ppo(logp, old, adv, mask, 0.2, ref, beta))
    ratio = np.exp(logp - old)
    assert float(stats["clip_tokens"]) == ((np.abs(ratio - 1) > 0.2) * mask).sum()


def test_micro_batches_with_a_shared_denominator_add_up_to_the_batch_token_mean():
    rng = np.random.default_rng(2)
    logp, old, adv = -rng.random((4, 6)), -rng.random((4, 6)), rng.normal(0, 1, (4, 6))
    mask = (rng.random((4, 6)) > 0.2).astype(float)
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    full, _ = ppo_clip_objective(t(logp), t(old), t(adv), t(mask))
    n = mask.sum()
    parts = sum(float(ppo_clip_objective(t(logp[s]), t(old[s]), t(adv[s]), t(mask[s]), denom=n)[0])
                for s in (slice(0, 1), slice(1, 4)))
    assert parts == pytest.approx(float(full))


def test_gradient_of_clipped_tokens_is_zero():
    logp = torch.tensor([[0.0, 0.0]], requires_grad=True)
    old = torch.tensor([[-1.0, 0.0]])  # ratio e > 1.2 on token 0 with positive advantage: clipped
    adv = torch.tensor([[1.0, 1.0]])
    loss, _ = ppo_clip_objective(logp, old, adv, torch.ones(1, 2))
    loss.backward()
    assert logp.grad[0, 0] == 0.0 and logp.grad[0, 1] != 0.0
