"""A small pool of killable grading worker processes with caller deadlines.

Workers are separate interpreters running ``python -m reasonenv.grading._worker`` (a fresh
process, like the ``spawn`` start method, but the caller's ``__main__`` is never re-imported,
so scripts without an ``if __name__ == "__main__"`` guard are safe). On POSIX the pool first
starts one *zygote* of that kind, which warms up sympy and the grammar once and then forks a
ready worker per request; replacing a killed worker then takes milliseconds instead of the
3-4 s a fresh interpreter needs. Where forking is unavailable, workers are fresh interpreters.

Tasks and results travel as JSON lines. :meth:`WorkerPool.run` takes the caller's whole time
budget: waiting for a free worker, waiting for a (re)started worker and the computation itself
all count against it, and a caller whose budget runs out gets a ``timeout`` result, never a
late one. A worker still computing at the deadline is killed (``SIGKILL``) and replaced.
Everything is thread-safe; the main thread is never required.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["WorkerPool"]

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_EOF = object()
_FORK_OK = hasattr(os, "fork") and hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")


def _worker_command(memory_limit_mb: int, *extra: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONIOENCODING", "utf-8")
    env["PYTHONSAFEPATH"] = "1"  # don't put the caller's cwd first on the worker's sys.path
    cmd = [sys.executable, "-m", "reasonenv.grading._worker", str(memory_limit_mb), *extra]
    return cmd, env


def _stderr() -> int | None:
    return None if os.environ.get("REASONENV_GRADING_DEBUG") else subprocess.DEVNULL


class _Worker:
    """One worker process: a line channel to it plus a reader thread feeding ``inbox``.

    ``notify`` is called (from the reader thread) when the worker reports ready or its channel
    closes, so the pool can wake callers waiting for a worker.
    """

    def __init__(
        self,
        reader: IO[str],
        writer: IO[str],
        notify: Callable[[], None],
        proc: subprocess.Popen[str] | None = None,
        conn: socket.socket | None = None,
    ) -> None:
        self.reader, self.writer, self.proc, self.conn = reader, writer, proc, conn
        self.pid: int | None = proc.pid if proc is not None else None
        self.started = time.monotonic()
        self.ready = False
        self.dead = False
        self.inbox: queue.Queue[Any] = queue.Queue()
        self._notify = notify
        threading.Thread(target=self._read, name="reasonenv-grading-reader", daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self.reader:
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not self.ready and isinstance(msg, dict) and msg.get("op") == "ready":
                    self.pid = int(msg.get("pid") or self.pid or 0) or None
                    self.ready = True
                    self._notify()
                else:
                    self.inbox.put(msg)
        except (OSError, ValueError):
            pass
        try:
            self.reader.close()
        except OSError:
            pass
        self.dead = True
        self.inbox.put(_EOF)
        self._notify()

    def exit_detail(self) -> str:
        code = self.proc.poll() if self.proc is not None else None
        return f"worker exited with code {code}" if code is not None else "worker exited"

    def request(self, task: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send ``task`` and wait up to ``timeout`` seconds for its result.

        Raises:
            TimeoutError: No result in time.
            ConnectionError: The worker died.
        """
        try:
            self.writer.write(json.dumps(task) + "\n")
            self.writer.flush()
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
                raise ConnectionError(self.exit_detail())
            if msg.get("id") == task["id"]:
                return msg

    def kill(self) -> None:
        """Kill the process (``SIGKILL``), wait until it is gone, close the channel."""
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        elif self.pid is not None:  # forked by the zygote, which reaps it
            try:
                os.kill(self.pid, signal.SIGKILL)
                for _ in range(500):
                    os.kill(self.pid, 0)
                    time.sleep(0.002)
            except OSError:
                pass
        if self.conn is not None:  # wakes the reader thread, which closes its own end
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for closable in (self.writer, self.conn) if self.conn is not None else (self.writer,):
            try:
                closable.close()
            except OSError:
                pass


