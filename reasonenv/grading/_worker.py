"""Worker process entry point: ``python -m reasonenv.grading._worker [memory_limit_mb]``.

Protocol: one JSON object per line on stdin (a task), one JSON object per line on stdout (its
result). The first line written is ``{"op": "ready"}`` once sympy and the LaTeX grammar are
loaded. Stray prints from libraries go to stderr, never into the protocol stream.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any


def _limit_memory(megabytes: int) -> None:
    if megabytes <= 0:
        return
    try:
        import resource

        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # not POSIX, or not permitted
        pass


def _watch_parent(parent_pid: int) -> None:
    """Exit when the parent process disappears (re-parented to another pid)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


def _math_verify(pred: str, ref: str) -> bool | None:
    try:
        from math_verify import LatexExtractionConfig, parse, verify
    except ImportError:
        return None
    # LaTeX extraction only: math-verify's plain-expression path uses sympy's parse_expr,
    # which evaluates Python and must never see model text.
    config = [LatexExtractionConfig()]
    wrap = lambda s: s if "$" in s or "\\boxed" in s else f"${s}$"  # noqa: E731
    gold = parse(wrap(ref), extraction_config=config, parsing_timeout=None)
    target = parse(wrap(pred), extraction_config=config, parsing_timeout=None)
    if not gold:
        return None
    return bool(verify(gold, target, timeout_seconds=None))


def handle(task: dict[str, Any]) -> dict[str, Any]:
    """Execute one task and return its JSON-serialisable result."""
    from reasonenv.grading.symbolic import BadReference, check_reference, symbolic_compare

    op = task.get("op")
    try:
        if op == "compare":
            d = symbolic_compare(task["pred"], task["ref"], float(task["rel_tol"]))
            return {"ok": True, "correct": d.correct, "reason": d.reason, "reference_ok": True}
        if op == "check_reference":
            check_reference(task["ref"])
            return {"ok": True, "reference_ok": True}
        if op == "math_verify":
            return {"ok": True, "result": _math_verify(task["pred"], task["ref"])}
        if op == "sleep":  # diagnostics / tests: simulate a hung computation
            time.sleep(float(task.get("seconds", 3600)))
            return {"ok": True}
        if op == "exit":  # diagnostics / tests: simulate a crash
            os._exit(3)
    except BadReference as exc:
        return {"ok": True, "correct": False, "reason": "bad_reference", "reference_ok": False,
                "error": str(exc)}  # fmt: skip
    return {"ok": False, "error": f"unknown op {op!r}"}


def main(argv: list[str] | None = None) -> int:
    """Serve tasks until stdin closes."""
    argv = sys.argv[1:] if argv is None else argv
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    sys.setrecursionlimit(3000)
    _limit_memory(int(argv[0]) if argv else 0)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()

    from reasonenv.grading.parse import to_sympy
    from reasonenv.grading.symbolic import symbolic_compare

    symbolic_compare(r"\frac{1}{2}x", "x/2")  # warm up sympy + the grammar
    to_sympy("1")
    protocol.write(json.dumps({"op": "ready", "pid": os.getpid()}) + "\n")

    for line in sys.stdin:
        if not line.strip():
            continue
        task: Any = None
        try:
            task = json.loads(line)
            result = handle(task)
        except MemoryError:
            result = {"ok": False, "error": "MemoryError: worker memory limit exceeded"}
        except RecursionError:
            result = {"ok": False, "error": "RecursionError: expression nested too deeply"}
        except Exception as exc:  # report, never die on a bad task
            result = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        result["id"] = task.get("id") if isinstance(task, dict) else None
        protocol.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
