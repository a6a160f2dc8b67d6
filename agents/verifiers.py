"""Verifiers trained from Monte-Carlo rollouts: PROGRS's quantile PRM and PAV's value head.

The pipeline behind ``reasonenv verifier collect`` / ``train`` (docs/verifiers.md):

1. :func:`collect` samples ``n`` responses per problem from a base policy through the real env
   (:func:`reasonenv.evaluation.evaluate.evaluate`: same prompts, segmentation, budgets and
   grading as RL), then for every step prefix but the complete response, the bare prompt
   included, counts how many of ``m`` continuations of the same base policy reach the answer
   (:class:`~reasonenv.shaping.prover.MCProver`: one batched sampler call per chunk of
   problems, cached by prefix). The complete response's count is ``m * outcome`` (its verdict;
   nothing is sampled), as PAV uses the outcome at the last step. One JSONL line per response.
2. Targets: a PRM's target of step k is the MC success rate ``c_k / m`` after steps 1..k
   (:func:`prm_targets`); PAV's target of prefix k is the unbiased Best-of-K estimate
   ``bok_unbiased(c_k, m, K)`` (:func:`value_targets`). Counts are stored, not targets, so
   one collection serves every ``K <= m``.
3. :func:`train_verifier` fits a :class:`~reasonenv.models.prm.QuantileHeadPRM` (pinball loss)
   or a :class:`~reasonenv.models.value_head.ValueHeadProver` on the training problems and
   reports its quality on the held-out problems (:mod:`reasonenv.agents.verifier_metrics`).

Example:
    >>> rec = {"steps": ["a\\n\\n", "b"], "c": [2, 1, 4], "m": 4, "outcome": 1}
    >>> prm_targets(rec), [round(v, 4) for v in value_targets(rec, K=2)]
    ([0.25, 1.0], [0.8333, 0.5])
    >>> prefixes(rec)
    ['', 'a\\n\\n']
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reasonenv.shaping.prover import bok_unbiased

FORMAT = "reasonenv-mc-targets/1"
RECORDS_FILE = "mc_targets.jsonl"
CONFIG_FILE = "collect_config.json"
STATS_FILE = "stats.json"
ROLLOUTS_DIR = "rollouts"  # the evaluate() run folder of the base policy's responses
KINDS = ("prm", "value")


# -- the data: prefixes, targets, the problem split ----------------------------------------------
def prefixes(record: Mapping[str, Any]) -> list[str]:
    """The sampled prefixes of a response: ``"".join(steps[:k])`` for ``k = 0..K-1``.

    Prefix 0 is the bare prompt (``""``); the complete response (k = K) is not sampled.
    """
    steps = list(record["steps"])
    return ["".join(steps[:k]) for k in range(len(steps))]


def prm_targets(record: Mapping[str, Any]) -> list[float]:
    """Per step k = 1..K, the MC success rate ``c[k] / m`` after steps 1..k (last: the outcome)."""
    m = int(record["m"])
    return [int(c) / m for c in record["c"][1: len(record["steps"]) + 1]]


def value_targets(record: Mapping[str, Any], K: int) -> list[float]:
    """Per sampled prefix k = 0..K_steps-1, ``bok_unbiased(c[k], m, K)`` (PAV's Q^{BoK})."""
    m = int(record["m"])
    return [bok_unbiased(int(c), m, K) for c in record["c"][: len(record["steps"])]]


def _unit_hash(seed: int, problem_id: str) -> float:
    """A problem id's place in [0, 1): ``sha256(seed, id)`` read as a fraction."""
    digest = hashlib.sha256(f"{int(seed)}\0{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_problems(ids: Sequence[str], val_frac: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(train ids, validation ids)``: whole problems, never prefixes of one problem on both sides.

    A problem is held out when its :func:`_unit_hash` is below ``val_frac``, so the split is
    deterministic and a problem lands on the same side whatever else is in the data (about
    ``val_frac`` of the problems are held out, not exactly). When that holds out nothing but
    ``val_frac > 0``, the problem with the lowest hash is held out.

    Raises:
        ValueError: ``val_frac`` outside [0, 1), or a split that leaves no training problem.

    Example:
        >>> train, val = split_problems(["a", "b", "c", "d"], 0.25)
        >>> len(val) >= 1, sorted(train + val), set(train) & set(val)
        (True, ['a', 'b', 'c', 'd'], set())
    """
    if isinstance(val_frac, bool) or not isinstance(val_frac, (int, float)) or not 0.0 <= val_frac < 1.0:
        raise ValueError(f"val_frac must be in [0, 1), got {val_frac!r}")
    u = {i: _unit_hash(seed, i) for i in set(ids)}
    val = {i for i, h in u.items() if h < val_frac}
    if val_frac > 0 and not val and u:
        val = {min(u, key=lambda i: (u[i], i))}
    train = set(u) - val
    if not train:
        raise ValueError(f"val_frac={val_frac} of {len(u)} problem(s) leaves no training "
                         "problem; collect more problems or lower val_frac")
    return sorted(train), sorted(val)


def read_records(data_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``mc_targets.jsonl`` in a collect folder (a cut last line is skipped)."""
    path = Path(data_dir) / RECORDS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist: is {str(data_dir)!r} a "
                                "`reasonenv verifier collect` folder?")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def read_collect_config(data_dir: str | Path) -> dict[str, Any]:
    """The settings a collect folder was written with (``collect_config.json``)."""
    path = Path(data_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist: is {str(data_dir)!r} a "
                                "`reasonenv verifier collect` folder?")
    return json.loads(path.read_text(encoding="utf-8"))


# -- collection ------------------------------------------------------------------------------------
@dataclass
class CollectConfig:
    """What ``reasonenv verifier collect`` samples (saved as ``collect_config.json``)."""

    policy: str = ""  # base policy: a model folder or name (also the default base of `train`)
    problems: str = "procedural:arithmetic?difficulty=1"  # problem source spec
    limit: int = 16  # problems (procedural sources are infinite)
    n: int = 4  # responses per problem
    m: int = 8  # continuations per prefix (PAV's K must be <= m)
    seed: int = 0  # problems, policy sampling and continuations
    temperature: float = 1.0  # of the responses and the continuations
    top_p: float = 1.0
    max_tokens: int = 128  # response budget of the env
    max_step_tokens: int = 64  # one step's budget for the policy
    max_new_tokens: int | None = None  # continuation budget (default: max_tokens)
    split: str = "\n\n"  # step delimiter of the env (PAV's split must match)
    prompt: str | None = None  # prompt template (default: the env's)
    chat: str = "auto"  # chat template: "on", "off", "auto" (when the tokenizer has one)
    last_number_fallback: bool = False  # grade like a lenient env (responses and continuations)
    batch_problems: int = 4  # problems per env batch and per batched prover call
    sampler_batch: int = 64  # continuation rows per generate() call (bigger: fewer Python loops)
    format: str = FORMAT

    def __post_init__(self) -> None:
        for name in ("limit", "n", "m", "max_tokens", "max_step_tokens", "batch_problems", "sampler_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.max_new_tokens is None:
            self.max_new_tokens = self.max_tokens
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if self.chat not in ("auto", "on", "off"):
            raise ValueError(f"chat must be 'auto', 'on' or 'off', got {self.chat!r}")
        from reasonenv.segmentation import Segmenter

        Segmenter(self.split)  # an unknown split lists the valid ones


@dataclass
class CollectStats:
    """Compute spent by a collection (totals over every call that wrote the folder)."""

    responses: int = 0  # policy samples with a record
    policy_tokens: int = 0  # tokens of those responses (characters for a text-only policy)
    prefixes: int = 0  # (response, prefix) pairs that needed a value, bare prompts included
    prefixes_sampled: int = 0  # distinct prefixes actually sampled (the rest were cache hits)
    continuations: int = 0  # prefixes_sampled * m
    continuation_tokens: int = 0  # tokens of the continuations (re-encoded text; EOS not counted)
    rollout_seconds: float = 0.0
    mc_seconds: float = 0.0
    accuracy: float = 0.0  # fraction of the responses that are correct
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, other: CollectStats) -> CollectStats:
        """Field-wise sum (accuracy is recomputed by the caller)."""
        d = {k: getattr(self, k) + getattr(other, k) for k in
             ("responses", "policy_tokens", "prefixes", "prefixes_sampled", "continuations",
              "continuation_tokens", "rollout_seconds", "mc_seconds")}
        return CollectStats(**d, accuracy=self.accuracy, extra=dict(self.extra))


class CountingSampler:
    """Wraps a ``ContinuationSampler`` and counts continuations and their tokens.

    Args:
        sampler: The sampler.
        tokenizer: Counts tokens by re-encoding each continuation; None counts characters.

    Example:
        >>> from reasonenv.shaping.fake_services import FunctionSampler
        >>> s = CountingSampler(FunctionSampler(lambda p, i, seed: "ab"))
        >>> _ = s.sample(["x", "y"], 3, seed=0)
        >>> s.continuations, s.tokens
        (6, 12)
    """

    def __init__(self, sampler: Any, tokenizer: Any | None = None) -> None:
        self.sampler, self.tokenizer = sampler, tokenizer
        self.continuations = 0
        self.tokens = 0

    def sample(self, prompts: Sequence[str], n: int, *, seed: int) -> list[list[str]]:
        """``sampler.sample(prompts, n, seed=seed)``, counted."""
        out = self.sampler.sample(prompts, n, seed=seed)
        for conts in out:
            self.continuations += len(conts)
            for c in conts:
                self.tokens += (len(self.tokenizer.encode(c, add_special_tokens=False))
                                if self.tokenizer is not None else len(c))
        return out


def _policy_and_sampler(cfg: CollectConfig) -> tuple[Any, Any, Any]:
    """The HF policy, a continuation sampler sharing its weights, and the tokenizer."""
    from reasonenv.agents.hf import HFPolicy, HFPolicyConfig
    from reasonenv.models.sampler import HFSampler

    policy = HFPolicy(cfg.policy, None, HFPolicyConfig(
        temperature=cfg.temperature, top_p=cfg.top_p, max_step_tokens=cfg.max_step_tokens,
        split=cfg.split, seed=cfg.seed))
    sampler = HFSampler(policy.model, policy.tokenizer, temperature=cfg.temperature,
                        top_p=cfg.top_p, max_new_tokens=int(cfg.max_new_tokens or cfg.max_tokens),
                        batch_size=cfg.sampler_batch)
    return policy, sampler, policy.tokenizer


def _check_resume(out: Path, plain: dict[str, Any], resume: bool) -> None:
    cfg_path, rec_path = out / CONFIG_FILE, out / RECORDS_FILE
    if resume and cfg_path.is_file() and rec_path.is_file():
        old = json.loads(cfg_path.read_text(encoding="utf-8"))
        diff = sorted(k for k in set(old) | set(plain) if k not in ("batch_problems", "sampler_batch")
                      and old.get(k) != plain.get(k))
        if diff:
            raise ValueError(f"{str(out)!r} holds a collection with other settings ("
                             + ", ".join(f"{k}: {old.get(k)!r} vs {plain.get(k)!r}" for k in diff)
                             + "); use another --out or --no-resume")
    elif not resume:
        for p in (rec_path, out / STATS_FILE):
            p.unlink(missing_ok=True)


def collect(cfg: CollectConfig, out_dir: str | Path, *, policy: Any = None, sampler: Any = None,
            tokenizer: Any = None, grader: Any = None, resume: bool = True,
            progress: bool = False) -> CollectStats:
    """Sample responses, count MC successes per prefix, write ``mc_targets.jsonl``.

    Args:
        cfg: The settings.
        out_dir: The folder: ``collect_config.json``, ``mc_targets.jsonl`` (one line per
            response, appended per chunk of problems), ``stats.json``, and ``rollouts/`` (the
            base policy's :func:`~reasonenv.evaluation.evaluate.evaluate` run).
        policy, sampler, tokenizer: The base policy, its continuation sampler and the env's
            tokenizer; by default an :class:`~reasonenv.agents.hf.HFPolicy` of ``cfg.policy``
            and an :class:`~reasonenv.models.sampler.HFSampler` on the same weights.
        grader: Grades continuations (default ``grade_batch``, lenient with
            ``cfg.last_number_fallback``).
        resume: Keep what an interrupted call with the same settings wrote: finished problems
            are neither re-sampled nor re-counted.
        progress: Progress bar of the rollouts.

    Returns:
        The folder's :class:`CollectStats` (also in ``stats.json``).

    Raises:
        ValueError: Resuming a folder written with other settings (names the keys).

    Example:
        >>> collect(CollectConfig(policy="runs/tiny/sft", m=8), "runs/mc")  # doctest: +SKIP
    """
    from reasonenv.evaluation.evaluate import benchmark_problems, evaluate
    from reasonenv.shaping.protocols import ProverRequest
    from reasonenv.shaping.prover import MCProver

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plain = json.loads(json.dumps(asdict(cfg)))
    _check_resume(out, plain, resume)
    (out / CONFIG_FILE).write_text(json.dumps(plain, indent=2), encoding="utf-8")
    if policy is None:
        policy, sampler, tokenizer = _policy_and_sampler(cfg)
    if sampler is None:
        raise ValueError("collect(policy=...) needs sampler= too (the base policy's continuations)")
    if grader is None and cfg.last_number_fallback:
        import functools

        from reasonenv.grading import grade_batch

        grader = functools.partial(grade_batch, last_number_fallback=True)
    chat = cfg.chat == "on" or (cfg.chat == "auto" and bool(getattr(tokenizer, "chat_template", None)))
    env_kwargs: dict[str, Any] = {"max_tokens": cfg.max_tokens, "split": cfg.split,
                                  "last_number_fallback": cfg.last_number_fallback,
                                  "max_steps": max(16, cfg.max_tokens // 16),
                                  "prompt": {"chat": chat, **({"template": cfg.prompt} if cfg.prompt else {})}}
    if tokenizer is not None:
        env_kwargs["tokenizer"] = tokenizer
    result = evaluate(policy, benchmarks=[cfg.problems], n=cfg.n, limit=cfg.limit,
                      batch_problems=cfg.batch_problems, env_kwargs=env_kwargs,
                      out_dir=out / ROLLOUTS_DIR, resume=resume, progress=progress, seed=cfg.seed,
                      n_resamples=200, run_config={"policy": cfg.policy, "temperature": cfg.temperature})
    problems = {p.id: p for p in benchmark_problems(cfg.problems, cfg.limit, seed=cfg.seed)}
    done = _finished(out / RECORDS_FILE, cfg.n)
    counting = CountingSampler(sampler, tokenizer)
    prover = MCProver(counting, grader, seed=cfg.seed)
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for s in result.samples:
        by_problem.setdefault(s["problem_id"], []).append(s)
    todo = [pid for pid in problems if pid in by_problem and pid not in done]
    fresh = CollectStats(rollout_seconds=result.seconds)
    t0 = time.perf_counter()
    for start in range(0, len(todo), cfg.batch_problems):
        chunk = [s for pid in todo[start: start + cfg.batch_problems] for s in by_problem[pid]]
        requests = [ProverRequest(problems[s["problem_id"]], s["prompt"], prefix)
                    for s in chunk for prefix in prefixes(s)]
        counts = prover.counts(requests, m=cfg.m) if requests else []
        lines, at = [], 0
        for s in chunk:
            k = len(s["steps"])
            c = [int(x) for x in counts[at: at + k]] + [cfg.m * int(bool(s["correct"]))]
            at += k
            lines.append({"problem_id": s["problem_id"], "sample": s["sample"],
                          "benchmark": cfg.problems, "question": problems[s["problem_id"]].question,
                          "answer": s["answer"], "prompt": s["prompt"], "steps": list(s["steps"]),
                          "outcome": int(bool(s["correct"])), "truncated": bool(s["truncated"]),
                          "n_tokens": int(s["n_tokens"]), "m": cfg.m, "c": c})
            fresh.responses += 1
            fresh.policy_tokens += int(s["n_tokens"])
            fresh.prefixes += k
        _append(out / RECORDS_FILE, lines)
    fresh.mc_seconds = time.perf_counter() - t0
    fresh.prefixes_sampled = int(prover.cache_misses)
    fresh.continuations, fresh.continuation_tokens = counting.continuations, counting.tokens
    stats = _accumulate(out, fresh, resume=resume and bool(done))
    return stats


def _finished(path: Path, n: int) -> set[str]:
    """Problem ids with all ``n`` records; the file is rewritten without the others."""
    if not path.is_file():
        return set()
    groups: dict[str, dict[int, dict[str, Any]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # cut by an interruption
            continue
        groups.setdefault(rec["problem_id"], {})[int(rec["sample"])] = rec
    done = {pid for pid, recs in groups.items() if len(recs) == n}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(groups[pid][j]) + "\n" for pid in groups if pid in done
                           for j in sorted(groups[pid])), encoding="utf-8")
    os.replace(tmp, path)
    return done


def _append(path: Path, lines: Sequence[Mapping[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in lines))
        f.flush()
        os.fsync(f.fileno())


def _accumulate(out: Path, fresh: CollectStats, *, resume: bool) -> CollectStats:
    """This call's stats added to what ``stats.json`` holds from earlier calls; written back."""
    path = out / STATS_FILE
    total = fresh
    if resume and path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        total = CollectStats(**{k: v for k, v in old.items() if k in CollectStats.__dataclass_fields__}).add(fresh)
    recs = read_records(out)
    total.accuracy = sum(r["outcome"] for r in recs) / len(recs) if recs else 0.0
    total.extra = {"records": len(recs), "problems": len({r["problem_id"] for r in recs}),
                   "this_call": {k: v for k, v in asdict(fresh).items() if k not in ("extra", "accuracy")}}
    path.write_text(json.dumps(asdict(total), indent=2), encoding="utf-8")
    return total


# -- training --------------------------------------------------------------------------------------
@dataclass
class TrainSettings:
    """What ``reasonenv verifier train`` fits (saved in ``verifier.json``)."""

    kind: str = "prm"  # "prm": QuantileHeadPRM (pinball); "value": ValueHeadProver (BCE on BoK)
    K: int = 4  # Best-of-K of the value targets (must equal the pav shaper's K; <= m)
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)  # PRM quantile levels (PROGRS picks one)
    epochs: int = 30
    lr: float = 1e-2
    train_base: bool = False  # also fine-tune the base model (default: frozen, only the head)
    val_frac: float = 0.25  # fraction of problems held out
    split_seed: int = 0
    batch_size: int = 8
    seed: int = 0  # head initialisation

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        self.quantiles = tuple(float(q) for q in self.quantiles)
        for name in ("K", "epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")


def prm_dataset(records: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[str, list[str]]], list[list[float]]]:
    """PRM items ``(question, steps)`` and per-step targets of the responses with steps."""
    recs = [r for r in records if r["steps"]]
    return [(r["question"], list(r["steps"])) for r in recs], [prm_targets(r) for r in recs]


def value_dataset(records: Sequence[Mapping[str, Any]], K: int) -> tuple[list[Any], list[float], list[bool]]:
    """Value-head requests (one per sampled prefix), their BoK targets and the responses' outcomes."""
    from reasonenv.problems.base import Problem
    from reasonenv.shaping.protocols import ProverRequest

    reqs, ys, outcomes = [], [], []
    for r in records:
        prob = Problem(id=r["problem_id"], question=r["question"], answer=r["answer"], source=r["benchmark"])
        for prefix, y in zip(prefixes(r), value_targets(r, K)):
            reqs.append(ProverRequest(prob, r["prompt"], prefix))
            ys.append(y)
            outcomes.append(bool(r["outcome"]))
    return reqs, ys, outcomes


def check_data(records: Sequence[Mapping[str, Any]], settings: TrainSettings) -> None:
    """Raise ``ValueError`` on data the settings cannot train on (names the field and value)."""
    if not records:
        raise ValueError("the collect folder holds no records")
    ms = {int(r["m"]) for r in records}
    if settings.kind == "value" and min(ms) < settings.K:
        raise ValueError(f"K={settings.K} needs m >= K continuations per prefix; the data has m={min(ms)}")


def train_verifier(records: Sequence[Mapping[str, Any]], base: Any, tokenizer: Any,
                   settings: TrainSettings, *, corrupted: Sequence[Mapping[str, Any]] = (),
                   log: Any = None) -> tuple[Any, dict[str, Any]]:
    """Fit a verifier on the training problems; measure it on the held-out ones.

    Args:
        records: Lines of ``mc_targets.jsonl``.
        base: The base model (a loaded transformers model or a folder).
        tokenizer: Its tokenizer (None with a folder).
        settings: What to fit.
        corrupted: Worked solutions to localise errors in, ``{"problem_id", "question",
            "prompt", "steps", "first_error_step", "worked_steps"}``
            (:func:`reasonenv.agents.verifier_metrics.corrupted_solutions`); only those of
            held-out problems are used.
        log: Called with one line of text per stage (e.g. ``print``); None = silent.

    Returns:
        ``(verifier, metrics)``: the trained ``QuantileHeadPRM`` / ``ValueHeadProver`` and a
        JSON-ready dict (:func:`reasonenv.agents.verifier_metrics.quality`).
    """
    from reasonenv.agents import verifier_metrics as vm

    check_data(records, settings)
    say = log or (lambda line: None)
    train_ids, val_ids = split_problems([r["problem_id"] for r in records], settings.val_frac,
                                        settings.split_seed)
    train_set, val_set = set(train_ids), set(val_ids)
    tr = [r for r in records if r["problem_id"] in train_set]
    va = [r for r in records if r["problem_id"] in val_set]
    held_out = [s for s in corrupted if s["problem_id"] in val_set]
    if settings.kind == "prm":
        from reasonenv.models.prm import QuantileHeadPRM

        verifier: Any = QuantileHeadPRM(base, tokenizer, quantiles=settings.quantiles,
                                        batch_size=settings.batch_size, seed=settings.seed)
        scorer = vm.PRMPoints(verifier, prior=vm.prompt_prior(tr))
        items, ys = prm_dataset(tr)
        fit = lambda: verifier.fit(items, ys, epochs=settings.epochs, lr=settings.lr,  # noqa: E731
                                   train_base=settings.train_base)
    else:
        from reasonenv.models.value_head import ValueHeadProver

        verifier = ValueHeadProver(base, tokenizer, K=settings.K, batch_size=settings.batch_size,
                                   seed=settings.seed)
        scorer = vm.ValuePoints(verifier, settings.K)
        reqs, ys_v, _ = value_dataset(tr, settings.K)
        fit = lambda: verifier.fit(reqs, ys_v, epochs=settings.epochs, lr=settings.lr,  # noqa: E731
                                   train_base=settings.train_base)
    say(f"{len(train_ids)} training / {len(val_ids)} held-out problems; {len(tr)} / {len(va)} responses")
    before = vm.measure(scorer, va, held_out)  # the untrained head, same base and seed
    t0 = time.perf_counter()
    losses = fit() if tr else []
    seconds = time.perf_counter() - t0
    say(f"trained {settings.epochs} epochs in {seconds:.1f} s (loss {losses[0]:.4f} -> {losses[-1]:.4f})"
        if losses else "no training data")
    after = vm.measure(scorer, va, held_out)
    metrics = vm.quality(after, before, vm.constant_points(scorer, tr, va))
    metrics.update(kind=settings.kind, settings=asdict(settings), train_problems=train_ids,
                   val_problems=val_ids, train_responses=len(tr), val_responses=len(va),
                   train_loss=losses, train_seconds=seconds)
    return verifier, metrics
