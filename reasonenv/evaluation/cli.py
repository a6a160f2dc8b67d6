"""Command-line arguments of ``reasonenv eval`` (run by :mod:`reasonenv.agents.eval_cli`, which
builds the policies) and ``reasonenv compare`` (:mod:`reasonenv.evaluation.compare`)."""

from __future__ import annotations

import argparse


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``reasonenv eval``."""
    p.add_argument("--policy", required=True, help="model folder / packaged name / hub id, vllm:<model>, "
                   "openai:<base_url>:<model>, scripted:oracle|corrupt, python:<module>:<obj>, sb3:<zip>")
    p.add_argument("--benchmark", dest="benchmarks", help="comma-separated problem sources "
                   "(math500, gsm8k, minerva, svamp, asdiv, mawps, math, procedural:..., aime24, amc23, olympiadbench)")
    p.add_argument("--preset", help="a protocol in configs/eval/ (prl, progrs) or a YAML file")
    p.add_argument("--n", type=int, help="samples per problem (default 8)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default 1.0)")
    p.add_argument("--top-p", dest="top_p", type=float, help="nucleus mass (default 1.0)")
    p.add_argument("--limit", type=int, help="at most this many problems per benchmark")
    p.add_argument("--max-tokens", dest="max_tokens", type=int, help="response token budget (default 1024)")
    p.add_argument("--shapers", help="shapers to run and diagnose: names or a YAML list, e.g. "
                   "'prl' or '[{name: progrs, lam: 0.1}]'")
    p.add_argument("--services", help="services for the shapers as YAML, e.g. '{prm: heuristic}'")
    p.add_argument("--out", help="run folder: samples.jsonl, results.json, passk.png (resumable)")
    p.add_argument("--no-resume", dest="resume", action="store_false", help="start over in --out")
    p.add_argument("--batch", type=int, default=4, help="problems rolled out together (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", help="step delimiter (default \\n\\n)")
    p.add_argument("--chat", choices=("auto", "on", "off"), default=None,
                   help="render prompts with the tokenizer's chat template (auto: when it has one)")
    p.add_argument("--openai-mode", dest="openai_mode", choices=("chat", "completions"), default="chat",
                   help="openai: endpoint; chat suits instruct models (default)")
    p.add_argument("--last-number-fallback", dest="last_number_fallback", action="store_true", default=None,
                   help="grade the last number when no final answer is marked")
    p.add_argument("--dtype", default="float32", help="HF/vLLM weights dtype")
    p.add_argument("--json", action="store_true", help="print results.json instead of the table")
    p.add_argument("--no-progress", dest="progress", action="store_false")
