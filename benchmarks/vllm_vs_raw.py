"""VLLMPolicy's tokens/s against raw ``vllm.LLM.generate`` of the same prompts and lengths.

Two engines with the same options run side by side: the policy's worker (``VLLMPolicy``: JSON
pipe, one request per step, the parent cutting steps with the segmenter and decoding each token
incrementally) and a bare process that builds the same ``vllm.LLM`` (the worker's own engine
constructor, so dtype, KV cache size, prefix caching and compilation mode are equal) and calls
``llm.generate`` itself. Rounds are interleaved (raw, policy 1 step, policy K steps, then the
reverse), after one warm-up each; the idle engine waits on a pipe. Both stop a row at EOS, so
the table compares tokens per second, not seconds.

    REASONENV_VLLM_PYTHON=.venv-vllm/bin/python .venv/bin/python benchmarks/vllm_vs_raw.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RAW = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from vllm_worker import Engine  # the policy worker's engine constructor: the same vllm.LLM
from vllm import SamplingParams
from vllm.inputs import TokensPrompt
eng = Engine(sys.argv[2], json.loads(sys.argv[3]))
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    params = [SamplingParams(temperature=1.0, max_tokens=req["max_tokens"], seed=req["seed"] + i,
                             logprobs=0) for i in range(len(req["prompts"]))]
    t0, c0 = time.perf_counter(), time.process_time()
    outs = eng.llm.generate([TokensPrompt(prompt_token_ids=p) for p in req["prompts"]], params,
                            use_tqdm=False)
    n = sum(len(o.outputs[0].token_ids) for o in outs)
    print(json.dumps({"tokens": n, "wall": time.perf_counter() - t0}), flush=True)
"""


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (vLLM's engine-core processes)."""
    stats: dict[int, tuple[int, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    s = f.read().rsplit(")", 1)[1].split()
                stats[int(d)] = (int(s[1]), (int(s[11]) + int(s[12])) / tick)
            except (OSError, ValueError, IndexError):
                pass
    tree, frontier = {pid}, [pid]
    while frontier:
        kids = [p for p, (pp, _) in stats.items() if pp in frontier and p not in tree]
        tree.update(kids)
        frontier = kids
    return sum(stats[p][1] for p in tree if p in stats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4, help="K steps of the multi-step policy row")
    ap.add_argument("--step-tokens", type=int, default=32, help="S tokens per step")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kv-gib", type=float, default=0.5)
    ap.add_argument("--compile", action="store_true", help="torch.compile in both engines")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()

    import numpy as np
    from _bench import machine_note, med, paired
    from _docs import replace_section
    from transformers import AutoTokenizer

    from reasonenv.agents.vllm_policy import (
        VLLMEngine,
        VLLMEngineConfig,
        VLLMPolicy,
        VLLMPolicyConfig,
        default_python,
    )
    from reasonenv.models.assets import resolve_model
    from reasonenv.problems import make_source

    python = default_python()
    if python == sys.executable:
        sys.exit("set REASONENV_VLLM_PYTHON to the interpreter with vLLM (scripts/setup_vllm_venv.sh)")
    path = resolve_model(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    rng = np.random.default_rng(0)
    src = make_source("procedural:arithmetic?difficulty=1")
    prompts = [tok.apply_chat_template([{"role": "user", "content": src.sample(rng).question}],
                                       tokenize=False, add_generation_prompt=True)
               for _ in range(args.rows)]
    prompt_ids = [tok.encode(p, add_special_tokens=False) for p in prompts]
    K, S = args.steps, args.step_tokens
    ecfg = VLLMEngineConfig(compile=args.compile, cpu_kv_cache_gib=args.kv_gib, max_model_len=1024)
    engine = VLLMEngine(path, python=python, config=ecfg)
    engine_opts = {k: v for k, v in vars(ecfg).items() if k not in ("startup_timeout", "request_timeout")}
    raw = subprocess.Popen([python, "-c", RAW, str(HERE.parent / "agents"), path, json.dumps(engine_opts)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert raw.stdin is not None and raw.stdout is not None

    def raw_reply() -> dict[str, Any]:
        assert raw.stdout is not None
        for line in raw.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"the raw vLLM process exited ({raw.wait()})")

    raw_reply()  # ready
    one = VLLMPolicy(path, tok, VLLMPolicyConfig(temperature=1.0, max_step_tokens=K * S,
                                                 split=f"fixed:{K * S}", seed=0), engine=engine)
    many = VLLMPolicy(path, tok, VLLMPolicyConfig(temperature=1.0, max_step_tokens=S,
                                                  split=f"fixed:{S}", seed=0), engine=engine)
    calls = {"n": 0}

    def run_raw() -> dict[str, float]:
        calls["n"] += 1
        c0 = tree_cpu(raw.pid)
        t0 = time.perf_counter()
        raw.stdin.write(json.dumps({"prompts": prompt_ids, "max_tokens": K * S, "seed": 1000 * calls["n"]}) + "\n")
        raw.stdin.flush()
        rep = raw_reply()
        return {"tokens": rep["tokens"], "wall": time.perf_counter() - t0,
                "cpu": tree_cpu(raw.pid) - c0}

    def run_policy(pol: VLLMPolicy, steps: int) -> dict[str, float]:
        c0, p0 = tree_cpu(engine._proc.pid), time.process_time()
        t0 = time.perf_counter()
        slots = list(range(args.rows))
        pol.reset(slots)
        obs, live, n = list(prompts), list(slots), 0
        for _ in range(steps):
            acts = pol.act([obs[i] for i in live], live)
            for i, a in zip(list(live), acts):
                n += len(a["token_ids"])
                obs[i] += a["text"]
                if a["eos"]:
                    live.remove(i)
            if not live:
                break
        return {"tokens": n, "wall": time.perf_counter() - t0,
                "cpu": tree_cpu(engine._proc.pid) - c0 + time.process_time() - p0}

    contenders = {"raw `vllm.LLM.generate`": run_raw,
                  "VLLMPolicy, 1 step": lambda: run_policy(one, 1),
                  f"VLLMPolicy, {K} steps": lambda: run_policy(many, K)}
    names = list(contenders)
    for name in names:  # warm-up
        contenders[name]()
    res: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            res[name].append(contenders[name]())
            x = res[name][-1]
            print(f"round {r + 1} {name}: {x['tokens']:.0f} tokens, {x['wall']:.2f} s wall, "
                  f"{x['cpu']:.2f} s CPU", flush=True)
    c0 = tree_cpu(engine._proc.pid)
    time.sleep(5)
    idle = (tree_cpu(engine._proc.pid) - c0) / 5
    raw.stdin.close()
    raw.wait(timeout=60)
    engine.close()

    tps = {n: [x["tokens"] / x["wall"] for x in res[n]] for n in names}
    tpc = {n: [x["tokens"] / x["cpu"] for x in res[n]] for n in names}
    base = names[0]
    lines = [
        f"Model {args.model} ({engine.info.get('dtype')}, vllm {engine.info.get('vllm')} on "
        f"{engine.info.get('platform')}), {args.rows} rows, {K * S} sampled tokens per row at "
        f"most (temperature 1, a row stops at EOS), {K} x {S}-token steps for the multi-step "
        f"row; {'torch.compile on' if args.compile else 'no torch.compile'}, {args.kv_gib} GiB KV "
        f"cache in each engine; {args.rounds} interleaved rounds after one warm-up each. CPU time "
        f"= the engine's process tree (and, for the policy, this process). The idle engine used "
        f"{idle * 100:.1f} % of a core while waiting. {machine_note()}.", "",
        "| contender | tokens per call | tokens/s (wall) | vs raw, wall (paired) | tokens per CPU s | vs raw, CPU (paired) |",
        "|---|---|---|---|---|---|",
    ]
    for n in names:
        lines.append(f"| {n} | {med([x['tokens'] for x in res[n]], '{:.0f}')} | {med(tps[n], '{:.0f}')} | "
                     f"{paired(tps[n], tps[base])} | {med(tpc[n], '{:.0f}')} | {paired(tpc[n], tpc[base])} |")
    cmd = " ".join(["REASONENV_VLLM_PYTHON=.venv-vllm/bin/python .venv/bin/python benchmarks/vllm_vs_raw.py",
                    *sys.argv[1:]])
    lines += ["", f"Reproduce: `{cmd}` (after `bash scripts/setup_vllm_venv.sh`)"]
    text = "\n".join(lines)
    print(text)
    if not args.no_docs:
        replace_section("## VLLMPolicy vs raw vLLM generate (`benchmarks/vllm_vs_raw.py`)", text)


if __name__ == "__main__":
    main()
