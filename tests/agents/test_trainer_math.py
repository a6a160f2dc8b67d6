"""The trainer's math end to end, against values derived by hand: token advantages and their
alignment with the tokens, the loss, the KL term, inner epochs, the rescoring path, a plugin's
token term reaching the loss, and learning that goes the right way (and the wrong way when the
advantages are negated)."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from reasonenv.agents.config import ConfigError, load_config  # noqa: E402
from reasonenv.agents.samples import collate  # noqa: E402
from reasonenv.grading import Verdict  # noqa: E402
from reasonenv.problems import Problem  # noqa: E402
from reasonenv.shaping.base import EpisodeRecord  # noqa: E402

PROBLEM = Problem(id="p", question="What is 2+2?", answer="4", source="t")


def cfg_for(tmp_path, *over, shapers=(), services=None):
    cfg = load_config(None, [
        f"run.out_dir={tmp_path}", "run.steps=1", "run.tensorboard=false", "run.progress=false",
        "run.plot=false", "run.checkpoint_every=0", "rollout.num_problems=2", "rollout.group_size=3",
        "rollout.max_step_tokens=6", "env.max_tokens=12", "env.max_steps=2", "env.chat=false",
        "optim.lr=1e-2", "algo.micro_batch=2", *over])
    cfg.shaping.shapers = list(shapers)
    cfg.shaping.services = dict(services or {})
    return cfg


def trainer(cfg, seed=0):
    from reasonenv.agents.trainer import Trainer
    from reasonenv.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    return Trainer(cfg, tiny_model(tok, seed=seed), tok)


def episode(slot, steps_ids, lps, outcome, **terms):
    steps = tuple(f"s{k}" for k in range(len(steps_ids)))
    return EpisodeRecord(slot, 0, PROBLEM, "q", steps, tuple(tuple(s) for s in steps_ids),
                         tuple(tuple(x) for x in lps), (5, 6, 7), outcome, {"reason": "exact"}, True,
                         **terms)


def perturb(model, scale=0.5, seed=1):
    """Move the policy away from the reference (so KL and PRL-like terms are non-zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * p.std().nan_to_num(0.02) * torch.randn(p.shape, generator=gen))


# -- hand-made groups ---------------------------------------------------------------------------
def test_make_batch_advantages_alignment_and_loss_by_hand(tmp_path):
    tr = trainer(cfg_for(tmp_path))
    # G = 3, outcomes [1, 0, 0]: mean 1/3, unbiased std sqrt(1/3) -> A = 2/sqrt(3), -1/sqrt(3).
    eps = [episode(0, [[10, 11]], [[-1.0, -2.0]], 1.0, episode_terms={"outcome": 1.0}),
           episode(1, [[12], [13, 14]], [[-0.5], [-0.1, -0.2]], 0.0, episode_terms={"outcome": 0.0}),
           episode(2, [[15, 16, 17, 18]], [[-1.0] * 4], 0.0, episode_terms={"outcome": 0.0})]
    group = SimpleNamespace(episodes=eps, group_terms={})
    batch = tr.make_batch([group])
    hi, lo = 2 / math.sqrt(3) / (1 + 1e-6 * math.sqrt(3)), -1 / math.sqrt(3) / (1 + 1e-6 * math.sqrt(3))
    np.testing.assert_allclose(batch[0].advantages, [hi, hi], rtol=1e-9)
    np.testing.assert_allclose(batch[1].advantages, [lo] * 3, rtol=1e-9)
    np.testing.assert_allclose(batch[2].advantages, [lo] * 4, rtol=1e-9)
    assert batch[1].response_ids == [12, 13, 14] and batch[1].old_logprobs.tolist() == [-0.5, -0.1, -0.2]
    # Alignment: prompt (5, 6, 7) then the response; logits position p predicts token p + 1, so
    # response token j sits at position 3 - 1 + j.
    t = collate(batch)
    assert t["input_ids"][1].tolist()[:6] == [5, 6, 7, 12, 13, 14]
    assert t["mask"][1].tolist()[:6] == [0, 0, 1, 1, 1, 0] and t["mask"][2].tolist() == [0, 0, 1, 1, 1, 1]
    np.testing.assert_allclose(t["adv"][1].tolist()[:6], [0, 0, lo, lo, lo, 0], rtol=1e-6)
    np.testing.assert_allclose(t["old"][1].tolist()[:6], [0, 0, -0.5, -0.1, -0.2, 0], rtol=1e-6)
    # On-policy, the token-mean loss is minus the mean advantage: (2 hi + 7 lo) / 9 tokens.
    for s, lp in zip(batch, tr._score(tr.model, batch)):
        s.old_logprobs = lp
    stats = tr.update(batch)
    assert stats["loss"] == pytest.approx(-(2 * hi + 7 * lo) / 9, rel=1e-5)


