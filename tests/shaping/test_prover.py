"""The PAV prover: Best-of-K estimators, the Monte-Carlo prover's cache and batching, the value head."""

from __future__ import annotations

import hashlib
import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasonenv.problems.base import Problem
from reasonenv.shaping.fake_services import FunctionSampler
from reasonenv.shaping.protocols import ProverRequest, ProverService
from reasonenv.shaping.prover import (
    MCProver,
    bok_biased,
    bok_unbiased,
    derive_seed,
    prefix_key,
)

P = Problem(id="t/0", question="What is 2 + 2?", answer="4", source="test")
Q = Problem(id="t/1", question="What is 3 + 3?", answer="6", source="test")


# ----------------------------------------------------------------------------- estimators
@pytest.mark.parametrize("m", range(1, 8))
def test_bok_unbiased_equals_exact_subset_enumeration(m):
    for K in range(1, m + 1):
        for c in range(m + 1):
            samples = [True] * c + [False] * (m - c)
            subsets = list(itertools.combinations(range(m), K))
            exact = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
            assert bok_unbiased(c, m, K) == pytest.approx(exact, abs=1e-12), (c, m, K)


def test_biased_differs_and_is_never_higher():
    assert bok_unbiased(1, 4, 2) == pytest.approx(0.5)
    assert bok_biased(1, 4, 2) == pytest.approx(1 - 0.75**2)
    diffs = 0
    for m in range(1, 10):
        for K in range(1, m + 1):
            for c in range(m + 1):
                u, b = bok_unbiased(c, m, K), bok_biased(c, m, K)
                assert b <= u + 1e-12
                if K == 1:
                    assert b == pytest.approx(u)
                diffs += abs(u - b) > 1e-9
    assert diffs > 50


@given(m=st.integers(1, 40), K=st.integers(1, 40), c=st.integers(0, 40))
def test_bok_unbiased_bounds_and_monotone(m, K, c):
    if K > m or c > m:
        with pytest.raises(ValueError):
            bok_unbiased(c, m, K)
        return
    v = bok_unbiased(c, m, K)
    assert 0.0 <= v <= 1.0
    assert (v == 0.0) == (c == 0)
    if c < m:
        assert bok_unbiased(c + 1, m, K) >= v


@pytest.mark.parametrize(
    "args, match",
    [((1, 3, 4), r"m=3, K=4"), ((5, 4, 2), r"c=5, m=4"), ((-1, 4, 2), r"c=-1"),
     ((1, 4, 0), r"K=0"), ((1.0, 4, 2), r"c must be an int")],
)
def test_bok_errors_name_values(args, match):
    with pytest.raises(ValueError, match=match):
        bok_unbiased(*args)


def test_stable_keys_and_seeds():
    assert prefix_key("p", "x", "4") == prefix_key("p", "x", "4")
    assert prefix_key("p", "x", "4") != prefix_key("p", "x", "5")
    assert derive_seed(3, "abc") == int.from_bytes(hashlib.sha256(b"3\0abc").digest()[:8], "little") & (2**63 - 1)


# ----------------------------------------------------------------------------- MC prover
def _n_correct(text: str) -> int:
    """Known success count out of 20: from the marker 'good<k>' in the prefix, else 5."""
    for k in range(20, -1, -1):
        if f"good{k};" in text:
            return k
    return 5


def _fn(prompt: str, i: int, seed: int) -> str:
    return " \\boxed{4}" if i < _n_correct(prompt) else " \\boxed{5}"  # first n_correct right


class RecordingGrader:
    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str]]] = []

    def __call__(self, pairs):
        self.calls.append(list(pairs))
        return [r.endswith("\\boxed{" + ref + "}") for r, ref in pairs]


def _req(prefix: str, problem: Problem = P) -> ProverRequest:
    return ProverRequest(problem, "Q: " + problem.question + "\n", prefix)


def test_mc_prover_counts_and_estimate():
    sampler, grader = FunctionSampler(_fn), RecordingGrader()
    prover = MCProver(sampler, grader)
    assert isinstance(prover, ProverService)
    reqs = [_req(""), _req("good12; step\n"), _req("good0; x\n"), _req("good20; y\n")]
    assert prover.counts(reqs, m=20) == [5, 12, 0, 20]
    q = prover.q_values(reqs, K=4, m=20)
    assert q == [pytest.approx(bok_unbiased(c, 20, 4)) for c in (5, 12, 0, 20)]
    assert q[2] == 0.0 and q[3] == 1.0


def test_mc_prover_one_batched_call_dedup_and_cache_hits():
    sampler, grader = FunctionSampler(_fn), RecordingGrader()
    prover = MCProver(sampler, grader)
    reqs = [_req("a\n"), _req("b\n"), _req("a\n"), _req("c\n", Q)]
    prover.q_values(reqs, K=4, m=20)
    assert sampler.calls == 1 and sampler.prompts_seen == 3
    assert len(grader.calls) == 1 and len(grader.calls[0]) == 60
    assert (prover.cache_misses, prover.cache_hits, prover.samples_drawn) == (3, 1, 60)
    again = prover.q_values(list(reversed(reqs)), K=2, m=20)  # K changes nothing cached
    assert sampler.calls == 1 and len(grader.calls) == 1
    assert prover.cache_hits == 5 and prover.stats()["cache_hits"] == 5.0
    assert again[1] == pytest.approx(bok_unbiased(5, 20, 2)) and again[0] == 0.0  # Q: answer 6
    prover.q_values([_req("a\n"), _req("d\n")], K=4, m=20)  # only the new prefix is sampled
    assert sampler.calls == 2 and sampler.prompts_seen == 4


