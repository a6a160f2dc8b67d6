"""Cheap deterministic services for tests, docs and smoke runs (no torch, no model).

* :class:`HashRefScorer` - a :class:`~reasonenv.shaping.protocols.RefLogprobScorer` whose
  "reference model" is a hash of (seed, previous token, token); it keeps the same per-key
  bookkeeping as a KV-cached scorer, so tests can check the O(L) contract.
* :class:`HeuristicPRM` - a causal :class:`~reasonenv.shaping.protocols.PRMScorer` whose step
  scores are a stable hash of the question and the steps so far, with a quantile spread.
* :class:`FunctionSampler` - a :class:`~reasonenv.shaping.protocols.ContinuationSampler` whose
  continuations come from a Python function (for provers with known success counts).

Example:
    >>> from reasonenv.shaping.protocols import RefRequest
    >>> ref = HashRefScorer(seed=0)
    >>> lp = ref.logprobs([RefRequest(("s", 0), (1, 2), (3, 4))])[0]
    >>> lp.shape, bool((lp <= 0).all()), ref.tokens_forwarded
    ((2,), True, 4)
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from reasonenv.shaping.protocols import RefRequest

_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64 finaliser: a stable, well-mixed 64-bit hash of an int."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _unit(x: int) -> float:
    """Map a 64-bit int to (0, 1)."""
    return ((x >> 11) + 0.5) / float(1 << 53)


class HashRefScorer:
    """A fake reference model: ``log pi_ref(t | context)`` depends on (seed, last context token, t).

    Values lie in ``[log 0.02, log 0.99]`` (valid log-probs, not normalised over a vocabulary).
    Like a KV-cached scorer it remembers, per request ``key``, the ids already "forwarded"; a
    request whose ``context_ids`` extends them only forwards the new part, so scoring a sequence
    step by step forwards each token once (:attr:`tokens_forwarded` counts them).

    Args:
        seed: Changes every log-prob.
        max_cached: Keys remembered at most (least recently used dropped first).

    Example:
        >>> ref = HashRefScorer()
        >>> a = ref.logprobs([RefRequest("k", (5,), (6, 7))])[0]
        >>> b = ref.logprobs([RefRequest("k", (5, 6, 7), (8,))])[0]
        >>> ref.tokens_forwarded  # 5, 6, 7 once, then 8
        4
        >>> float(a[1]) == float(HashRefScorer().logprobs([RefRequest(None, (6,), (7,))])[0][0])
        True
    """

    def __init__(self, seed: int = 0, *, max_cached: int = 4096) -> None:
        self.seed = int(seed)
        self.max_cached = int(max_cached)
        self.tokens_forwarded = 0
        self._seen: OrderedDict[Hashable, tuple[int, ...]] = OrderedDict()

    def token_logprob(self, prev: int, token: int) -> float:
        """``log pi_ref(token | ... prev)``; ``prev=-1`` for an empty context."""
        h = _mix64(_mix64(_mix64(self.seed & _MASK64) ^ (prev & _MASK64)) ^ (token & _MASK64))
        return math.log(0.02 + 0.97 * _unit(h))

    def logprobs(self, requests: Sequence[RefRequest]) -> list[np.ndarray]:
        """For each request, the log-probs of ``new_ids``, shape ``(len(new_ids),)``."""
        out = []
        for r in requests:
            full = tuple(r.context_ids) + tuple(r.new_ids)
            seen = self._seen.get(r.key) if r.key is not None else None
            if seen is not None and full[: len(seen)] == seen:
                self.tokens_forwarded += len(full) - len(seen)
            else:
                self.tokens_forwarded += len(full)
            prev = r.context_ids[-1] if r.context_ids else -1
            vals = []
            for t in r.new_ids:
                vals.append(self.token_logprob(prev, t))
                prev = t
            out.append(np.asarray(vals, dtype=np.float64))
            if r.key is not None:
                self._seen[r.key] = full
                self._seen.move_to_end(r.key)
                while len(self._seen) > self.max_cached:
                    self._seen.popitem(last=False)
        return out

    def release(self, key: Hashable) -> None:
        """Forget ``key``."""
        self._seen.pop(key, None)


class HeuristicPRM:
    """A deterministic, causal stand-in PRM: step scores are a stable hash, not a judgement.

    The median of step k is a hash of ``(question, steps[:k+1])`` mapped to (0.05, 0.95); the
    other quantiles are spread around it on the logit scale (a per-step width in [0.5, 2]), so
    they are ascending in the quantile level and inside (0, 1).

    Args:
        quantiles: Ascending quantile levels in (0, 1).

    Example:
        >>> prm = HeuristicPRM()
        >>> s = prm.score([("What is 2+2?", ["2+2 = 4.\\n\\n", "\\\\boxed{4}"])])[0]
        >>> s.shape, bool((s[:, 0] <= s[:, 1]).all() and (s[:, 1] <= s[:, 2]).all())
        ((2, 3), True)
    """

    def __init__(self, quantiles: Sequence[float] = (0.1, 0.5, 0.9)) -> None:
        qs = tuple(float(q) for q in quantiles)
        if not qs or any(not 0.0 < q < 1.0 for q in qs) or list(qs) != sorted(qs):
            raise ValueError(f"quantiles must be ascending levels in (0, 1), got {quantiles!r}")
        self.quantiles = qs
        self._z = np.log(np.asarray(qs) / (1.0 - np.asarray(qs)))  # logit of each level

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """For each ``(question, steps)``, an array ``(len(steps), len(quantiles))`` in (0, 1)."""
        out = []
        for question, steps in items:
            h = hashlib.sha256(b"q\0" + question.encode("utf-8"))
            rows = np.zeros((len(steps), len(self.quantiles)))
            for k, step in enumerate(steps):
                h.update(b"\0s\0" + step.encode("utf-8"))  # chained: step k sees only steps[:k+1]
                d = h.copy().digest()
                mu = 0.05 + 0.9 * _unit(int.from_bytes(d[:8], "little"))
                width = 0.5 + 1.5 * _unit(int.from_bytes(d[8:16], "little"))
                logits = math.log(mu / (1.0 - mu)) + width * self._z
                rows[k] = 1.0 / (1.0 + np.exp(-logits))
            out.append(rows)
        return out


class FunctionSampler:
    """A continuation sampler backed by a function ``fn(prompt, i, seed) -> str``.

    Counts its calls (:attr:`calls`) and the prompts it saw (:attr:`prompts_seen`), so tests can
    check batching.

    Args:
        fn: Returns the ``i``-th continuation of ``prompt`` (``0 <= i < n``) for ``seed``.

    Example:
        >>> s = FunctionSampler(lambda p, i, seed: " \\\\boxed{4}" if i % 2 else " \\\\boxed{5}")
        >>> s.sample(["2+2?"], 3, seed=0)
        [[' \\\\boxed{5}', ' \\\\boxed{4}', ' \\\\boxed{5}']]
    """

    def __init__(self, fn: Callable[[str, int, int], str]) -> None:
        self.fn = fn
        self.calls = 0
        self.prompts_seen = 0

    def sample(self, prompts: Sequence[str], n: int, *, seed: int) -> list[list[str]]:
        """For each prompt, ``[fn(prompt, i, seed) for i in range(n)]``."""
        self.calls += 1
        self.prompts_seen += len(prompts)
        return [[self.fn(p, i, seed) for i in range(n)] for p in prompts]