def test_group_and_token_terms_of_a_shaper_reach_the_batch(tmp_path):
    """PRL (orm) with group-level PROGRS: the token terms and the group terms both land."""
    tr = trainer(cfg_for(tmp_path, shapers=[{"name": "prl", "eta": 2.0, "split": "fixed:2"},
                                            {"name": "progrs", "lam": 0.1}],
                         services={"prm": "heuristic"}))
    eps = [episode(0, [[10, 11]], [[-1.0, -2.0]], 1.0, episode_terms={"outcome": 1.0},
                   token_terms={"prl": (0.25, -0.5)}),
           episode(1, [[12, 13]], [[-0.5, -0.5]], 0.0, episode_terms={"outcome": 0.0},
                   token_terms={"prl": (0.0, 0.0)})]
    group = SimpleNamespace(episodes=eps, group_terms={"progrs": [0.0, 0.05]})
    (a0, a1) = (s.advantages for s in tr.make_batch([group]))
    a = 0.5 / (math.sqrt(0.5) + 1e-6)
    np.testing.assert_allclose(a0, [a + 0.25, a - 0.5], rtol=1e-9)
    np.testing.assert_allclose(a1, [-a + 0.05, -a + 0.05], rtol=1e-9)


def test_prm_mode_uses_the_raw_estimator_and_conflicts_are_named(tmp_path):
    tr = trainer(cfg_for(tmp_path, shapers=[{"name": "prl", "mode": "prm", "split": "fixed:2"}]))
    assert tr.adv_config.estimator == "raw"
    eps = [episode(0, [[10, 11]], [[-1.0, -2.0]], 1.0, episode_terms={"outcome": 1.0},
                   token_terms={"prl": (0.25, -0.5)}),
           episode(1, [[12, 13]], [[-0.5, -0.5]], 0.0, episode_terms={"outcome": 0.0},
                   token_terms={"prl": (0.0, 0.5)})]
    (a0, a1) = (s.advantages for s in tr.make_batch([SimpleNamespace(episodes=eps, group_terms={})]))
    np.testing.assert_allclose(a0, [1.0 - 0.25, 1.0 - 0.5])  # R_i + return-to-go of the token terms
    np.testing.assert_allclose(a1, [0.5, 0.5])
    with pytest.raises(ConfigError, match="algo.advantage.estimator='grpo' conflicts with shaper 'prl'"):
        trainer(cfg_for(tmp_path / "b", "algo.advantage.estimator=grpo",
                        shapers=[{"name": "prl", "mode": "prm", "split": "fixed:2"}]))


# -- the loss -----------------------------------------------------------------------------------
def test_kl_reaches_the_loss(tmp_path):
    beta = 0.5
    tr = trainer(cfg_for(tmp_path, f"algo.kl_coef={beta}", services={"grader": contains_e}))
    perturb(tr.model)
    groups, _ = tr.rollout()
    batch = tr.make_batch(groups)
    assert all(s.ref_logprobs is not None for s in batch)
    twin = trainer(cfg_for(tmp_path / "twin", services={"grader": contains_e}))
    twin.model.load_state_dict(tr.model.state_dict())
    logp = np.concatenate(tr._score(tr.model, batch))
    ref = np.concatenate([s.ref_logprobs for s in batch])
    np.testing.assert_allclose(ref, np.concatenate(tr._score(tr.ref, batch)), rtol=1e-6)
    k3 = np.exp(ref - logp) - (ref - logp) - 1
    assert k3.mean() > 1e-3  # the policy really moved away from the reference
    with_kl, without = tr.update(batch)["loss"], twin.update(batch)["loss"]
    assert with_kl - without == pytest.approx(beta * k3.mean(), rel=1e-4)


def test_inner_epochs_equal_repeated_passes_over_the_batch(tmp_path):
    a = trainer(cfg_for(tmp_path / "a", "algo.inner_epochs=2", services={"grader": contains_e}))
    b = trainer(cfg_for(tmp_path / "b", "algo.inner_epochs=1", services={"grader": contains_e}))
    batch = a.make_batch(a.rollout()[0])
    assert any(abs(s.advantages).max() > 0 for s in batch)
    start = [p.detach().clone() for p in a.model.parameters()]
    a.update(batch)
    b.update(batch)
    one = [p.detach().clone() for p in b.model.parameters()]
    b.update(batch)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(p1, pa) for p1, pa in zip(one, a.model.parameters()))
    assert any(not torch.equal(p0, pa) for p0, pa in zip(start, a.model.parameters()))


