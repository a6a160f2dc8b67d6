"""The vLLM worker process behind :class:`reasonenv.agents.vllm_policy.VLLMPolicy`.

It runs a ``vllm.LLM`` engine and answers requests over a JSON-lines protocol on stdin/stdout,
so the trainer (torch + transformers) and vLLM can live in different virtual environments.
It imports only the standard library and vLLM (never ``reasonenv``), and is started by FILE
PATH: ``<python> /path/to/vllm_worker.py``, so it runs in any interpreter that has vLLM, with
or without reasonenv installed (``python -m reasonenv.agents.vllm_worker`` works too where
reasonenv and its core dependencies are installed).

Protocol (one JSON object per line; every request carries an integer ``id``):

* worker -> parent, once at start-up: ``{"id": 0, "event": "hello", "pid": ..., "python": ...}``
* ``{"id", "op": "init", "model": path, "engine": {...}}`` -> ``{"id", "ok": true, "result":
  {"vllm": version, "dtype": ..., "startup_s": ...}}``. Creates the engine; must come first.
* ``{"id", "op": "generate", "prompts": [[int]], "n", "temperature", "top_p", "max_tokens":
  int | [int], "stop": [str] | null, "stop_token_ids": [int] | null, "seeds": [int | null] |
  null, "logprobs": bool, "skip_special_tokens": bool}`` -> ``result``: per prompt, ``n``
  completions ``{"token_ids", "logprobs" (sampled token's log-prob, or null), "text",
  "finish_reason", "stop_reason"}``.
* ``{"id", "op": "reload", "path": folder}`` -> loads new weights in place from a safetensors
  folder and resets the prefix cache (cached KV blocks were computed with the old weights).
* ``{"id", "op": "ping"}`` / ``{"id", "op": "shutdown"}``.

A failed request is answered with ``{"id", "ok": false, "error": str, "traceback": str}``;
the worker keeps serving. The worker exits when stdin closes or its parent dies.

Everything vLLM (or C++ code) prints goes to stderr: the protocol has its own copy of the
original stdout file descriptor, and fd 1 is pointed at stderr before vLLM is imported.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, TextIO

DEFAULT_CPU_KVCACHE_GIB = 2

# Started as a script, this file's folder (agents/: policy.py, hf.py, ...) heads sys.path;
# drop it so those files cannot shadow other modules.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)


def _cpu_bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 natively (AVX512-BF16 or AMX); vLLM is slow without."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, c, lambda: False)()) for c in checks)


def _resolve_dtype(dtype: str, is_cpu: bool) -> str:
    """``"auto"`` -> bfloat16 on CPUs with native bf16, float32 on other CPUs, else vLLM's auto."""
    if dtype != "auto":
        return dtype
    if is_cpu:
        return "bfloat16" if _cpu_bf16_supported() else "float32"
    return "auto"


