"""Services: fake (hash) scorers, HF reference scorer / PRMs / sampler on a tiny model, build_services."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest

from reasonenv.problems.base import Problem
from reasonenv.shaping.fake_services import FunctionSampler, HashRefScorer, HeuristicPRM
from reasonenv.shaping.protocols import (
    ContinuationSampler,
    PRMScorer,
    ProverRequest,
    RefLogprobScorer,
    RefRequest,
    Services,
)
from reasonenv.shaping.prover import MCProver
from reasonenv.shaping.service_factory import build_services

QUESTION = "What is 3 + 4?"
STEPS = ["First, 3 + 4 = 7.\n\n", "So x = 2.\n\n", "The answer is \\boxed{7}.\n"]


def test_cheap_imports_do_not_import_torch():
    code = ("import sys, reasonenv.shaping.fake_services, reasonenv.shaping.prover, "
            "reasonenv.shaping.service_factory, reasonenv.models.ref_scorer, reasonenv.models.prm; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- fakes
def test_hash_ref_scorer_valid_deterministic_and_linear():
    ref = HashRefScorer(seed=3)
    assert isinstance(ref, RefLogprobScorer)
    ids = list(range(40, 70))
    steps = [ids[5:12], ids[12:20], ids[20:]]
    inc = []
    for k, st in enumerate(steps):
        ctx = tuple(ids[:5]) + tuple(t for s in steps[:k] for t in s)
        inc.append(ref.logprobs([RefRequest("ep", ctx, tuple(st))])[0])
    assert ref.tokens_forwarded == len(ids)  # each token once
    full = HashRefScorer(seed=3).logprobs([RefRequest(None, tuple(ids[:5]), tuple(ids[5:]))])[0]
    assert np.array_equal(np.concatenate(inc), full)
    assert (full <= 0).all() and (full > -5).all()
    assert not np.array_equal(HashRefScorer(seed=4).logprobs([RefRequest(None, (1,), (2, 3))])[0],
                              HashRefScorer(seed=3).logprobs([RefRequest(None, (1,), (2, 3))])[0])
    ref.release("ep")
    ref.logprobs([RefRequest("ep", tuple(ids[:29]), (ids[29],))])
    assert ref.tokens_forwarded == 2 * len(ids)  # forgotten: forwarded fresh


def test_heuristic_prm_shape_bounds_monotone_causal():
    prm = HeuristicPRM()
    assert isinstance(prm, PRMScorer)
    full, part, other = prm.score([(QUESTION, STEPS), (QUESTION, STEPS[:2]), ("Other?", STEPS)])
    assert full.shape == (3, 3) and part.shape == (2, 3)
    assert ((full > 0) & (full < 1)).all() and (np.diff(full, axis=1) >= 0).all()
    assert np.array_equal(full[:2], part)
    assert not np.array_equal(full, other)
    assert prm.score([(QUESTION, [])])[0].shape == (0, 3)
    with pytest.raises(ValueError, match="ascending"):
        HeuristicPRM((0.9, 0.1))


def test_function_sampler_counts():
    s = FunctionSampler(lambda p, i, seed: f"{p}{i}{seed}")
    assert isinstance(s, ContinuationSampler)
    assert s.sample(["a", "b"], 2, seed=1) == [["a01", "a11"], ["b01", "b11"]]
    assert (s.calls, s.prompts_seen) == (1, 2)


# ----------------------------------------------------------------------------- HF reference scorer
def _manual_logprobs(model, full, start):
    import torch

    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), -1)
    return np.array([float(logp[p - 1, full[p]]) for p in range(start, len(full))])


def _split(tok, prompt, steps):
    p = tok.encode(prompt, add_special_tokens=False)
    return p, [tok.encode(s, add_special_tokens=False) for s in steps]


def test_hf_ref_incremental_equals_full_forward_and_is_linear(tiny_tok, tiny_lm):
    from reasonenv.models.ref_scorer import HFRefScorer

    prompt, steps = _split(tiny_tok, "Question: " + QUESTION + "\nAnswer:", STEPS)
    full = prompt + [t for s in steps for t in s]
    manual = _manual_logprobs(tiny_lm, full, len(prompt))

    ref = HFRefScorer(tiny_lm, tiny_tok)
    assert isinstance(ref, RefLogprobScorer)
    one = ref.logprobs([RefRequest(None, tuple(prompt), tuple(full[len(prompt):]))])[0]
    np.testing.assert_allclose(one, manual, atol=1e-4)
    assert ref.cached_keys() == []

    ref = HFRefScorer(tiny_lm, tiny_tok)
    inc, ctx = [], list(prompt)
    for s in steps:
        inc.append(ref.logprobs([RefRequest((0, 1), tuple(ctx), tuple(s))])[0])
        ctx += s
    np.testing.assert_allclose(np.concatenate(inc), manual, atol=1e-4)
    assert ref.tokens_forwarded == len(full)  # O(L): not sum of prefix lengths
    assert ref.forward_calls == len(steps)


def test_hf_ref_batched_fresh_then_incremental_with_padding(tiny_tok, tiny_lm):
    from reasonenv.models.ref_scorer import HFRefScorer

    seqs = [_split(tiny_tok, p, s) for p, s in [
        ("Question: Tom has 5 apples", ["and buys 3 more.\n\n", "So 8.\n\n", "\\boxed{8}"]),
        ("Let x = 2.", ["Then 2x + 1 = 5.\n\n", "#### 5"]),
        ("What is 3 + 4? First, 3 + 4 = 7. The answer is", [" 7", "."]),
    ]]
    ref = HFRefScorer(tiny_lm, tiny_tok, batch_size=8)
    n_rounds = max(len(s) for _, s in seqs)
    got = [[] for _ in seqs]
    for k in range(n_rounds):
        reqs, who = [], []
        for i, (p, s) in enumerate(seqs):
            if k < len(s):
                ctx = p + [t for x in s[:k] for t in x]
                reqs.append(RefRequest(("slot", i), tuple(ctx), tuple(s[k])))
                who.append(i)
        for i, lp in zip(who, ref.logprobs(reqs)):
            got[i].append(lp)
    assert ref.forward_calls == n_rounds  # one batched fresh forward, then one per later round
    for (p, s), g in zip(seqs, got):
        full = p + [t for x in s for t in x]
        np.testing.assert_allclose(np.concatenate(g), _manual_logprobs(tiny_lm, full, len(p)), atol=1e-4)
    assert ref.tokens_forwarded == sum(len(p) + sum(map(len, s)) for p, s in seqs)


def test_hf_ref_release_mismatch_lru_and_empty_context(tiny_tok, tiny_lm):
    from reasonenv.models.ref_scorer import HFRefScorer

    ref = HFRefScorer(tiny_lm, tiny_tok, max_cached=2)
    a, b = tuple(range(60, 70)), tuple(range(80, 85))
    ref.logprobs([RefRequest("a", a, b)])
    assert ref.cached_keys() == ["a"]
    ref.release("a")
    assert ref.cached_keys() == []
    n = ref.tokens_forwarded
    ref.logprobs([RefRequest("a", a + b, (90,))])
    assert ref.tokens_forwarded - n == len(a + b) + 1  # released: forwarded fresh
    diverged = ref.logprobs([RefRequest("a", a + (99,) + b[1:], (91, 92))])[0]  # not an extension
    np.testing.assert_allclose(diverged, _manual_logprobs(tiny_lm, list(a + (99,) + b[1:] + (91, 92)), 15),
                               atol=1e-4)
    ref.logprobs([RefRequest("b", a, b), RefRequest("c", a, b)])
    assert ref.cached_keys() == ["b", "c"]  # LRU of 2: "a" dropped
    lp = ref.logprobs([RefRequest(None, (), (60, 61))])[0]  # empty context: BOS prepended
    bos = tiny_tok.bos_token_id
    np.testing.assert_allclose(lp, _manual_logprobs(tiny_lm, [bos, 60, 61], 1), atol=1e-4)
    assert ref.logprobs([RefRequest("b", a + b, ())])[0].shape == (0,)


# ----------------------------------------------------------------------------- HF PRMs
def test_hf_step_prm_lm_head_probabilities_causal_and_manual(tiny_tok, tiny_lm):
    import torch

    from reasonenv.models.hf_utils import encode_steps
    from reasonenv.models.prm import HFStepPRM

    prm = HFStepPRM(tiny_lm, tiny_tok)
    assert isinstance(prm, PRMScorer) and prm.quantiles == (0.5,)
    full, part, empty = prm.score([(QUESTION, STEPS), (QUESTION, STEPS[:2]), (QUESTION, [])])
    assert full.shape == (3, 1) and part.shape == (2, 1) and empty.shape == (0, 1)
    assert ((full >= 0) & (full <= 1)).all()
    np.testing.assert_allclose(full[:2], part, atol=1e-5)  # causal, and padding-independent
    ids, pos = encode_steps(tiny_tok, QUESTION, STEPS, tag_ids=prm.tag_ids)
    with torch.no_grad():
        logits = tiny_lm(torch.tensor([ids])).logits[0]
    good, bad = tiny_tok.encode("+"), tiny_tok.encode("-")
    manual = torch.softmax(logits[pos][:, good + bad], -1)[:, 0].numpy()
    np.testing.assert_allclose(full[:, 0], manual, atol=1e-5)
    with pytest.raises(ValueError, match="good_token"):
        HFStepPRM(tiny_lm, tiny_tok, good_token="boxed answer")


def test_hf_step_prm_token_classification_head(tiny_tok):
    import torch
    from transformers import LlamaConfig, LlamaForTokenClassification

    from reasonenv.models.prm import HFStepPRM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tiny_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, num_labels=2,
                      pad_token_id=tiny_tok.pad_token_id)
    prm = HFStepPRM(LlamaForTokenClassification(cfg).eval(), tiny_tok, head="token_classification",
                    quantiles=(0.1, 0.5, 0.9))
    full, part = prm.score([(QUESTION, STEPS), (QUESTION, STEPS[:1])])
    assert full.shape == (3, 3) and ((full >= 0) & (full <= 1)).all()
    assert (full[:, 0] == full[:, 2]).all()  # point estimate in every column
    np.testing.assert_allclose(full[:1], part, atol=1e-5)


def test_quantile_head_prm_monotone_trains_and_round_trips(tiny_tok, tiny_lm, tmp_path):
    from reasonenv.models.prm import QuantileHeadPRM

    prm = QuantileHeadPRM(copy.deepcopy(tiny_lm), tiny_tok, quantiles=(0.1, 0.5, 0.9))
    assert isinstance(prm, PRMScorer)
    items = [(QUESTION, STEPS), ("Let x = 2.", ["Then 2x + 1 = 5.\n\n", "#### 5"])]
    targets = [[0.9, 0.8, 1.0], [0.2, 0.1]]
    before = prm.score(items)
    losses = prm.fit(items, targets, epochs=60, lr=0.05)
    after = prm.score(items)
    assert losses[-1] < 0.6 * losses[0]
    for s in after:
        assert ((s > 0) & (s < 1)).all() and (np.diff(s, axis=1) >= 0).all()
    err = lambda sc: sum(np.abs(s[:, 1] - np.array(t)).sum() for s, t in zip(sc, targets))  # noqa: E731
    assert err(after) < 0.5 * err(before)
    np.testing.assert_allclose(prm.score([items[0][:1] + (STEPS[:2],)])[0], after[0][:2], atol=1e-5)
    prm.save_pretrained(str(tmp_path / "qprm"))
    loaded = QuantileHeadPRM.from_pretrained(str(tmp_path / "qprm"))
    assert loaded.quantiles == (0.1, 0.5, 0.9)
    np.testing.assert_allclose(loaded.score(items)[0], after[0], atol=1e-5)
    with pytest.raises(ValueError, match="ascending"):
        QuantileHeadPRM(tiny_lm, tiny_tok, quantiles=(0.5, 0.1))


# ----------------------------------------------------------------------------- HF sampler
def test_hf_sampler_deterministic_per_prompt_and_rng_restored(tiny_tok, tiny_lm):
    import torch

    from reasonenv.models.sampler import HFSampler

    s = HFSampler(tiny_lm, tiny_tok, max_new_tokens=6, batch_size=2)
    assert isinstance(s, ContinuationSampler)
    state = torch.random.get_rng_state()
    ab = s.sample(["What is 3 + 4?", "Let x = 2."], 3, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())
    assert [len(x) for x in ab] == [3, 3] and all(isinstance(t, str) for x in ab for t in x)
    assert s.sample(["Let x = 2."], 3, seed=5) == [ab[1]]  # independent of the other prompts
    assert s.sample(["What is 3 + 4?", "Let x = 2."], 3, seed=6) != ab
    # the prover's compute: every sampled token, the eos included, counted once per row
    counter = HFSampler(tiny_lm, tiny_tok, max_new_tokens=6, batch_size=2)
    counter._generate = lambda contexts, seeds: [[5, 6, 7][: 1 + r % 3] for r in range(len(contexts))]
    counter.sample(["a", "b"], 3, seed=0)
    assert counter.tokens_generated == 3 * (1 + 2)  # 6 rows in chunks of two: 1 and 2 tokens each
    greedy = HFSampler(tiny_lm, tiny_tok, temperature=0, max_new_tokens=4)
    g = greedy.sample(["Let x"], 2, seed=0)[0]
    assert g[0] == g[1]


# ----------------------------------------------------------------------------- build_services
def test_build_services_defaults_and_passthrough():
    from reasonenv.grading import grade_batch

    assert build_services(None).grader is grade_batch
    svc = Services(prm=HeuristicPRM())
    assert build_services(svc) is svc
    built = build_services({"ref_model": "hash", "prm": "heuristic"})
    assert isinstance(built.ref_logprobs, HashRefScorer) and isinstance(built.prm, HeuristicPRM)
    assert built.prover is None and built.grader is grade_batch
    prover, grader = MCProver(FunctionSampler(lambda p, i, s: "")), (lambda pairs: [False] * len(pairs))
    built = build_services({"prover": prover, "grader": grader, "prm": None})
    assert built.prover is prover and built.grader is grader and built.prm is None


@pytest.mark.parametrize("spec, match", [
    ({"reward_model": "x"}, r"unknown services key 'reward_model'; valid keys: \['grader', 'prm'"),
    ({"prm": "nope"}, r"services\['prm'\]='nope'"),
    ({"prm": {"model": "/x", "kind": "weird"}}, r"services\['prm'\]=.*weird"),
    ({"ref_model": 123}, r"services\['ref_model'\]=123"),
    ({"ref_model": {"path": "x"}}, r"services\['ref_model'\].*needs \"model\""),
    ({"prover": "big"}, r"services\['prover'\]='big'"),
    ({"prover": {"model": "m", "temp": 1}}, r"unknown services\['prover'\] key\(s\) \['temp'\]"),
    ({"grader": 5}, r"services\['grader'\]=5"),
    ("hash", r"must be None, a Services or a dict"),
])
def test_build_services_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        build_services(spec)


def test_build_services_model_paths(tiny_tok, tiny_lm, tmp_path):
    from reasonenv.models.prm import HFStepPRM
    from reasonenv.models.ref_scorer import HFRefScorer
    from reasonenv.models.sampler import HFSampler

    path = tmp_path / "tiny"
    tiny_lm.save_pretrained(path)
    tiny_tok.save_pretrained(path)
    grader = lambda pairs: [r.endswith("7") for r, _ in pairs]  # noqa: E731
    svc = build_services({
        "ref_model": str(path),
        "prm": {"model": str(path), "kind": "step_tag"},
        "prover": {"model": str(path), "max_new_tokens": 3, "temperature": 1.0},
        "grader": grader,
    })
    assert isinstance(svc.ref_logprobs, HFRefScorer) and isinstance(svc.prm, HFStepPRM)
    assert isinstance(svc.prover, MCProver) and isinstance(svc.prover.sampler, HFSampler)
    assert svc.prover.grader is grader
    with pytest.raises(ValueError, match=r"\['K', 'm'\]: K and m are options of the pav shaper"):
        build_services({"prover": {"model": str(path), "m": 4, "K": 2}})
    assert svc.prover.sampler.max_new_tokens == 3
    p = Problem(id="b/0", question=QUESTION, answer="7", source="t")
    q = svc.prover.q_values([ProverRequest(p, QUESTION, "First")], K=2, m=4)
    assert len(q) == 1 and 0.0 <= q[0] <= 1.0
    lp = svc.ref_logprobs.logprobs([RefRequest(None, (60, 61), (62,))])[0]
    np.testing.assert_allclose(lp, _manual_logprobs(tiny_lm, [60, 61, 62], 2), atol=1e-4)


def test_build_services_prover_can_grade_like_a_lenient_env(tiny_tok, tiny_lm, tmp_path):
    """{"last_number_fallback": true}: the prover's continuations are graded by their last number."""
    path = tmp_path / "tiny"
    tiny_lm.save_pretrained(path)
    tiny_tok.save_pretrained(path)
    strict = build_services({"prover": {"model": str(path)}}).prover
    lenient = build_services({"prover": {"model": str(path), "last_number_fallback": True}}).prover
    from reasonenv.grading import grade_batch

    pairs = [("so it is 7", "7")]
    assert strict.grader is None  # the default, strict grade_batch at call time
    assert [v.correct for v in grade_batch(pairs)] == [False]
    assert [v.correct for v in lenient.grader(pairs)] == [True]