def test_rescoring_at_temperature_uses_the_tempered_training_model(tmp_path):
    T = 0.7  # two passes over the batch: pi_old must be stored, so the batch is rescored
    tr = trainer(cfg_for(tmp_path, f"rollout.temperature={T}", "algo.inner_epochs=2"))
    batch = tr.make_batch(tr.rollout()[0])
    s = batch[0]
    ids = torch.tensor([s.prompt_ids + s.response_ids])
    with torch.no_grad():
        logits = tr.model(input_ids=ids).logits[0].float() / T
    logp = torch.log_softmax(logits, -1)
    P = len(s.prompt_ids)
    want = [float(logp[P - 1 + j, tok]) for j, tok in enumerate(s.response_ids)]
    np.testing.assert_allclose(s.old_logprobs, want, rtol=1e-5, atol=1e-6)


def test_one_pass_takes_pi_old_from_the_loss_forward_instead_of_a_rescoring_pass(tmp_path):
    """inner_epochs=1 at T != 1: no separate no-grad pass; the update equals the rescored one."""
    over = ("rollout.temperature=0.7", "algo.micro_batch=4", "rollout.group_size=8")
    a = trainer(cfg_for(tmp_path / "a", *over, services={"grader": contains_e}))
    b = trainer(cfg_for(tmp_path / "b", *over, services={"grader": contains_e}))
    groups = a.rollout()[0]
    start = [p.detach().clone() for p in a.model.parameters()]
    calls = []
    score = a._score
    a._score = lambda model, samples: calls.append(len(samples)) or score(model, samples)
    batch = a.make_batch(groups)
    assert calls == [] and any(abs(s.advantages).max() > 0 for s in batch)
    # b: the old way, pi_old rescored by a no-grad pass and read from the batch
    rescored = copy.deepcopy(batch)
    for s, lp in zip(rescored, b._score(b.model, rescored)):
        s.old_logprobs = lp
    b._old_from_forward = lambda: False
    # a's stored pi_old is off by 0.5 nat: an update that read it would clip and differ
    for s in batch:
        s.old_logprobs = s.old_logprobs + 0.5
    sa, sb = a.update(batch), b.update(rescored)
    assert sa["clip_frac"] == 0.0 and sb["clip_frac"] < 1e-6
    assert sa["loss"] == pytest.approx(sb["loss"], rel=1e-5, abs=1e-7)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(p0, pa) for p0, pa in zip(start, a.model.parameters()))
    # more than one pass needs the stored pi_old, so there the batch is rescored
    c = trainer(cfg_for(tmp_path / "d", *over, "algo.inner_epochs=2", services={"grader": contains_e}))
    assert c._old_from_forward() is False and a._old_from_forward() is True


def test_fused_adamw_is_used_and_gives_the_for_loop_update(tmp_path):
    over = ("optim.weight_decay=0.1", "optim.beta2=0.99", "rollout.group_size=8", "algo.micro_batch=4")
    a = trainer(cfg_for(tmp_path / "a", *over, services={"grader": contains_e}))
    b = trainer(cfg_for(tmp_path / "b", *over, "optim.fused=false", services={"grader": contains_e}))
    assert a.optimizer.defaults["fused"] is True and not b.optimizer.defaults["fused"]
    batch = a.make_batch(a.rollout()[0])
    assert any(abs(s.advantages).max() > 0 for s in batch)
    start = [p.detach().clone() for p in a.model.parameters()]
    for _ in range(2):  # the second step reads the moments the first one stored
        a.update(copy.deepcopy(batch))
        b.update(copy.deepcopy(batch))
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-7)
    assert any(not torch.equal(p0, pa) for p0, pa in zip(start, a.model.parameters()))


