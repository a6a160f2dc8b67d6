"""The :class:`Grader` (owns the worker pool) and the module-level convenience functions."""

from __future__ import annotations

import atexit
import math
import numbers
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reasonenv.grading.compare import DEFAULT_REL_TOL, cheap_leaf, compare, reference_is_cheap
from reasonenv.grading.extract import (
    MAX_RESPONSE_CHARS,
    clean_text,
    extract_answer,
    extract_reference,
)
from reasonenv.grading.normalize import MAX_ANSWER_CHARS, normalize
from reasonenv.grading.parse import is_balanced
from reasonenv.grading.pool import WorkerPool
from reasonenv.grading.verdict import (
    BAD_REFERENCE,
    ERROR,
    MISMATCH,
    NO_ANSWER,
    TIMEOUT,
    Verdict,
)

__all__ = ["Grader", "check_timeout", "default_grader", "grade", "grade_batch"]


def check_timeout(value: object, field: str = "timeout") -> float:
    """Return ``value`` in seconds if it is a usable timeout, else raise a one-line error.

    A timeout is a real number (not a bool, not a string), finite and greater than zero.

    Args:
        value: The timeout to check.
        field: The argument's name, used in the error message.

    Returns:
        The timeout as a float.

    Raises:
        ValueError: Naming ``field`` and the rejected value.

    Example:
        >>> check_timeout(2)
        2.0
        >>> check_timeout(float("nan"), field="grader_timeout")
        Traceback (most recent call last):
        ...
        ValueError: grader_timeout must be a finite number of seconds > 0, got nan
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and math.isfinite(float(value)) and float(value) > 0:  # type: ignore[arg-type]
        return float(value)  # type: ignore[arg-type]
    raise ValueError(f"{field} must be a finite number of seconds > 0, got {value!r}")


class _Budget:
    """The deadline of one grading call (moved only past the pool's one-time cold start)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout

    def left(self) -> float:
        return self.deadline - time.monotonic()


class Grader:
    """Grades responses against references; owns a pool of killable worker processes.

    Cheap steps (extraction, normalisation, string and plain-number comparison) run in the
    calling thread. Anything needing the LaTeX grammar or sympy runs in a worker process under a
    hard timeout; a worker that times out or crashes is killed and replaced. No method raises
    on bad input: problems are reported in the returned :class:`Verdict`.

    Args:
        n_workers: Worker processes (default ``min(4, os.cpu_count())``). Started lazily, only
            when a comparison first needs the symbolic step.
        timeout: Default deadline in seconds for one grading call, everything included
            (waiting for a free worker, a worker restart, the symbolic step, math-verify).
        rel_tol: Relative tolerance for inexact numeric comparisons.
        memory_limit_mb: Address-space limit per worker (POSIX only; 0 disables).
        fork_server: Fork workers from a warm zygote process (POSIX), so that replacing a
            killed worker takes milliseconds; ``False`` starts fresh interpreters (seconds).

    Raises:
        ValueError: If ``timeout`` is not a finite number > 0.

    Example:
        >>> with Grader(n_workers=1) as g:
        ...     g.grade(r"so \\boxed{\\frac{\\sqrt{2}}{2}}", r"1/\\sqrt{2}").correct
        True
    """

    def __init__(
        self,
        n_workers: int | None = None,
        *,
        timeout: float = 2.0,
        rel_tol: float = DEFAULT_REL_TOL,
        memory_limit_mb: int = 2048,
        fork_server: bool = True,
    ) -> None:
        self.timeout = check_timeout(timeout)
        self.rel_tol = float(rel_tol)
        n = n_workers if n_workers is not None else min(4, os.cpu_count() or 1)
        self.pool = WorkerPool(
            n_workers=n, memory_limit_mb=memory_limit_mb, fork_server=fork_server
        )
        self._ref_cache: OrderedDict[str, tuple[bool, str | None]] = OrderedDict()
        self._cache_lock = threading.Lock()
        weakref.finalize(self, self.pool.close)  # also runs at interpreter exit

    # -- context manager ----------------------------------------------------------------------
    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes. Idempotent.

        Example:
            >>> g = Grader(n_workers=1); g.close(); g.close()
        """
        self.pool.close()

    def clear_caches(self) -> None:
        """Forget cached reference checks and parsed answers, in this process and every worker.

        For benchmarks that grade the same answers twice; parser tables stay warm.

        Example:
            >>> with Grader(n_workers=1) as g:
            ...     g.grade(r"\\boxed{x+1}", "1+x", timeout=60).correct
            ...     g.clear_caches()
            True
        """
        with self._cache_lock:
            self._ref_cache.clear()
        if self.pool.started:
            self.pool.run_on_each({"op": "clear_caches"}, timeout=60)

    # -- grading ------------------------------------------------------------------------------
    def _run(self, task: dict[str, Any], budget: _Budget) -> dict[str, Any]:
        """Run a worker task within ``budget``; the pool's one-time cold start is not charged."""
        budget.deadline += self.pool.wait_warm()
        return self.pool.run(task, budget.left())

    def _check_reference(self, ref_norm: str, budget: _Budget) -> tuple[bool, str | None]:
        """Parse the reference in a worker (cached); ``(True, error)`` when it cannot say."""
        if reference_is_cheap(ref_norm):
            return True, None
        with self._cache_lock:
            if ref_norm in self._ref_cache:
                return self._ref_cache[ref_norm]
        res = self._run({"op": "check_reference", "ref": ref_norm}, budget)
        if res.get("ok"):
            out = (bool(res.get("reference_ok", True)), res.get("error"))
            with self._cache_lock:
                self._ref_cache[ref_norm] = out
                if len(self._ref_cache) > 4096:
                    self._ref_cache.popitem(last=False)
            return out
        return True, res.get("error")  # unknown (timeout/crash): do not blame the reference

    def _grade(
        self,
        response: str,
        reference: str,
        budget: _Budget,
        last_number_fallback: bool,
        rel_tol: float,
    ) -> Verdict:
        ref_ans = extract_reference(reference)
        ref_norm = normalize(ref_ans) if len(ref_ans) <= MAX_ANSWER_CHARS else None
        base: dict[str, Any] = {"reference": reference, "ref_normalized": ref_norm}
        if not ref_norm or not is_balanced(ref_norm):
            why = "reference too long" if ref_norm is None else "reference is empty or unbalanced"
            extracted = extract_answer(response, last_number_fallback=last_number_fallback)
            return Verdict(False, extracted, pred_normalized=None, reason=BAD_REFERENCE,
                           reference_ok=False, error=why, **base)  # fmt: skip
        extracted = extract_answer(response, last_number_fallback=last_number_fallback)
        if extracted is not None and len(extracted) > MAX_ANSWER_CHARS:
            return Verdict(False, extracted[:200] + "...", pred_normalized=None, reason=MISMATCH,
                           error=f"extracted answer too long ({len(extracted)} > {MAX_ANSWER_CHARS} chars)",
                           **base)  # fmt: skip
        pred_norm = normalize(extracted) if extracted is not None else None
        if not pred_norm:
            ok, err = self._check_reference(ref_norm, budget)
            return Verdict(False, extracted, pred_normalized=pred_norm or None,
                           reason=NO_ANSWER if ok else BAD_REFERENCE, reference_ok=ok,
                           error=None if ok else err, **base)  # fmt: skip
        base.update(extracted=extracted, pred_normalized=pred_norm)
        decision = compare(pred_norm, ref_norm, lambda p, r: cheap_leaf(p, r, rel_tol))
        if decision is not None and (decision.correct or reference_is_cheap(ref_norm)):
            return Verdict(decision.correct, reason=decision.reason, **base)
        res = self._run(
            {"op": "compare", "pred": pred_norm, "ref": ref_norm, "rel_tol": rel_tol}, budget
        )
        if res.get("timeout"):
            why = f"timed out after {budget.timeout:g}s ({res.get('detail', 'in the worker')})"
            return Verdict(False, reason=TIMEOUT, timed_out=True, error=why, **base)
        if not res.get("ok"):
            return Verdict(False, reason=ERROR, error=res.get("error"), **base)
        return Verdict(bool(res["correct"]), reason=str(res["reason"]),
                       reference_ok=bool(res.get("reference_ok", True)), error=res.get("error"),
                       **base)  # fmt: skip

    def grade(
        self,
        response: str,
        reference: str,
        *,
        timeout: float | None = None,
        last_number_fallback: bool = False,
        use_math_verify: bool = False,
        rel_tol: float | None = None,
    ) -> Verdict:
        """Grade one response against one reference. Never raises on what it grades.

        The whole call is bounded by ``timeout``: waiting for a free worker, a worker restart,
        the symbolic step and the math-verify second opinion all count. A call that runs out
        of time returns ``reason="timeout"`` (``timed_out=True``, ``error`` says where the time
        went) instead of a late verdict.

        Args:
            response: Model output; the final answer is extracted with
                :func:`~reasonenv.grading.extract.extract_answer`.
            reference: Gold answer (a bare answer, or text with a ``\\boxed{}``/``####``).
            timeout: Deadline in seconds for this call (default: the grader's).
            last_number_fallback: Use the last number in the response if no marker is found.
            use_math_verify: Also ask math-verify (in the worker) and record its answer in
                :attr:`Verdict.second_opinion`.
            rel_tol: Relative tolerance for inexact numbers (default: the grader's).

        Returns:
            The :class:`Verdict`.

        Raises:
            ValueError: If ``timeout`` is not a finite number > 0 (programming error, not data).

        Example:
            >>> with Grader(n_workers=1) as g:
            ...     g.grade("The answer is 50%.", "0.5").correct
            True
        """
        timeout = self.timeout if timeout is None else check_timeout(timeout)
        budget = _Budget(timeout)
        rel_tol = self.rel_tol if rel_tol is None else float(rel_tol)
        ref_str = reference if isinstance(reference, str) else clean_text(reference)
        try:
            verdict = self._grade(
                clean_text(response), ref_str, budget, last_number_fallback, rel_tol
            )
        except Exception as exc:  # defensive: grading must never raise
            return Verdict(
                False, None, ref_str, None, None, ERROR, error=f"{type(exc).__name__}: {exc}"
            )
        n_chars = len(response) if isinstance(response, str | bytes | bytearray) else 0
        if verdict.reason == NO_ANSWER and n_chars > MAX_RESPONSE_CHARS:
            verdict = _replace(verdict, error=f"no answer in the last {MAX_RESPONSE_CHARS} "
                                              f"characters of a {n_chars}-character response")  # fmt: skip
        if use_math_verify and verdict.extracted is not None and verdict.reference_ok:
            task = {
                "op": "math_verify",
                "pred": verdict.extracted,
                "ref": extract_reference(ref_str),
            }
            res = self._run(task, budget) if budget.left() > 0 else {}
            if res.get("ok") and res.get("result") is not None:
                verdict = _replace(verdict, second_opinion=bool(res["result"]))
        return verdict

    def grade_batch(self, pairs: Sequence[tuple[str, str]], **kwargs: Any) -> list[Verdict]:
        """Grade many ``(response, reference)`` pairs in parallel through the pool.

        Keyword arguments are those of :meth:`grade`. Results are in input order. Items run
        ``n_workers`` at a time and ``timeout`` bounds each item from the moment it starts.

        Raises:
            ValueError: If ``timeout`` is given and is not a finite number > 0.

        Example:
            >>> with Grader(n_workers=2) as g:
            ...     [v.correct for v in g.grade_batch([("#### 4", "4"), (r"\\boxed{x+1}", "1+x")])]
            [True, True]
        """
        if kwargs.get("timeout") is not None:
            check_timeout(kwargs["timeout"])
        pairs = list(pairs)
        if len(pairs) <= 1:
            return [self.grade(r, ref, **kwargs) for r, ref in pairs]
        with ThreadPoolExecutor(
            max_workers=self.pool.n_workers, thread_name_prefix="reasonenv-grade"
        ) as ex:
            return list(ex.map(lambda p: self.grade(p[0], p[1], **kwargs), pairs))


def _replace(v: Verdict, **changes: Any) -> Verdict:
    from dataclasses import replace

    return replace(v, **changes)


_default: Grader | None = None
_default_lock = threading.Lock()


def default_grader() -> Grader:
    """Return the shared module-level :class:`Grader` (created lazily, closed at exit).

    Example:
        >>> default_grader() is default_grader()
        True
    """
    global _default
    with _default_lock:
        if _default is None or _default.pool.closed:
            _default = Grader()
            atexit.register(_default.close)
        return _default


def grade(
    response: str,
    reference: str,
    *,
    timeout: float = 2.0,
    last_number_fallback: bool = False,
    use_math_verify: bool = False,
) -> Verdict:
    """Grade one response with the shared default :class:`Grader` (see :meth:`Grader.grade`).

    Never raises on what it grades; an invalid ``timeout`` raises ``ValueError``.

    Example:
        >>> grade(r"... so the area is \\boxed{12\\pi}.", r"12\\pi").correct
        True
        >>> grade("The answer is 2.", "12").reason
        'mismatch'
    """
    return default_grader().grade(
        response,
        reference,
        timeout=timeout,
        last_number_fallback=last_number_fallback,
        use_math_verify=use_math_verify,
    )


def grade_batch(pairs: Sequence[tuple[str, str]], **kwargs: Any) -> list[Verdict]:
    """Grade ``(response, reference)`` pairs in parallel with the shared default grader.

    See :meth:`Grader.grade_batch`; an invalid ``timeout`` raises ``ValueError``.

    Example:
        >>> [v.correct for v in grade_batch([("#### 1,234", "1234"), ("#### 3", "4")])]
        [True, False]
    """
    if kwargs.get("timeout") is not None:
        check_timeout(kwargs["timeout"])
    return default_grader().grade_batch(pairs, **kwargs)