def test_services_and_the_pipeline_are_shared_not_copied_when_a_spec_is_read(tiny_tok, tiny_lm):
    """gymnasium deep-copies an env's spec (kwargs included) on every read through a wrapper;
    the group env reads it at start-up. The models behind the services must not be copied."""
    import gymnasium as gym

    import reasonenv  # noqa: F401  (registers the envs)
    from reasonenv.models.prm import QuantileHeadPRM
    from reasonenv.models.ref_scorer import HFRefScorer
    from reasonenv.models.sampler import HFSampler
    from reasonenv.models.value_head import ValueHeadProver
    from reasonenv.shaping.pipeline import RewardPipeline

    ref = HFRefScorer(tiny_lm, tiny_tok)
    shared = [ref, QuantileHeadPRM(copy.deepcopy(tiny_lm), tiny_tok),
              MCProver(HFSampler(tiny_lm, tiny_tok), seed=0),
              ValueHeadProver(copy.deepcopy(tiny_lm), tiny_tok, K=2, seed=0),
              RewardPipeline([{"name": "prl", "eta": 2.0}], {"ref_model": ref})]
    for s in shared:
        assert copy.deepcopy(s) is s, type(s).__name__
        assert copy.deepcopy({"x": [s]})["x"][0] is s  # also inside containers (spec kwargs)
    venv = reasonenv.make_group_env("reasonenv/MathSteps-v0", 2, 2, autoreset=False,
                                    problems="procedural:arithmetic?difficulty=1", tokenizer=tiny_tok,
                                    shapers=[{"name": "prl", "eta": 2.0}], services={"ref_model": ref})
    pipe = venv.envs[0].unwrapped.pipeline
    assert venv.spec.kwargs["shapers"] is pipe and venv.envs[1].spec.kwargs["shapers"] is pipe
    assert pipe.services.ref_logprobs is ref
    env = gym.make("reasonenv/MathSteps-v0", problems="procedural:arithmetic?difficulty=1",
                   tokenizer=tiny_tok, shapers=[{"name": "prl", "eta": 2.0}], services={"ref_model": ref})
    assert env.spec.kwargs["services"]["ref_model"] is ref
