"""``reasonenv sft``: load and check the config, then train the tiny model (or find it cached)."""

from __future__ import annotations

import sys
from typing import Any


def run_sft_command(args: Any) -> int:
    """Run ``reasonenv sft`` from its argparse namespace; returns the exit code."""
    from reasonenv.agents.config import ConfigError
    from reasonenv.agents.sft import format_summary, load_sft_config, run_sft

    overrides = list(args.overrides) + (["run.force=true"] if args.force else [])
    try:
        cfg = load_sft_config(args.config, overrides)
    except ConfigError as e:
        print(f"reasonenv sft: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        print(f"# config hash: {cfg.config_hash()}")
        return 0
    try:
        result = run_sft(cfg)
    except ConfigError as e:
        print(f"reasonenv sft: {e}", file=sys.stderr)
        return 2
    print(format_summary(result, cfg))
    return 0
