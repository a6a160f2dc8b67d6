"""A small pool of killable grading worker processes.

Each worker is a separate interpreter started with ``python -m reasonenv.grading._worker``
(a fresh process, like the ``spawn`` start method, but it never re-imports the caller's
``__main__`` module, so scripts without an ``if __name__ == "__main__"`` guard are safe). Tasks
and results travel as JSON lines over pipes. A task that exceeds its timeout gets its worker
killed (``SIGKILL``) and replaced in the background, so the pool stays usable. Everything is
thread-safe: any thread may submit tasks; the main thread is never required.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["WorkerPool"]

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_EOF = object()


class _Worker:
    """One worker process plus a reader thread that turns its stdout into a queue."""

    def __init__(self, memory_limit_mb: int) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        env.setdefault("PYTHONIOENCODING", "utf-8")
        env["PYTHONSAFEPATH"] = "1"  # don't put the caller's cwd first on the worker's sys.path
        debug = bool(os.environ.get("REASONENV_GRADING_DEBUG"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reasonenv.grading._worker", str(memory_limit_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if debug else subprocess.DEVNULL,
            env=env,
            text=True,
            encoding="utf-8",
            bufsize=1,
            close_fds=True,
        )
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.ready = False
        threading.Thread(target=self._read, name="reasonenv-grading-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                try:
                    self.inbox.put(json.loads(line))
                except json.JSONDecodeError:
                    continue
        except (OSError, ValueError):
            pass
        self.inbox.put(_EOF)

    def wait_ready(self, timeout: float) -> bool:
        """Block until the worker reported ``ready`` (True) or died / timed out (False)."""
        if self.ready:
            return True
        try:
            msg = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return False
        self.ready = isinstance(msg, dict) and msg.get("op") == "ready"
        return self.ready

    def request(self, task: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send ``task`` and wait for its result.

        Raises:
            TimeoutError: No result within ``timeout`` seconds.
            ConnectionError: The worker died.
        """
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(task) + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise ConnectionError(f"worker pipe closed: {exc}") from exc
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            try:
                msg = self.inbox.get(timeout=remaining)
            except queue.Empty:
                raise TimeoutError from None
            if msg is _EOF:
                raise ConnectionError(f"worker exited with code {self.proc.wait()}")
            if msg.get("id") == task["id"]:
                return msg

    def kill(self) -> None:
        """Kill the process immediately and reap it."""
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def stop(self) -> None:
        """Ask the process to exit (close its stdin), kill it if it does not."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=1)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self.kill()


class WorkerPool:
    """Fixed-size pool of grading workers, started lazily on first use.

    Args:
        n_workers: Number of worker processes.
        memory_limit_mb: Address-space limit per worker (``RLIMIT_AS``; 0 disables).
        startup_timeout: Seconds to wait for a (re)started worker to finish importing.

    Example:
        >>> pool = WorkerPool(n_workers=1)
        >>> pool.run({"op": "check_reference", "ref": "1/2"}, timeout=30)["reference_ok"]
        True
        >>> pool.close()
    """

    def __init__(
        self, n_workers: int = 2, memory_limit_mb: int = 2048, startup_timeout: float = 120.0
    ) -> None:
        self.n_workers = max(1, int(n_workers))
        self.memory_limit_mb = int(memory_limit_mb)
        self.startup_timeout = float(startup_timeout)
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._started = False
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def _spawn(self) -> None:
        with self._lock:
            if self._closed:
                return
            worker = _Worker(self.memory_limit_mb)
            self._all.add(worker)
        self._idle.put(worker)

    def _retire(self, worker: _Worker, replace: bool = True) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)
        if replace:
            self._spawn()

    def start(self) -> None:
        """Start the worker processes now (otherwise done on first :meth:`run`)."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        for _ in range(self.n_workers):
            self._spawn()

    def run(self, task: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run one task on an idle worker. Never raises.

        Returns:
            The worker's result dict, or ``{"ok": False, "timeout": True, ...}`` on timeout, or
            ``{"ok": False, "error": ...}`` if the worker crashed or the pool is closed.
        """
        if self._closed:
            return {"ok": False, "error": "grader is closed"}
        self.start()
        worker: _Worker | None = None
        while worker is None:
            if self._closed:
                return {"ok": False, "error": "grader is closed"}
            try:
                worker = self._idle.get(timeout=0.5)
            except queue.Empty:
                continue
        if not worker.wait_ready(self.startup_timeout):
            self._retire(worker)
            return {"ok": False, "error": "grading worker failed to start"}
        task = dict(task, id=next(self._ids))
        try:
            result = worker.request(task, max(0.01, float(timeout)))
        except TimeoutError:
            self._retire(worker)
            return {"ok": False, "timeout": True, "error": f"timed out after {timeout:g}s"}
        except ConnectionError as exc:
            self._retire(worker)
            return {"ok": False, "error": f"grading worker crashed ({exc})"}
        if self._closed:
            worker.stop()
        else:
            self._idle.put(worker)
        return result

    def worker_pids(self) -> list[int]:
        """PIDs of the current worker processes (for diagnostics and tests)."""
        with self._lock:
            return sorted(w.proc.pid for w in self._all)

    def close(self) -> None:
        """Stop all workers. Idempotent; later :meth:`run` calls return an error result."""
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.stop()
