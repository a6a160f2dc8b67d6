"""The PAV prover: Best-of-K Q-value estimates for response prefixes, with a prefix cache.

Q^{BoK}(prefix) is the probability that the best of K continuations of ``prompt + prefix``
sampled from a base policy reaches the correct answer. From ``m >= K`` Monte-Carlo
continuations with ``c`` correct, :func:`bok_unbiased` is the unbiased estimate
``1 - C(m-c, K) / C(m, K)`` (the chance that a random K-subset of the m samples holds a
correct one); :func:`bok_biased` is the plug-in ``1 - (1 - c/m)^K``, kept for comparison.

* :class:`MCProver` - the default estimator: samples m continuations per distinct prefix in one
  batched sampler call, grades them in one ``grade_batch`` call, caches ``c`` by prefix hash.
* :class:`~reasonenv.models.value_head.ValueHeadProver` (torch) - the optional learned
  estimator behind the same ``ProverService`` interface.

Importing this module does not import torch.

Example:
    >>> round(bok_unbiased(c=5, m=20, K=4), 4), round(bok_biased(c=5, m=20, K=4), 4)
    (0.7183, 0.6836)
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from reasonenv.shaping.protocols import ContinuationSampler, ProverRequest, SharedService


def _check_counts(c: int, m: int, K: int) -> None:
    for name, v in (("c", c), ("m", m), ("K", K)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{name} must be an int, got {v!r}")
    if K < 1:
        raise ValueError(f"K must be >= 1, got K={K}")
    if m < 1 or not 0 <= c <= m:
        raise ValueError(f"need 0 <= c <= m and m >= 1, got c={c}, m={m}")


def bok_unbiased(c: int, m: int, K: int) -> float:
    """Unbiased Best-of-K success estimate ``1 - C(m-c, K) / C(m, K)`` from c correct of m.

    Args:
        c: Correct continuations, ``0 <= c <= m``.
        m: Continuations sampled, ``m >= K``.
        K: Best-of-K size, ``K >= 1``.

    Raises:
        ValueError: On ``m < K`` or counts out of range (the message names the values).

    Example:
        >>> bok_unbiased(0, 20, 4), bok_unbiased(17, 20, 4), bok_unbiased(1, 4, 4)
        (0.0, 1.0, 1.0)
    """
    _check_counts(c, m, K)
    if m < K:
        raise ValueError(f"the unbiased Best-of-K estimate needs m >= K, got m={m}, K={K}")
    return 1.0 - math.comb(m - c, K) / math.comb(m, K)


def bok_biased(c: int, m: int, K: int) -> float:
    """Plug-in Best-of-K estimate ``1 - (1 - c/m)^K`` (biased low; for comparison only).

    Example:
        >>> bok_biased(1, 4, 4) < bok_unbiased(1, 4, 4)
        True
    """
    _check_counts(c, m, K)
    return 1.0 - (1.0 - c / m) ** K


def prefix_key(prompt: str, prefix: str, answer: str = "") -> str:
    """Stable sha256 hex key of ``(prompt, prefix, answer)`` (length-prefixed, unambiguous).

    Example:
        >>> prefix_key("a", "bc") != prefix_key("ab", "c")
        True
    """
    h = hashlib.sha256()
    for part in (prompt, prefix, answer):
        b = part.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


def derive_seed(seed: int, text: str) -> int:
    """A 63-bit seed from ``seed`` and ``text`` via sha256 (unlike ``hash()``, not salted).

    Samplers use it to give each prompt its own random stream, so a prompt's continuations do
    not depend on which other prompts share the call.

    Example:
        >>> derive_seed(0, "abc") == derive_seed(0, "abc") != derive_seed(1, "abc")
        True
    """
    d = hashlib.sha256(f"{int(seed)}\0{text}".encode()).digest()
    return int.from_bytes(d[:8], "little") & ((1 << 63) - 1)


def _is_correct(v: Any) -> bool:
    return bool(v.correct) if hasattr(v, "correct") else bool(v)


class MCProver(SharedService):
    """Monte-Carlo Best-of-K prover with a prefix cache (implements ``ProverService``).

    For each distinct ``(prompt, prefix, answer)`` not yet cached at this ``m``, it samples m
    continuations of ``prompt + prefix`` (all such prefixes in ONE ``sampler.sample`` call),
    grades ``prefix + continuation`` against ``problem.answer`` (all in ONE grader call) and
    caches the correct count c under ``(sha256 key, m)``. The estimate is
    ``bok_unbiased(c, m, K)``; the same prefix always gets the same value whatever the call
    order or batching, provided the sampler's continuations of a prompt depend only on
    ``(prompt, n, seed)`` (true of :class:`~reasonenv.shaping.fake_services.FunctionSampler`
    and :class:`~reasonenv.models.sampler.HFSampler`, which derive a per-prompt seed with
    :func:`derive_seed`).

    Args:
        sampler: The prover's base policy (must be distinct from the policy being trained).
        grader: ``[(response, reference)] -> [Verdict]``; default
            :func:`reasonenv.grading.grade_batch`.
        cache_size: Prefixes kept (least recently used dropped first).
        seed: Passed to every ``sampler.sample`` call.
        max_prefix_chars: If set, a ``prompt + prefix`` longer than this raises ``ValueError``
            (guards the sampler's context window); None = no limit.

    Example:
        >>> from reasonenv.problems.base import Problem
        >>> from reasonenv.shaping.fake_services import FunctionSampler
        >>> p = Problem(id="d", question="2+2?", answer="4", source="demo")
        >>> s = FunctionSampler(lambda prompt, i, seed: r" \\boxed{4}" if i < 5 else r" \\boxed{5}")
        >>> prover = MCProver(s, grader=lambda pairs: [r.endswith("{4}") for r, _ in pairs])
        >>> round(prover.q_values([ProverRequest(p, "2+2?", "")], K=4, m=20)[0], 4)
        0.7183
        >>> prover.samples_drawn, prover.sampler_calls
        (20, 1)
    """

    def __init__(
        self,
        sampler: ContinuationSampler,
        grader: Callable[..., list[Any]] | None = None,
        *,
        cache_size: int = 100_000,
        seed: int = 0,
        max_prefix_chars: int | None = None,
    ) -> None:
        self.sampler = sampler
        self.grader = grader
        self.cache_size = int(cache_size)
        self.seed = int(seed)
        self.max_prefix_chars = max_prefix_chars
        self._cache: OrderedDict[tuple[str, int], int] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0
        self.samples_drawn = 0
        self.sampler_calls = 0

    def key(self, request: ProverRequest) -> str:
        """The cache key of a request (sha256 of prompt, prefix and the reference answer)."""
        return prefix_key(request.prompt, request.prefix, request.problem.answer)

    def counts(self, requests: Sequence[ProverRequest], *, m: int) -> list[int]:
        """Correct continuations out of ``m`` per request (sampling and grading what is missing)."""
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"m must be an int >= 1, got m={m!r}")
        keys = [(self.key(r), m) for r in requests]
        todo: dict[tuple[str, int], ProverRequest] = {}
        for k, r in zip(keys, requests):
            if k in self._cache or k in todo:
                self.cache_hits += 1
                continue
            if self.max_prefix_chars is not None and len(r.prompt) + len(r.prefix) > self.max_prefix_chars:
                raise ValueError(
                    f"prompt + prefix is {len(r.prompt) + len(r.prefix)} chars, over "
                    f"max_prefix_chars={self.max_prefix_chars} (problem {r.problem.id!r})"
                )
            todo[k] = r
        fresh: dict[tuple[str, int], int] = {}
        if todo:
            reqs = list(todo.values())
            conts = self.sampler.sample([r.prompt + r.prefix for r in reqs], m, seed=self.seed)
            self.sampler_calls += 1
            if len(conts) != len(reqs) or any(len(cs) != m for cs in conts):
                raise ValueError(
                    f"sampler returned {[len(cs) for cs in conts]} continuations for "
                    f"{len(reqs)} prompts x n={m}"
                )
            grader = self.grader
            if grader is None:
                from reasonenv.grading import grade_batch as grader
            pairs = [(r.prefix + c, r.problem.answer) for r, cs in zip(reqs, conts) for c in cs]
            verdicts = grader(pairs)
            if len(verdicts) != len(pairs):
                raise ValueError(f"grader returned {len(verdicts)} verdicts for {len(pairs)} pairs")
            self.samples_drawn += len(pairs)
            self.cache_misses += len(reqs)
            for j, k in enumerate(todo):
                fresh[k] = sum(_is_correct(v) for v in verdicts[j * m : (j + 1) * m])
                self._store(k, fresh[k])
        out = []
        for k in keys:
            if k in fresh:
                out.append(fresh[k])
            else:
                self._cache.move_to_end(k)
                out.append(self._cache[k])
        return out

    def q_values(self, requests: Sequence[ProverRequest], *, K: int, m: int) -> list[float]:
        """``bok_unbiased(c, m, K)`` per request (see the class docstring)."""
        if m < K:
            raise ValueError(f"the unbiased Best-of-K estimate needs m >= K, got m={m}, K={K}")
        return [bok_unbiased(c, m, K) for c in self.counts(requests, m=m)]

    def _store(self, k: tuple[str, int], c: int) -> None:
        self._cache[k] = c
        self._cache.move_to_end(k)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def clear(self) -> None:
        """Empty the cache (statistics are kept)."""
        self._cache.clear()

    def stats(self) -> dict[str, float]:
        """Cache hits/misses, samples drawn, sampler calls, cached prefixes (all cumulative), and
        ``sampler_tokens`` when the sampler counts the tokens it generates (``tokens_generated``)."""
        out = {
            "cache_hits": float(self.cache_hits),
            "cache_misses": float(self.cache_misses),
            "samples_drawn": float(self.samples_drawn),
            "sampler_calls": float(self.sampler_calls),
            "cached_prefixes": float(len(self._cache)),
        }
        tokens = getattr(self.sampler, "tokens_generated", None)
        if isinstance(tokens, (int, float)):
            out["sampler_tokens"] = float(tokens)
        return out