def test_mc_prover_grader_sees_prefix_plus_continuation_and_answer():
    grader = RecordingGrader()
    prover = MCProver(FunctionSampler(lambda p, i, s: f"<{i}>"), grader)
    prover.q_values([_req("So far.\n", Q)], K=2, m=3)
    assert grader.calls == [[("So far.\n<0>", "6"), ("So far.\n<1>", "6"), ("So far.\n<2>", "6")]]


def test_mc_prover_sampler_gets_prompt_plus_prefix_and_seed():
    seen = []
    prover = MCProver(FunctionSampler(lambda p, i, s: seen.append((p, s)) or ""), RecordingGrader(), seed=7)
    prover.q_values([_req("xy")], K=1, m=1)
    assert seen == [("Q: What is 2 + 2?\nxy", 7)]


def _noisy(prompt: str, i: int, seed: int) -> str:
    h = hashlib.sha256(f"{seed}|{prompt}|{i}".encode()).digest()[0]
    return " \\boxed{4}" if h % 3 == 0 else " \\boxed{7}"


def test_mc_prover_independent_of_order_and_batching():
    reqs = [_req(f"step {k}\n", P if k % 2 else Q) for k in range(6)]
    together = MCProver(FunctionSampler(_noisy), RecordingGrader(), seed=3).q_values(reqs, K=4, m=8)
    rev = MCProver(FunctionSampler(_noisy), RecordingGrader(), seed=3).q_values(reqs[::-1], K=4, m=8)[::-1]
    one = MCProver(FunctionSampler(_noisy), RecordingGrader(), seed=3)
    singles = [one.q_values([r], K=4, m=8)[0] for r in reqs]
    assert together == rev == singles
    assert len(set(together)) > 1  # not trivially constant
    other = MCProver(FunctionSampler(_noisy), RecordingGrader(), seed=4).q_values(reqs, K=4, m=8)
    assert other != together


def test_mc_prover_cache_keyed_by_m_and_lru():
    sampler = FunctionSampler(_fn)
    prover = MCProver(sampler, RecordingGrader(), cache_size=1)
    prover.q_values([_req("a")], K=4, m=20)
    prover.q_values([_req("a")], K=4, m=10)  # different m: sampled again
    assert sampler.calls == 2
    prover.q_values([_req("a")], K=4, m=20)  # evicted by the m=10 entry
    assert sampler.calls == 3 and prover.stats()["cached_prefixes"] == 1


def test_mc_prover_errors():
    prover = MCProver(FunctionSampler(lambda p, i, s: ""), RecordingGrader(), max_prefix_chars=10)
    with pytest.raises(ValueError, match="m=3, K=4"):
        prover.q_values([_req("")], K=4, m=3)
    with pytest.raises(ValueError, match="max_prefix_chars=10"):
        prover.q_values([_req("")], K=1, m=1)
    bad = MCProver(type("S", (), {"sample": lambda self, ps, n, *, seed: [[""]] * len(ps)})(), RecordingGrader())
    with pytest.raises(ValueError, match="continuations"):
        bad.q_values([_req("")], K=1, m=2)


def test_mc_prover_default_grader_is_grade_batch():
    prover = MCProver(FunctionSampler(lambda p, i, s: " \\boxed{4}" if i < 2 else " \\boxed{5}"))
    assert prover.counts([_req("2+2 = 4.\n")], m=4) == [2]


# ----------------------------------------------------------------------------- value head
def test_value_head_prover_overfits_mc_targets(tiny_tok, tiny_lm):
    import copy

    from reasonenv.models.value_head import ValueHeadProver

    reqs = [_req(t) for t in ("First, 2 + 2 = 4.\n", "Hmm, 2 + 2 = 5.\n", "Let x = 2.\n", "")]
    targets = [0.9, 0.1, 0.6, 0.3]
    vh = ValueHeadProver(copy.deepcopy(tiny_lm), tiny_tok, K=4, seed=0)
    before = vh.q_values(reqs, K=4, m=20)
    losses = vh.fit(reqs, targets, epochs=150, lr=0.05)
    after = vh.q_values(reqs, K=4, m=20)
    assert losses[-1] < losses[0] - 0.05
    err = lambda q: sum(abs(a - b) for a, b in zip(q, targets))  # noqa: E731
    assert err(after) < 0.5 * err(before)
    assert all(0.0 <= q <= 1.0 for q in after)
    assert vh.q_values(reqs[::-1], K=4, m=5)[::-1] == pytest.approx(after, abs=1e-5)
    with pytest.raises(ValueError, match="K=4, asked for K=2"):
        vh.q_values(reqs, K=2, m=20)
    assert math.isfinite(losses[-1])


def test_prover_stats_reach_the_pipeline_with_the_samplers_token_count():
    from reasonenv.shaping.pipeline import RewardPipeline

    class TokenCountingSampler(FunctionSampler):
        tokens_generated = 0

        def sample(self, prompts, n, *, seed):
            out = super().sample(prompts, n, seed=seed)
            self.tokens_generated += sum(len(c) for cs in out for c in cs)
            return out

    sampler = TokenCountingSampler(lambda p, i, s: "ab")
    prover = MCProver(sampler, RecordingGrader())
    prover.q_values([_req("a\n"), _req("b\n"), _req("a\n")], K=2, m=3)
    stats = prover.stats()
    assert stats["samples_drawn"] == 6.0 and stats["sampler_tokens"] == 12.0
    assert "sampler_tokens" not in MCProver(FunctionSampler(_fn), RecordingGrader()).stats()
    pipe = RewardPipeline(["outcome", {"name": "pav", "K": 2, "m": 3}], {"prover": prover})
    got = pipe.stats()
    assert got["prover/samples_drawn"] == 6.0 and got["prover/cache_hits"] == 1.0
    assert got["prover/sampler_tokens"] == 12.0