class _Zygote:
    """The fork server (see :func:`reasonenv.grading._worker.zygote`)."""

    def __init__(self, memory_limit_mb: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd, env = _worker_command(memory_limit_mb, "--zygote", str(theirs.fileno()))
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=_stderr(),
                env=env, pass_fds=(theirs.fileno(),), close_fds=True,
            )  # fmt: skip
        finally:
            theirs.close()
        self.control = ours
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fork(self, notify: Callable[[], None]) -> _Worker:
        """Ask for one worker; it reports ``ready`` as soon as it is forked.

        Raises:
            OSError: The zygote is gone.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self.lock:
                socket.send_fds(self.control, [b"F"], [theirs.fileno()])
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        reader = ours.makefile("r", encoding="utf-8")
        writer = ours.makefile("w", encoding="utf-8")
        return _Worker(reader, writer, notify, conn=ours)

    def close(self) -> None:
        try:
            self.control.close()
            self.proc.wait(timeout=1)
        except (OSError, subprocess.TimeoutExpired):
            pass
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass


def _timed_out(timeout: float, detail: str) -> dict[str, Any]:
    return {"ok": False, "timeout": True, "detail": detail,
            "error": f"timed out after {timeout:g}s ({detail})"}  # fmt: skip


class WorkerPool:
    """Fixed-size pool of grading workers, started lazily on first use.

    Args:
        n_workers: Number of worker processes.
        memory_limit_mb: Address-space limit per worker (``RLIMIT_AS``; 0 disables).
        startup_timeout: Seconds after which a worker that has not finished starting is
            considered broken and replaced.
        fork_server: Fork workers from a warm zygote (POSIX). ``False`` starts every worker
            as a fresh interpreter, which makes each replacement cost seconds.

    Example:
        >>> pool = WorkerPool(n_workers=1)
        >>> pool.run({"op": "check_reference", "ref": "1/2"}, timeout=30)["reference_ok"]
        True
        >>> pool.close()
    """

    def __init__(
        self,
        n_workers: int = 2,
        memory_limit_mb: int = 2048,
        startup_timeout: float = 120.0,
        fork_server: bool = True,
    ) -> None:
        self.n_workers = max(1, int(n_workers))
        self.memory_limit_mb = int(memory_limit_mb)
        self.startup_timeout = float(startup_timeout)
        self.fork_server = bool(fork_server) and _FORK_OK
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._zygote: _Zygote | None = None
        self._zygote_starts = 0
        self._ids = itertools.count()
        self._started = False
        self._warm = False
        self._closed = False
        self.restarts = 0  #: workers replaced after a timeout or crash (diagnostics)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    @property
    def started(self) -> bool:
        """Whether the workers have been started (by :meth:`start` or a first task)."""
        return self._started

    @property
    def zygote_pid(self) -> int | None:
        """PID of the fork server, if one is running (diagnostics)."""
        zygote = self._zygote
        return zygote.proc.pid if zygote is not None and zygote.alive() else None

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _launch(self) -> _Worker:
        if self.fork_server:
            if self._zygote is None or not self._zygote.alive():
                if self._zygote is not None:
                    self._zygote.close()
                self._zygote_starts += 1
                if self._zygote_starts > 3:  # it keeps dying: stop relying on it
                    self.fork_server, self._zygote = False, None
                    return self._launch()
                self._zygote = _Zygote(self.memory_limit_mb)
            try:
                return self._zygote.fork(self._wake)
            except OSError:
                self._zygote.close()
                self._zygote = None
                return self._launch()
        cmd, env = _worker_command(self.memory_limit_mb)
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=_stderr(), env=env,
            text=True, encoding="utf-8", bufsize=1, close_fds=True,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        return _Worker(proc.stdout, proc.stdin, self._wake, proc=proc)

    def _spawn_locked(self) -> None:
        if not self._closed:
            worker = self._launch()
            self._all.add(worker)
            self._idle.append(worker)
            self._cond.notify_all()

    def _retire(self, worker: _Worker) -> None:
        """Start a replacement for ``worker``, then kill it in the background.

        The caller does not wait for the kill: on a loaded machine the kernel can take a few
        hundred milliseconds to tear a process down, and that must not delay a verdict.
        """
        with self._cond:
            self._all.discard(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            self.restarts += 1
            self._spawn_locked()
        threading.Thread(target=worker.kill, name="reasonenv-grading-kill", daemon=True).start()

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            if self._closed:
                worker.kill()
                return
            self._idle.append(worker)
            self._cond.notify_all()

    def start(self) -> None:
        """Start the worker processes now (otherwise done on first :meth:`run`)."""
        with self._cond:
            if self._started or self._closed:
                return
            self._started = True
            for _ in range(self.n_workers):
                self._spawn_locked()

    def wait_warm(self) -> float:
        """Start the pool and wait (once) until a first worker is ready; return seconds waited.

        This one-time cold start (a fresh interpreter importing sympy and the grammar, ~3-4 s)
        is not charged to any caller's deadline; later restarts are. Bounded by
        ``startup_timeout``; returns early if a worker dies while starting.
        """
        if self._warm:
            return 0.0
        t0 = time.monotonic()
        self.start()
        with self._cond:
            while not (self._warm or self._closed):
                if any(w.ready for w in self._all):
                    self._warm = True
                elif any(w.dead for w in self._all):
                    break
                else:
                    remaining = t0 + self.startup_timeout - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
        return time.monotonic() - t0

    def _acquire(self, deadline: float) -> tuple[_Worker | None, str]:
        """Take a ready idle worker before ``deadline``; else ``(None, why)``."""
        broken: _Worker | None = None
        with self._cond:
            while True:
                if self._closed:
                    return None, "closed"
                for w in self._idle:
                    if w.ready and not w.dead:
                        self._idle.remove(w)
                        return w, ""
                for w in self._idle:
                    if w.dead or time.monotonic() - w.started > self.startup_timeout:
                        self._idle.remove(w)
                        broken = w
                        break
                if broken is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    starting = any(not w.ready for w in self._idle)
                    return None, "starting" if starting else "busy"
                self._cond.wait(remaining)
        was_ready = broken.ready
        self._retire(broken)
        if was_ready:  # an idle worker died (e.g. killed from outside): try the replacement
            return self._acquire(deadline)
        return None, f"failed to start ({broken.exit_detail()})"

    def run(self, task: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run one task; the whole call (queueing and restarts included) takes <= ``timeout``.

        Never raises. Only the pool's one-time cold start (see :meth:`wait_warm`) comes on top.

        Returns:
            The worker's result dict; or ``{"ok": False, "timeout": True, "error": ...,
            "detail": ...}`` when the budget ran out (``detail`` says where the time went); or
            ``{"ok": False, "error": ...}`` if the worker crashed or the pool is closed.
        """
        if self._closed:
            return {"ok": False, "error": "grader is closed"}
        self.wait_warm()
        t0 = time.monotonic()
        deadline = t0 + max(0.0, float(timeout))
        worker, why = self._acquire(deadline)
        if worker is None:
            if why == "closed":
                return {"ok": False, "error": "grader is closed"}
            if why.startswith("failed"):
                return {"ok": False, "error": f"grading worker {why}"}
            stage = "for a worker to restart" if why == "starting" else "for a free worker"
            return _timed_out(timeout, f"all of it waiting {stage}")
        waited = time.monotonic() - t0
        if waited >= deadline - t0:  # no time left to compute: keep the worker, report it
            self._release(worker)
            return _timed_out(timeout, "all of it waiting for a free worker")
        task = dict(task, id=next(self._ids))
        try:
            result = worker.request(task, deadline - time.monotonic())
        except TimeoutError:
            self._retire(worker)
            return _timed_out(timeout, f"{waited:.2f}s waiting for a worker, the rest computing; "
                                       "worker killed")  # fmt: skip
        except ConnectionError as exc:
            self._retire(worker)
            return {"ok": False, "error": f"grading worker crashed ({exc})"}
        self._release(worker)
        return result

    def run_on_each(self, task: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        """Run ``task`` once on every worker (diagnostics, e.g. clearing caches). Never raises.

        Holds all workers at once, so it waits for calls in flight; returns one result per
        worker reached within ``timeout``.
        """
        self.wait_warm()
        deadline = time.monotonic() + timeout
        held: list[_Worker] = []
        while len(held) < self.n_workers:
            worker, _ = self._acquire(deadline)
            if worker is None:
                break
            held.append(worker)
        results = []
        for worker in held:
            try:
                results.append(worker.request(dict(task, id=next(self._ids)),
                                              max(0.01, deadline - time.monotonic())))  # fmt: skip
                self._release(worker)
            except (TimeoutError, ConnectionError):
                self._retire(worker)
        return results

    def worker_pids(self) -> list[int]:
        """PIDs of the current worker processes (for diagnostics and tests)."""
        with self._cond:
            return sorted(w.pid for w in self._all if w.pid is not None)

    def close(self) -> None:
        """Stop all workers. Idempotent; later :meth:`run` calls return an error result."""
        with self._cond:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
            zygote, self._zygote = self._zygote, None
            self._cond.notify_all()
        for worker in workers:
            worker.kill()
        if zygote is not None:
            zygote.close()
