"""``MathStepsEnv.score_response`` time versus response length, for a few text shapes.

Each implementation runs in its own worker process: this checkout's ``reasonenv`` and, with
``--before-ref REF``, the ``reasonenv`` package (with its plugins) of an older commit, exported
with ``git archive`` into a temporary directory (``--before-src DIR`` takes such a directory). Calls alternate between the two workers (A B A B), so
a slow spell of the shared machine hits both. A call that takes longer than ``--budget``
seconds is stopped and the larger sizes of that shape are skipped for that side. The env has
its default limits (16 steps, 512 tokens, 8192 characters per step) and grades with the
default grader. Writes the table and the command under "## score_response time vs length" in
docs/benchmarks.md.

Usage:
    .venv/bin/python benchmarks/score_response_bench.py --before-ref 55f5fdc
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADING = "## score_response time vs length"
REPO = Path(__file__).resolve().parents[1]


SHAPE_NOTES = {
    "one paragraph": "no newline at all: one step, cut at max_step_chars",
    "single newlines only": "50-character lines and no blank line: one step for the default "
                            "split",
    "short steps": "18-character steps, each ending in a blank line",
    "unclosed box": "a first `\\boxed{` that never closes, with braces and escaped braces "
                    "inside",
    "answer phrase without newline": "`the answer is x ` repeated, no newline (the answer "
                                     "line never ends)",
}


def make_text(shape: str, n: int) -> str:
    """A response of exactly ``n`` characters of the given shape."""
    unit = {
        "one paragraph": "Adding the numbers one by one gives the total of the sum. ",
        "single newlines only": "Step: we add the next number to the total so far.\n",
        "short steps": "Step: 2 + 3 = 5.\n\n",
        "unclosed box": "so \\boxed{x + {y} - \\{z ",
        "answer phrase without newline": "the answer is x ",
    }[shape]
    if shape == "unclosed box":  # the first \boxed{ opens, no brace ever closes it
        return ("So " + unit * (n // len(unit) + 1))[:n]
    return (unit * (n // len(unit) + 1))[:n]


SHAPES = ["one paragraph", "single newlines only", "short steps", "unclosed box",
          "answer phrase without newline"]


def worker() -> None:
    """Serve timing requests on stdin: one JSON line in, one JSON line out."""
    import gymnasium as gym

    import reasonenv  # noqa: F401
    from reasonenv.problems import Problem

    problem = Problem(id="bench/0", question="What is 2 + 3?", answer="5", source="bench")
    env = gym.make("reasonenv/MathSteps-v0").unwrapped
    env.score_response(make_text("short steps", 1000), problem=problem)  # warm-up (grader, imports)
    import reasonenv.plugins

    where = str(Path(reasonenv.__file__).parent), str(Path(reasonenv.plugins.__file__).parent)
    print(json.dumps({"ready": " + ".join(where)}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        text = make_text(req["shape"], req["n"])
        t0, c0 = time.perf_counter(), time.process_time()
        records = env.score_response(text, problem=problem)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(json.dumps({"wall": wall, "cpu": cpu, "steps": len(records)}), flush=True)


class Worker:
    """A worker process running the ``reasonenv`` found first on ``src``."""

    def __init__(self, src: Path, budget: float) -> None:
        self.src, self.budget, self.proc = src, budget, None
        self.where = ""

    def _start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(self.src))
        self.proc = subprocess.Popen(  # cwd outside both checkouts: PYTHONPATH decides
            [sys.executable, str(Path(__file__).resolve()), "--worker"], cwd="/", env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.where = json.loads(self._read(600))["ready"]

    def _read(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        if not ready:
            raise TimeoutError
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker on {self.src} exited")
        return line

    def time(self, shape: str, n: int) -> tuple[float, float] | None:
        """(CPU, wall-clock) seconds of one call, or None when it ran past the budget (wall
        clock; the worker is then stopped)."""
        if self.proc is None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"shape": shape, "n": n}) + "\n")
        self.proc.stdin.flush()
        try:
            got = json.loads(self._read(self.budget))
            return float(got["cpu"]), float(got["wall"])
        except TimeoutError:
            self.close()
            return None

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def summary(times: list[tuple[float, float]], timed_out: bool, budget: float) -> str:
    """``CPU median (min-max) / wall median`` in seconds."""
    if timed_out:
        return f"> {budget:.0f} wall (not finished)"
    if not times:
        return "not run (a smaller size ran past the budget)"
    cpu = [c for c, _ in times]
    wall = statistics.median(w for _, w in times)
    return f"{statistics.median(cpu):.4f} ({min(cpu):.4f}-{max(cpu):.4f}) / {wall:.4f}"


def cpu_median(times: list[tuple[float, float]]) -> float:
    return statistics.median(c for c, _ in times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="response lengths (chars)")
    ap.add_argument("--repeats", type=int, default=5, help="calls per size and side")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds before a call is stopped")
    ap.add_argument("--before-ref", help="git commit whose reasonenv to run side by side")
    ap.add_argument("--before-src", type=Path, help="directory with an older reasonenv package")
    ap.add_argument("--before-label", help="name of the older code in the table")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated text shapes")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker()
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    shapes = args.shapes.split(",")
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    sides = {f"after ({commit})": Worker(REPO, args.budget)}
    before_src = args.before_src
    if args.before_ref is not None:
        before_src = Path(tempfile.mkdtemp(prefix="reasonenv-before-"))
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.before_ref, "reasonenv", "plugins", "agents"],
            capture_output=True, check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(before_src)], input=archive, check=True)
        for sub in ("plugins", "agents"):  # installed as reasonenv.plugins / reasonenv.agents
            (before_src / sub).rename(before_src / "reasonenv" / sub)
    if before_src is not None:
        label = args.before_label or f"before ({args.before_ref or before_src})"
        sides[label] = Worker(before_src.resolve(), args.budget)
    load_start = os.getloadavg()[0]
    results: dict[tuple[str, str, int], tuple[list[tuple[float, float]], bool]] = {}
    try:
        for shape in shapes:
            stopped = set()
            for n in sizes:
                got: dict[str, tuple[list[tuple[float, float]], bool]] = {
                    side: ([], False) for side in sides
                }
                for _ in range(args.repeats):
                    for side, w in sides.items():  # A B A B ...
                        if side in stopped:
                            continue
                        t = w.time(shape, n)
                        if t is None:
                            got[side] = (got[side][0], True)
                            stopped.add(side)
                        else:
                            got[side][0].append(t)
                for side in sides:
                    results[(side, shape, n)] = got[side]
                    times, out = got[side]
                    print(f"{shape:28s} {n:>9,} {side:>14s}: {summary(times, out, args.budget)}",
                          flush=True)
    finally:
        for side, w in sides.items():
            print(f"{side} ran {w.where}")
            w.close()
        if args.before_ref is not None and before_src is not None:
            shutil.rmtree(before_src)
    load_end = os.getloadavg()[0]

    names = list(sides)
    head = "| text shape | chars | " + " | ".join(
        f"{s}: CPU s median (min-max) / wall median" for s in names
    )
    if len(names) == 2:
        head += f" | {names[1]} / after"
    lines = [head + " |", "|" + "---|" * head.count("|")]
    for shape in shapes:
        for n in sizes:
            cells = [summary(*results[(s, shape, n)], args.budget) for s in names]
            row = f"| {shape} | {n:,} | " + " | ".join(cells)
            if len(names) == 2:
                (a, _), (b, b_out) = results[(names[0], shape, n)], results[(names[1], shape, n)]
                if a and b:
                    row += f" | {cpu_median(b) / cpu_median(a):,.0f}x"
                elif a and b_out:
                    wall = statistics.median(w for _, w in a)
                    row += f" | > {args.budget / wall:,.0f}x (wall)"
                else:
                    row += " | "
            lines.append(row + " |")
    cmd = ".venv/bin/python benchmarks/score_response_bench.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    body = "\n".join([
        f"`MathStepsEnv.score_response(text)` on responses of {', '.join(f'{n:,}' for n in sizes)} "
        "characters, default env limits (16 steps, 512 tokens, 8192 characters per step: the "
        "steps past the limits are never scored, but the whole response is segmented and "
        "searched for a final answer), default grader. Per call: the median and range of the "
        "worker's CPU seconds (what a call costs, whatever else the shared machine runs) and "
        "the median wall-clock seconds; the ratio column compares CPU medians. "
        f"{args.repeats} calls per cell, each side in its own worker process, calls "
        f"alternating between the sides; a call stopped after {args.budget:.0f} s ends its "
        f"shape's larger sizes. {platform.machine()}, {os.cpu_count()} cores, shared machine "
        f"(load average {load_start:.1f} at the start, {load_end:.1f} at the end).",
        "",
        "Shapes: " + "; ".join(f"*{k}*: {SHAPE_NOTES[k]}" for k in shapes) + ".",
        "",
        *lines,
        "",
        f"Reproduce: `{cmd}`",
    ])
    print()
    print(body)
    if not args.no_write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _docs import replace_section

        replace_section(HEADING, body)


if __name__ == "__main__":
    main()
