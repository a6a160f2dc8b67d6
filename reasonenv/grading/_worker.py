"""Worker process entry point: ``python -m reasonenv.grading._worker [memory_limit_mb]``.

Protocol: one JSON object per line in (a task), one JSON object per line out (its result). The
first line written is ``{"op": "ready", "pid": ...}`` once sympy and the LaTeX grammar are
loaded. Stray prints from libraries go to stderr, never into the protocol stream.

Two ways to run:

* ``_worker MB``: one worker on stdin/stdout (a fresh interpreter; ~3-4 s to warm up);
* ``_worker MB --zygote FD``: a fork server. It warms up once, then forks a ready worker per
  request in a few milliseconds, so replacing a killed worker costs almost nothing. Each
  forked worker talks over its own socket, passed in by the pool.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from typing import IO, Any


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
            return {"ok": True, "correct": d.correct, "reason": d.reason, "reference_ok": True,
                    "error": d.note}  # fmt: skip
        if op == "check_reference":
            check_reference(task["ref"])
            return {"ok": True, "reference_ok": True}
        if op == "math_verify":
            return {"ok": True, "result": _math_verify(task["pred"], task["ref"])}
        if op == "clear_caches":  # benchmarks: forget parsed answers (parser tables stay warm)
            _clear_caches()
            return {"ok": True}
        if op == "sleep":  # diagnostics / tests: simulate a hung computation
            time.sleep(float(task.get("seconds", 3600)))
            return {"ok": True}
        if op == "exit":  # diagnostics / tests: simulate a crash
            os._exit(3)
    except BadReference as exc:
        return {"ok": True, "correct": False, "reason": "bad_reference", "reference_ok": False,
                "error": str(exc)}  # fmt: skip
    return {"ok": False, "error": f"unknown op {op!r}"}


def serve(inp: IO[str], out: IO[str]) -> None:
    """Answer tasks read from ``inp`` (JSON lines) on ``out`` until ``inp`` closes."""
    for line in inp:
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
        out.write(json.dumps(result) + "\n")
        out.flush()


def _warm_up() -> None:
    from reasonenv.grading.parse import to_sympy
    from reasonenv.grading.symbolic import symbolic_compare

    symbolic_compare(r"\frac{1}{2}x", "x/2")  # import sympy + the grammar, fill their caches
    to_sympy("1")


def _clear_caches() -> None:
    from sympy.core.cache import clear_cache

    from reasonenv.grading.parse import to_sympy

    to_sympy.cache_clear()
    clear_cache()


def _forked_child(conn: socket.socket) -> None:
    """Body of a worker forked by the zygote: serve tasks on ``conn``, never return."""
    code = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
        out = conn.makefile("w", encoding="utf-8")
        out.write(json.dumps({"op": "ready", "pid": os.getpid()}) + "\n")
        out.flush()
        serve(conn.makefile("r", encoding="utf-8"), out)
    except BaseException:  # noqa: BLE001 - a child must never fall back into the zygote loop
        code = 1
    os._exit(code)


def zygote(control_fd: int) -> int:
    """Fork server: warm up once, then fork one ready worker per request.

    Each request on the control socket is one byte carrying (``SCM_RIGHTS``) the socket the new
    worker serves tasks on. Forked workers are reaped automatically (``SIGCHLD`` ignored) and
    exit when the zygote does. The zygote stays single-threaded so that forking is safe.
    """
    control = socket.socket(fileno=control_fd)
    _warm_up()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(control, 1, 1)
        except OSError:
            return 0
        if not msg:
            return 0  # the pool closed its end (or the parent died)
        if not fds:
            continue
        conn = socket.socket(fileno=fds[0])
        if os.fork() == 0:
            control.close()
            _forked_child(conn)
        conn.close()


def main(argv: list[str] | None = None) -> int:
    """Serve tasks on stdin/stdout, or with ``--zygote FD`` run the fork server on socket FD."""
    argv = sys.argv[1:] if argv is None else argv
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    sys.setrecursionlimit(3000)
    _limit_memory(int(argv[0]) if argv else 0)
    if len(argv) >= 3 and argv[1] == "--zygote":
        return zygote(int(argv[2]))
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    _warm_up()
    protocol.write(json.dumps({"op": "ready", "pid": os.getpid()}) + "\n")
    serve(sys.stdin, protocol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