# -- a third-party token-level shaper -----------------------------------------------------------
def test_plugin_token_term_reaches_the_loss_exactly(tmp_path, real_reg, example_installed):
    coef = 0.5
    tr = trainer(cfg_for(tmp_path, shapers=[{"name": "outcome"}, {"name": "token_kl", "coef": coef}]))
    assert tr.pipeline.contributions()["token_kl"] == {"token": "reward"}
    perturb(tr.model)
    groups, _ = tr.rollout()
    batch = tr.make_batch(groups)
    ref = tr._score(tr.ref, batch)  # one full forward of the reference: the scorer kept caches
    a_hat = {}
    for g in groups:
        o = g.outcomes
        sd = o.std(ddof=1)
        for ep, x in zip(g.episodes, (o - o.mean()) / (sd + 1e-6)):
            a_hat[tuple(ep.response_token_ids)] = x
    total_plugin = 0.0
    for s, r in zip(batch, ref):
        d = s.old_logprobs - r
        rtg = -coef * np.cumsum(d[::-1])[::-1]  # return-to-go of the dense reward
        np.testing.assert_allclose(s.advantages, a_hat[tuple(s.response_ids)] + rtg, rtol=1e-4, atol=1e-5)
        total_plugin += rtg.sum()
    assert abs(total_plugin) > 1e-3
    n = sum(len(s.response_ids) for s in batch)
    for s, lp in zip(batch, tr._score(tr.model, batch)):
        s.old_logprobs = lp  # on-policy: the loss is minus the mean advantage
    loss = tr.update(copy.deepcopy(batch))["loss"]
    assert loss == pytest.approx(-sum(s.advantages.sum() for s in batch) / n, rel=1e-5)
    for s in batch:
        s.advantages = s.advantages - (s.advantages - a_hat[tuple(s.response_ids)])  # plugin removed
    twin = trainer(cfg_for(tmp_path / "twin"))
    assert twin.update(batch)["loss"] - loss == pytest.approx(total_plugin / n, rel=1e-4)


# -- learning goes the right way ----------------------------------------------------------------
def contains_e(pairs):
    """Reward 1 when the response holds the letter "e" (a tiny random model writes it ~25 %)."""
    return [Verdict(correct="e" in r, extracted=r[-4:], reference=a, pred_normalized=None,
                    ref_normalized=a, reason="exact") for r, a in pairs]


def learning_run(tmp_path, negate=False, shapers=(), services=None):
    cfg = cfg_for(tmp_path, "run.steps=12", "rollout.group_size=8", "env.max_tokens=6",
                  "env.max_steps=1", "optim.lr=3e-2", "algo.micro_batch=16",
                  shapers=shapers, services={"grader": contains_e, **(services or {})})
    tr = trainer(cfg)
    if negate:
        compose = tr.compose

        def negated(*args, **kwargs):
            adv, stats = compose(*args, **kwargs)
            return [[-a for a in g] for g in adv], stats

        tr.compose = negated
    return [h["accuracy"] for h in tr.train()]


def test_grpo_learns_a_rewarded_token_and_unlearns_it_with_negated_advantages(tmp_path):
    up = learning_run(tmp_path / "up")
    down = learning_run(tmp_path / "down", negate=True)
    assert up[0] == down[0]  # same seed: the same first rollout (later ones follow the updates)
    start = np.mean(up[:2])
    assert 0.1 < start < 0.5, up
    assert np.mean(up[-3:]) > 0.7, up
    assert np.mean(down[-3:]) < 0.2, down


def e_prover():
    """MC continuations that write an "e" one time in four: a prefix holding an "e" already
    succeeds for sure, any other 25 % of the time (the grader is ``contains_e``)."""
    from reasonenv.shaping.fake_services import FunctionSampler
    from reasonenv.shaping.prover import MCProver

    return MCProver(FunctionSampler(lambda prefix, i, seed: "e" if i % 4 == 0 else "x"), grader=contains_e)


@pytest.mark.slow
@pytest.mark.parametrize("name,shapers,services", [
    # Weights that leave the outcome in charge. Measured: PRL at eta 2 (a KL-to-go 10x
    # stronger) stays near the start in 12 updates, and so does PAV at alpha 1: with one step
    # per response its term is alpha * (outcome - Q(prompt)), a shift that is not centred.
    ("prl_orm", [{"name": "prl", "eta": 20.0, "mode": "orm", "split": "fixed:3"}], {}),
    ("prl_prm", [{"name": "prl", "eta": 20.0, "mode": "prm", "split": "fixed:3"}], {}),
    ("progrs", [{"name": "progrs", "lam": 0.5}], {"prm": "heuristic"}),
    ("pav", [{"name": "pav", "alpha": 0.3, "K": 2, "m": 3, "split": "fixed:3"}], "prover"),
])
def test_learning_goes_the_right_way_with_each_process_reward(tmp_path, name, shapers, services):
    """The learning test of plain GRPO, with each built-in process reward added: the rewarded
    behaviour still rises, and falls with the advantages negated."""
    services = {"prover": e_prover()} if services == "prover" else services
    up = learning_run(tmp_path / "up", shapers=shapers, services=services)
    down = learning_run(tmp_path / "down", negate=True, shapers=shapers, services=services)
    assert np.mean(up[-3:]) > np.mean(up[:2]) + 0.25, (name, up)
    assert np.mean(down[-3:]) < 0.2, (name, down)
