"""The ``reasonenv`` command line: ``train``, ``sft``, ``eval``, ``compare``, ``grade``, ``demo``, ``testbed``,
``verifier``, ``shapers``, ``envs``."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from typing import Any

# Sub-commands implemented in reasonenv.agents (torch-backed), found by module path so that the
# torch-free core never imports reasonenv.agents: "command": "module:function".
AGENT_COMMANDS = {
    "demo": "reasonenv.agents.demo:run_demo_command",
    "train": "reasonenv.agents.train_cli:run_train_command",
    "eval": "reasonenv.agents.eval_cli:run_eval_command",
    "sft": "reasonenv.agents.sft_cli:run_sft_command",
    "testbed": "reasonenv.agents.testbed:run_testbed_command",
    "verifier": "reasonenv.agents.verifier_cli:run_verifier_command",
}
# Arguments defined next to their agent command (torch-free modules), found the same way.
AGENT_ARGUMENTS = {"verifier": "reasonenv.agents.verifier_cli:add_verifier_arguments"}


def _agent_command(command: str, table: dict[str, str] = AGENT_COMMANDS) -> Any:
    module, func = table[command].split(":")
    return getattr(importlib.import_module(module), func)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reasonenv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    from reasonenv.grading.cli import add_grade_arguments

    add_grade_arguments(sub.add_parser("grade", help="grade a response against a reference answer"))

    demo = sub.add_parser("demo", help="run a scripted and a HF policy through MathSteps-v0")
    demo.add_argument("--model", default="smollm2-135m-instruct")
    demo.add_argument("--episodes", type=int, default=4)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--problems", default="procedural:arithmetic?difficulty=1")
    demo.add_argument("--skip-model", action="store_true", help="only the scripted policy")

    from reasonenv.shaping.cli import add_shapers_arguments

    add_shapers_arguments(sub.add_parser("shapers", help="list the registered reward shapers"))
    train = sub.add_parser("train", help="train a policy with the GRPO-family trainer")
    train.add_argument("--config", help="YAML config (configs/grpo.yaml, prl, progrs, pav, demo)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set optim.lr=1e-5 (repeatable)")
    train.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

    sft = sub.add_parser("sft", help="train the tiny testbed model on worked solutions (cached)")
    sft.add_argument("--config", help="YAML config (configs/tiny/sft.yaml)")
    sft.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set train.steps=300 (repeatable)")
    sft.add_argument("--force", action="store_true", help="retrain even when the folder is up to date")
    sft.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

    tb = sub.add_parser("testbed", help="tiny CPU testbed: SFT (cached), RL with a process reward, "
                        "held-out accuracy before and after (make demo)")
    tb.add_argument("--sft-config", default="configs/tiny/sft.yaml", help="reasonenv sft config")
    tb.add_argument("--config", default="configs/tiny/demo.yaml", help="trainer config of the RL run")
    tb.add_argument("--sft-set", dest="sft_overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override an SFT config value (repeatable)")
    tb.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a trainer config value, e.g. --set run.steps=30 (repeatable)")
    tb.add_argument("--eval-limit", type=int, default=128, help="held-out test problems (default 128)")
    tb.add_argument("--eval-n", type=int, default=4, help="samples per held-out problem (default 4)")

    from reasonenv.evaluation.cli import add_eval_arguments
    from reasonenv.evaluation.compare import add_compare_arguments

    add_eval_arguments(sub.add_parser("eval", help="evaluate a policy on benchmarks through the env"))
    add_compare_arguments(sub.add_parser("compare", help="two eval runs side by side, paired differences"))
    _agent_command("verifier", AGENT_ARGUMENTS)(sub.add_parser(
        "verifier", help="collect Monte-Carlo targets and train a PRM (PROGRS) or value head (PAV)"))
    sub.add_parser("envs", help="list the registered environment ids")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``reasonenv`` command."""
    if argv is None and hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `reasonenv ... | head` exits quietly
    args = build_parser().parse_args(argv)
    if args.command == "grade":
        from reasonenv.grading.cli import run_grade

        return run_grade(args)
    if args.command in AGENT_COMMANDS:
        return int(_agent_command(args.command)(args))
    if args.command == "compare":
        from reasonenv.evaluation.compare import run_compare

        return run_compare(args)
    if args.command == "shapers":
        from reasonenv.shaping.cli import run_shapers

        return run_shapers(args)
    if args.command == "envs":
        from reasonenv import ENV_IDS

        print("\n".join(ENV_IDS))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
