"""PAV: progress terms, telescoping, prefix batching and config checks."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonenv.plugins.pav import PAVShaper
from reasonenv.problems.base import Problem
from reasonenv.shaping.base import StepContext
from reasonenv.shaping.protocols import ProverRequest, Services

PROBLEM = Problem(id="t/0", question="What is 1+1?", answer="2", source="test")
OTHER = Problem(id="t/1", question="What is 2+2?", answer="4", source="test")


class FakeProver:
    """Q = a stable hash of (problem id, prompt, prefix) in [0, 1]; counts calls and prefixes."""

    def __init__(self) -> None:
        self.calls: list[list[ProverRequest]] = []
        self.kw: list[tuple[int, int]] = []

    @staticmethod
    def q(problem: Problem, prompt: str, prefix: str) -> float:
        h = hashlib.sha256(f"{problem.id}|{prompt}|{prefix}".encode()).digest()
        return int.from_bytes(h[:8], "little") / 2**64

    def q_values(self, requests, *, K, m):
        self.calls.append(list(requests))
        self.kw.append((K, m))
        return [self.q(r.problem, r.prompt, r.prefix) for r in requests]


def contexts(steps, outcome, *, problem=PROBLEM, prompt="Q: ", slot=0):
    """All StepContexts of one response; the last one carries the outcome."""
    n = len(steps)
    return [
        StepContext(
            slot=slot,
            episode_id=0,
            problem=problem,
            prompt=prompt,
            step_index=k,
            steps=tuple(steps[: k + 1]),
            step_token_ids=(None,) * (k + 1),
            step_logprobs=(None,) * (k + 1),
            is_last=k == n - 1,
            outcome=outcome if k == n - 1 else None,
            verdict={"reason": "exact"} if k == n - 1 else None,
        )
        for k in range(n)
    ]


def naive_terms(steps, outcome, alpha, *, problem=PROBLEM, prompt="Q: "):
    out = []
    for h in range(len(steps)):
        before = FakeProver.q(problem, prompt, "".join(steps[:h]))
        after = (
            outcome
            if h == len(steps) - 1
            else FakeProver.q(problem, prompt, "".join(steps[: h + 1]))
        )
        out.append(alpha * (after - before))
    return out


STEP_TEXT = st.lists(st.text(alphabet="ab1+=\n", min_size=1, max_size=6), min_size=1, max_size=8)


def test_contract_and_defaults():
    PAVShaper.validate_class()
    assert PAVShaper.hook_points() == ("step",)
    assert PAVShaper.enters == "advantage" and PAVShaper.services == ("prover",)
    assert PAVShaper.config_fields() == {"alpha": 3.0, "K": 4, "m": 20, "split": "\n"}


@settings(max_examples=100)
@given(steps=STEP_TEXT, outcome=st.sampled_from([0.0, 1.0]), alpha=st.sampled_from([0.5, 3.0, 5.0]))
def test_terms_match_formula_and_telescope(steps, outcome, alpha):
    prover = FakeProver()
    sh = PAVShaper(PAVShaper.Config(alpha=alpha), Services(prover=prover))
    terms = sh.step_terms(contexts(steps, outcome))
    assert all(isinstance(t, float) and math.isfinite(t) for t in terms)
    assert all(abs(t) <= alpha + 1e-12 for t in terms)
    np.testing.assert_allclose(terms, naive_terms(steps, outcome, alpha), atol=1e-12)
    q_prompt = FakeProver.q(PROBLEM, "Q: ", "")
    assert math.isclose(sum(terms), alpha * (outcome - q_prompt), abs_tol=1e-9)
    assert prover.kw == [(4, 20)]


@given(steps=STEP_TEXT, outcome=st.sampled_from([0.0, 1.0]))
def test_one_at_a_time_equals_batch(steps, outcome):
    ctxs = contexts(steps, outcome) + contexts(["x\n", "y"], 1.0, problem=OTHER, slot=1)
    batch = PAVShaper(services=Services(prover=FakeProver())).step_terms(ctxs)
    sh = PAVShaper(services=Services(prover=FakeProver()))
    assert batch == [sh.step_terms([c])[0] for c in ctxs]


def test_batch_dedupes_prefixes_in_one_call():
    prover = FakeProver()
    sh = PAVShaper(services=Services(prover=prover))
    # One whole response of 3 steps needs Q(""), Q(s0), Q(s0 s1): 3 distinct prefixes, not 5.
    # A second sub-env on the same problem and prompt shares Q("") and Q("a\n").
    ctxs = contexts(["a\n", "b\n", "c"], 1.0) + contexts(["a\n", "z"], 0.0, slot=1)
    sh.step_terms(ctxs)
    assert len(prover.calls) == 1
    prefixes = [r.prefix for r in prover.calls[0]]
    assert sorted(prefixes) == sorted(["", "a\n", "a\nb\n"])
    # Same prefix text under another problem is a different request.
    prover.calls.clear()
    sh.step_terms(contexts(["a\n"], 0.0) + contexts(["a\n"], 0.0, problem=OTHER, slot=1))
    assert len(prover.calls[0]) == 2 and {r.problem.id for r in prover.calls[0]} == {"t/0", "t/1"}


def test_last_step_uses_outcome_not_prover():
    prover = FakeProver()
    sh = PAVShaper(PAVShaper.Config(alpha=1.0), Services(prover=prover))
    (term,) = sh.step_terms(contexts(["only step"], 1.0))
    assert [r.prefix for r in prover.calls[0]] == [""]
    assert math.isclose(term, 1.0 - FakeProver.q(PROBLEM, "Q: ", ""))
    bad = StepContext(**{**contexts(["s"], 1.0)[0].__dict__, "outcome": None})
    with pytest.raises(ValueError, match="pav.*outcome"):
        sh.step_terms([bad])


@given(steps=STEP_TEXT, outcome=st.sampled_from([0.0, 1.0]))
def test_alpha_zero_gives_zeros(steps, outcome):
    sh = PAVShaper(PAVShaper.Config(alpha=0.0), Services(prover=FakeProver()))
    terms = sh.step_terms(contexts(steps, outcome))
    assert terms == [0.0] * len(steps)
    assert all(math.copysign(1.0, t) == 1.0 for t in terms)


def test_config_m_below_k_is_an_error():
    with pytest.raises(ValueError, match=r"m=3.*K=4"):
        PAVShaper.Config(K=4, m=3)
    with pytest.raises(ValueError, match="K"):
        PAVShaper.Config(K=0)
    PAVShaper.Config(K=4, m=4)  # m == K is fine


def test_missing_prover_is_named():
    with pytest.raises(ValueError, match="prover"):
        PAVShaper(services=Services()).step_terms(contexts(["a"], 1.0))


def test_empty_batch():
    prover = FakeProver()
    assert PAVShaper(services=Services(prover=prover)).step_terms([]) == []
    assert prover.calls == []