class Engine:
    """A ``vllm.LLM`` plus the request handlers of the protocol.

    Args:
        model: A safetensors model folder (config + weights + tokenizer files).
        engine: Engine options: ``dtype``, ``max_model_len``, ``enable_prefix_caching``,
            ``seed``, ``tensor_parallel_size``, ``gpu_memory_utilization`` (GPU),
            ``cpu_kv_cache_gib`` (CPU KV cache size, default 2), ``logprobs_mode``,
            ``enforce_eager``, ``compile`` (False skips torch.compile: faster start-up, slower
            decoding) and ``extra`` (more keyword arguments for ``vllm.LLM``).
    """

    def __init__(self, model: str, engine: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        if not os.path.isdir(model):
            raise FileNotFoundError(f"model folder {model!r} does not exist (vLLM needs a safetensors folder)")
        import vllm
        from vllm import LLM
        from vllm.platforms import current_platform

        is_cpu = bool(current_platform.is_cpu())
        dtype = _resolve_dtype(str(engine.get("dtype", "auto")), is_cpu)
        kwargs: dict[str, Any] = dict(
            model=model,
            dtype=dtype,
            seed=int(engine.get("seed", 0)),
            enable_prefix_caching=bool(engine.get("enable_prefix_caching", True)),
            tensor_parallel_size=int(engine.get("tensor_parallel_size", 1)),
            logprobs_mode=engine.get("logprobs_mode", "processed_logprobs"),
            enforce_eager=bool(engine.get("enforce_eager", False)),
        )
        if engine.get("max_model_len"):
            kwargs["max_model_len"] = int(engine["max_model_len"])
        if is_cpu:
            # KV cache size in bytes (VLLM_CPU_KVCACHE_SPACE, in GiB, still wins when set).
            gib = float(engine.get("cpu_kv_cache_gib") or DEFAULT_CPU_KVCACHE_GIB)
            kwargs["kv_cache_memory_bytes"] = int(gib * (1 << 30))
        elif engine.get("gpu_memory_utilization") is not None:
            kwargs["gpu_memory_utilization"] = float(engine["gpu_memory_utilization"])
        if not engine.get("compile", True):
            kwargs["compilation_config"] = {"mode": 0}  # CompilationMode.NONE
        kwargs.update(engine.get("extra") or {})
        # reload() sends a function to the engine's worker processes (collective_rpc), which
        # vLLM only accepts with this set; the engine's sockets are local to this machine.
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        self.llm = LLM(**kwargs)
        self.info = {
            "vllm": vllm.__version__,
            "platform": "cpu" if is_cpu else str(current_platform.device_name),
            "dtype": dtype,
            "model": model,
            "max_model_len": int(self.llm.llm_engine.model_config.max_model_len),
            "startup_s": round(time.perf_counter() - t0, 2),
        }

    def generate(self, req: dict[str, Any]) -> list[list[dict[str, Any]]]:
        """Sample ``n`` completions per prompt (token-id prompts; one SamplingParams each)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts: list[list[int]] = req["prompts"]
        k = len(prompts)
        max_tokens = req.get("max_tokens", 16)
        max_tokens = max_tokens if isinstance(max_tokens, list) else [max_tokens] * k
        seeds = req.get("seeds") or [None] * k
        want_lp = bool(req.get("logprobs", True))
        params = [
            SamplingParams(
                n=int(req.get("n", 1)),
                temperature=float(req.get("temperature", 1.0)),
                top_p=float(req.get("top_p", 1.0)),
                max_tokens=int(mt),
                stop=req.get("stop") or None,
                stop_token_ids=req.get("stop_token_ids") or None,
                include_stop_str_in_output=True,
                seed=None if seed is None else int(seed),
                logprobs=0 if want_lp else None,
                skip_special_tokens=bool(req.get("skip_special_tokens", False)),
            )
            for mt, seed in zip(max_tokens, seeds)
        ]
        inputs = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        outs = self.llm.generate(inputs, params, use_tqdm=False)
        result = []
        for out in outs:
            comps = []
            for o in sorted(out.outputs, key=lambda o: o.index):
                ids = [int(t) for t in o.token_ids]
                lps = None
                if want_lp and o.logprobs is not None:
                    lps = [float(d[t].logprob) for d, t in zip(o.logprobs, ids)]
                sr = o.stop_reason
                comps.append({"token_ids": ids, "logprobs": lps, "text": o.text,
                              "finish_reason": o.finish_reason,
                              "stop_reason": sr if isinstance(sr, (str, int)) or sr is None else str(sr)})
            result.append(comps)
        return result

    def reload(self, path: str) -> dict[str, Any]:
        """Load the weights of the safetensors folder ``path`` in place; drop the prefix cache."""
        if not os.path.isdir(path):
            raise FileNotFoundError(f"weights folder {path!r} does not exist")
        t0 = time.perf_counter()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": path})
        self.llm.collective_rpc(_refresh_embedding_kernels)
        self.llm.reset_prefix_cache()
        return {"reload_s": round(time.perf_counter() - t0, 3)}


def _refresh_embedding_kernels(worker: Any) -> int:
    """Re-run weight post-processing of unquantized (vocab) embedding layers, incl. the LM head.

    On CPU, vLLM packs the LM head's weight into a GEMM kernel handle at load time. The in-place
    reload restores a tied head (its checkpoint has no ``lm_head.weight``) without re-packing,
    so logits would still use the OLD embedding matrix. Idempotent; a no-op on GPU.
    """
    from vllm.model_executor.layers.vocab_parallel_embedding import UnquantizedEmbeddingMethod

    n = 0
    for module in worker.model_runner.get_model().modules():
        method = getattr(module, "quant_method", None)
        if isinstance(method, UnquantizedEmbeddingMethod):
            method.process_weights_after_loading(module)
            n += 1
    return n


class _Server:
    """Reads requests from ``inp`` and writes replies to ``out`` until shutdown or EOF."""

    def __init__(self, inp: TextIO, out: TextIO) -> None:
        self.inp, self.out = inp, out
        self.engine: Engine | None = None

    def send(self, msg: dict[str, Any]) -> None:
        self.out.write(json.dumps(msg) + "\n")
        self.out.flush()

    def handle(self, req: dict[str, Any]) -> Any:
        op = req.get("op")
        if op == "ping":
            return {"pid": os.getpid(), "ready": self.engine is not None}
        if op == "init":
            if self.engine is not None:
                raise RuntimeError("engine already initialised")
            self.engine = Engine(str(req["model"]), dict(req.get("engine") or {}))
            return self.engine.info
        if self.engine is None:
            raise RuntimeError(f"op {op!r} before 'init'")
        if op == "generate":
            return self.engine.generate(req)
        if op == "reload":
            return self.engine.reload(str(req["path"]))
        raise ValueError(f"unknown op {op!r}")

    def serve(self) -> None:
        self.send({"id": 0, "event": "hello", "pid": os.getpid(), "python": sys.executable})
        for line in self.inp:
            if not line.strip():
                continue
            rid = None
            try:
                req = json.loads(line)
                rid = req.get("id")
                if req.get("op") == "shutdown":
                    self.send({"id": rid, "ok": True, "result": None})
                    return
                self.send({"id": rid, "ok": True, "result": self.handle(req)})
            except BaseException as e:  # noqa: BLE001 - every failure goes back to the parent
                self.send({"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}",
                           "traceback": traceback.format_exc()})
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    return


def _watch_parent(parent: int) -> None:
    """Kill this worker's process group (engine subprocesses included) if the parent dies."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            try:
                os.killpg(os.getpgrp(), signal.SIGKILL)
            finally:
                os._exit(1)


def main() -> int:
    """Run the worker: protocol on the original stdout, everything else to stderr."""
    proto_fd = os.dup(1)
    os.dup2(2, 1)  # prints from vLLM and C++ code land on stderr, not in the protocol
    out = os.fdopen(proto_fd, "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    server = _Server(sys.stdin, out)
    try:
        server.serve()
    finally:
        out.flush()
    # vLLM's own shutdown can take seconds (it waits for its engine processes) and the parent
    # waits for this process: once the reply is out, end our process group (the parent starts
    # the worker as a session leader) and exit.
    if os.getpgrp() == os.getpid():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            os.killpg(os.getpgrp(), signal.SIGTERM)
        except OSError:
            pass
    os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
