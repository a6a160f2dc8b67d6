"""``reasonenv train``: load and check the config, then run the trainer."""

from __future__ import annotations

import sys
from typing import Any


def run_train_command(args: Any) -> int:
    """Run ``reasonenv train`` from its argparse namespace; returns the exit code."""
    from reasonenv.agents.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"reasonenv train: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_plain(), sort_keys=False), end="")
        return 0
    from reasonenv.agents.trainer import main as train_main
    from reasonenv.agents.trainer import print_summary

    print_summary(train_main(cfg), cfg)
    return 0
