"""The :class:`Grader` (owns the worker pool) and the module-level convenience functions."""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reasonenv.grading.compare import DEFAULT_REL_TOL, cheap_leaf, compare, reference_is_cheap
from reasonenv.grading.extract import clean_text, extract_answer, extract_reference
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

__all__ = ["Grader", "default_grader", "grade", "grade_batch"]


class Grader:
    """Grades responses against references; owns a pool of killable worker processes.

    Cheap steps (extraction, normalisation, string and plain-number comparison) run in the
    calling thread. Anything needing the LaTeX grammar or sympy runs in a worker process under a
    hard timeout; a worker that times out or crashes is killed and replaced. No method raises
    on bad input: problems are reported in the returned :class:`Verdict`.

    Args:
        n_workers: Worker processes (default ``min(4, os.cpu_count())``). Started lazily, only
            when a comparison first needs the symbolic step.
        timeout: Default hard timeout in seconds for each worker task.
        rel_tol: Relative tolerance for inexact numeric comparisons.
        memory_limit_mb: Address-space limit per worker (POSIX only; 0 disables).

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
    ) -> None:
        self.timeout = float(timeout)
        self.rel_tol = float(rel_tol)
        n = n_workers if n_workers is not None else min(4, os.cpu_count() or 1)
        self.pool = WorkerPool(n_workers=n, memory_limit_mb=memory_limit_mb)
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

    # -- grading ------------------------------------------------------------------------------
    def _check_reference(self, ref_norm: str, timeout: float) -> tuple[bool, str | None]:
        if reference_is_cheap(ref_norm):
            return True, None
        with self._cache_lock:
            if ref_norm in self._ref_cache:
                return self._ref_cache[ref_norm]
        res = self.pool.run({"op": "check_reference", "ref": ref_norm}, timeout)
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
        timeout: float,
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
            ok, err = self._check_reference(ref_norm, timeout)
            return Verdict(False, extracted, pred_normalized=pred_norm or None,
                           reason=NO_ANSWER if ok else BAD_REFERENCE, reference_ok=ok,
                           error=None if ok else err, **base)  # fmt: skip
        base.update(extracted=extracted, pred_normalized=pred_norm)
        decision = compare(pred_norm, ref_norm, lambda p, r: cheap_leaf(p, r, rel_tol))
        if decision is not None and (decision.correct or reference_is_cheap(ref_norm)):
            return Verdict(decision.correct, reason=decision.reason, **base)
        res = self.pool.run(
            {"op": "compare", "pred": pred_norm, "ref": ref_norm, "rel_tol": rel_tol}, timeout
        )
        if res.get("timeout"):
            return Verdict(False, reason=TIMEOUT, timed_out=True, error=res.get("error"), **base)
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
        """Grade one response against one reference. Never raises.

        Args:
            response: Model output; the final answer is extracted with
                :func:`~reasonenv.grading.extract.extract_answer`.
            reference: Gold answer (a bare answer, or text with a ``\\boxed{}``/``####``).
            timeout: Hard timeout in seconds for each worker step (default: the grader's).
            last_number_fallback: Use the last number in the response if no marker is found.
            use_math_verify: Also ask math-verify (in the worker) and record its answer in
                :attr:`Verdict.second_opinion`.
            rel_tol: Relative tolerance for inexact numbers (default: the grader's).

        Returns:
            The :class:`Verdict`.

        Example:
            >>> with Grader(n_workers=1) as g:
            ...     g.grade("The answer is 50%.", "0.5").correct
            True
        """
        timeout = self.timeout if timeout is None else float(timeout)
        rel_tol = self.rel_tol if rel_tol is None else float(rel_tol)
        ref_str = reference if isinstance(reference, str) else clean_text(reference)
        try:
            verdict = self._grade(
                clean_text(response), ref_str, timeout, last_number_fallback, rel_tol
            )
        except Exception as exc:  # defensive: grading must never raise
            return Verdict(
                False, None, ref_str, None, None, ERROR, error=f"{type(exc).__name__}: {exc}"
            )
        if use_math_verify and verdict.extracted is not None and verdict.reference_ok:
            res = self.pool.run(
                {"op": "math_verify", "pred": verdict.extracted, "ref": extract_reference(ref_str)},
                timeout,
            )
            if res.get("ok") and res.get("result") is not None:
                verdict = _replace(verdict, second_opinion=bool(res["result"]))
        return verdict

    def grade_batch(self, pairs: Sequence[tuple[str, str]], **kwargs: Any) -> list[Verdict]:
        """Grade many ``(response, reference)`` pairs in parallel through the pool.

        Keyword arguments are those of :meth:`grade`. Results are in input order.

        Example:
            >>> with Grader(n_workers=2) as g:
            ...     [v.correct for v in g.grade_batch([("#### 4", "4"), (r"\\boxed{x+1}", "1+x")])]
            [True, True]
        """
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
    """Grade one response with the shared default :class:`Grader`. Never raises.

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

    Example:
        >>> [v.correct for v in grade_batch([("#### 1,234", "1234"), ("#### 3", "4")])]
        [True, False]
    """
    return default_grader().grade_batch(pairs, **kwargs)
