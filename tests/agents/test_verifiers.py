"""Verifiers trained from Monte-Carlo rollouts (reasonenv.agents.verifiers): targets, split, collect.

Training, loading through services and the CLI are in test_verifier_training.py.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from reasonenv.agents import verifiers as V
from reasonenv.shaping.prover import bok_biased, bok_unbiased

torch = pytest.importorskip("torch")

TEMPLATE = "Q: {question}\nA:\n"


# -- targets, by hand and by enumeration ------------------------------------------------------------
def test_prm_target_is_the_mc_success_rate_after_each_step():
    rec = {"steps": ["a\n\n", "b\n\n", "c"], "c": [3, 2, 5, 8], "m": 8, "outcome": 1}
    # c[0] is the bare prompt (no PRM step); steps 1..3 get c_k / m, the last is the outcome
    assert V.prm_targets(rec) == [2 / 8, 5 / 8, 8 / 8]
    assert V.prefixes(rec) == ["", "a\n\n", "a\n\nb\n\n"]


def _bok_by_enumeration(c: int, m: int, K: int) -> float:
    """P(a K-subset of the m continuations, drawn without replacement, holds a correct one)."""
    correct = set(range(c))
    subsets = list(itertools.combinations(range(m), K))
    return sum(bool(correct & set(s)) for s in subsets) / len(subsets)


@pytest.mark.parametrize("m,K", [(4, 1), (4, 2), (4, 4), (6, 3), (8, 4)])
def test_value_target_is_the_unbiased_best_of_k_over_every_subset(m, K):
    for c in range(m + 1):
        rec = {"steps": ["s\n\n", "t"], "c": [c, c, m], "m": m, "outcome": 1}
        got = V.value_targets(rec, K)
        want = _bok_by_enumeration(c, m, K)
        assert got == pytest.approx([want, want], abs=1e-12), (c, m, K)


def test_value_target_is_not_the_biased_estimate():
    rec = {"steps": ["s\n\n", "t"], "c": [2, 1, 0], "m": 4, "outcome": 0}
    got = V.value_targets(rec, 2)
    assert got == pytest.approx([1 - 1 / 6, 1 - 3 / 6])  # C(2,2)/C(4,2) = 1/6, C(3,2)/C(4,2) = 3/6
    assert got[0] != pytest.approx(bok_biased(2, 4, 2))


def test_value_targets_need_k_at_most_m():
    with pytest.raises(ValueError, match="m >= K"):
        V.value_targets({"steps": ["s"], "c": [1, 0], "m": 2, "outcome": 0}, 3)


# -- the problem split ----------------------------------------------------------------------------
def test_split_keeps_every_problem_on_one_side_and_is_deterministic():
    ids = [f"p{i}" for i in range(300) for _ in range(3)]  # 3 responses per problem
    train, val = V.split_problems(ids, 0.25, seed=7)
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(ids)
    assert 0.15 < len(val) / 300 < 0.35
    assert V.split_problems(list(reversed(ids)), 0.25, seed=7) == (train, val)
    assert V.split_problems(ids, 0.25, seed=8) != (train, val)
    # a problem's side does not depend on what else is in the data
    more = ids + [f"q{i}" for i in range(100)]
    train2, val2 = V.split_problems(more, 0.25, seed=7)
    assert set(val) <= set(val2) and set(train) <= set(train2)


def test_split_edge_cases():
    assert V.split_problems(["a", "b"], 0.0) == (["a", "b"], [])
    train, val = V.split_problems(["a", "b", "c"], 0.01)
    assert len(val) == 1 and len(train) == 2
    with pytest.raises(ValueError, match="no training problem"):
        V.split_problems(["a"], 0.5)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="val_frac"):
            V.split_problems(["a", "b"], bad)


# -- collect on a scripted policy and prover: the counts are known exactly --------------------------
def _scripted_sampler(m: int):
    """Continuation i of a prefix with k finished steps is correct iff i <= k: c_k = min(k+1, m)."""
    from reasonenv.shaping.fake_services import FunctionSampler

    def fn(prompt: str, i: int, seed: int) -> str:
        k = prompt.split("A:\n", 1)[1].count("\n\n")
        return " RIGHT" if i <= k else " WRONG"

    return FunctionSampler(fn)


def _grader(pairs):
    return [resp.endswith("RIGHT") for resp, _ in pairs]


@pytest.mark.parametrize("variant", ["oracle", "corrupt"])
def test_collect_counts_equal_the_scripted_prover(tmp_path, variant):
    from reasonenv.agents.policy_specs import SolutionPolicy
    from reasonenv.evaluation.evaluate import benchmark_problems

    spec = "procedural:chained_sums?difficulty=2&seed=5"
    cfg = V.CollectConfig(policy="scripted", problems=spec, limit=5, n=2, m=3, max_tokens=400,
                          max_step_tokens=200, chat="off", prompt=TEMPLATE, batch_problems=2)
    problems = benchmark_problems(spec, 5, seed=0)
    policy = SolutionPolicy(problems, variant)
    sampler = _scripted_sampler(cfg.m)
    stats = V.collect(cfg, tmp_path, policy=policy, sampler=sampler, grader=_grader)
    recs = V.read_records(tmp_path)
    assert len(recs) == 5 * 2 and {r["sample"] for r in recs} == {0, 1}
    assert len({r["problem_id"] for r in recs}) == 5
    for r in recs:
        K = len(r["steps"])
        assert K >= 3  # chained sums at difficulty 2: several steps
        assert r["outcome"] == (variant == "oracle")
        assert r["c"] == [min(k + 1, 3) for k in range(K)] + [3 * r["outcome"]]
        assert V.value_targets(r, 2) == [bok_unbiased(min(k + 1, 3), 3, 2) for k in range(K)]
        assert V.prm_targets(r) == [min(k + 1, 3) / 3 for k in range(1, K)] + [float(r["outcome"])]
        assert r["prompt"] == TEMPLATE.format(question=r["question"])
    # both samples of a problem are the same scripted response: the prover caches them
    assert stats.responses == 10 and stats.accuracy == (variant == "oracle")
    assert stats.prefixes == sum(len(r["steps"]) for r in recs)
    assert stats.prefixes_sampled == stats.prefixes // 2
    assert stats.continuations == 3 * stats.prefixes_sampled
    assert sampler.calls == math.ceil(5 / 2)  # one batched prover call per chunk of problems


def test_collect_resume_skips_finished_problems_and_refuses_other_settings(tmp_path):
    from reasonenv.agents.policy_specs import SolutionPolicy
    from reasonenv.evaluation.evaluate import benchmark_problems

    spec = "procedural:chained_sums?difficulty=1&seed=5"
    cfg = V.CollectConfig(policy="scripted", problems=spec, limit=3, n=1, m=2, max_tokens=400,
                          max_step_tokens=200, chat="off", prompt=TEMPLATE)
    policy = SolutionPolicy(benchmark_problems(spec, 3, seed=0), "oracle")
    first = V.collect(cfg, tmp_path, policy=policy, sampler=_scripted_sampler(2), grader=_grader)
    sampler = _scripted_sampler(2)
    again = V.collect(cfg, tmp_path, policy=policy, sampler=sampler, grader=_grader)
    assert sampler.calls == 0 and len(V.read_records(tmp_path)) == 3
    assert again.continuations == first.continuations  # totals kept, nothing added
    other = V.CollectConfig(**{**cfg.__dict__, "m": 4})
    with pytest.raises(ValueError, match="m: 2 vs 4"):
        V.collect(other, tmp_path, policy=policy, sampler=sampler, grader=_grader)


# -- collect on a tiny in-process Llama and the char tokenizer (no download) ----------------------


def test_collect_with_a_tiny_llama_writes_one_record_per_response(tmp_path, char_lm):
    from reasonenv.agents.hf import HFPolicy, HFPolicyConfig
    from reasonenv.models.sampler import HFSampler

    model, tok = char_lm
    cfg = V.CollectConfig(policy="tiny", problems="procedural:arithmetic?difficulty=1&seed=9",
                          limit=3, n=2, m=3, max_tokens=24, max_step_tokens=8, chat="off",
                          prompt=TEMPLATE, batch_problems=2)
    policy = HFPolicy(model, tok, HFPolicyConfig(temperature=1.0, max_step_tokens=8, seed=0))
    sampler = HFSampler(model, tok, max_new_tokens=24)
    stats = V.collect(cfg, tmp_path, policy=policy, sampler=sampler, tokenizer=tok)
    recs = V.read_records(tmp_path)
    assert len(recs) == 6 and sorted({(r["problem_id"], r["sample"]) for r in recs}) == sorted(
        {(r["problem_id"], j) for r in recs for j in (0, 1)})
    for r in recs:
        assert len(r["c"]) == len(r["steps"]) + 1 and r["m"] == 3
        assert all(0 <= c <= 3 for c in r["c"]) and r["c"][-1] == 3 * r["outcome"]
        assert 0 < r["n_tokens"] <= 24
    assert stats.policy_tokens == sum(r["n_tokens"] for r in recs)
    assert stats.continuations == 3 * stats.prefixes_sampled > 0
    assert stats.continuation_tokens > 0 and stats.mc_seconds > 0
    saved = V.read_collect_config(tmp_path)
    assert saved["m"] == 3 and saved["format"] == V.FORMAT
    assert np.isclose(stats.accuracy, np.mean([r["outcome"] for r in recs]))
