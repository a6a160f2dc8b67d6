"""``reasonenv train``: load and check the config, then run the trainer.

Exit codes: 0 done; 2 a bad config value (one line naming the key and the value, printed before
any model is loaded; ``--print-config`` rejects the same values); 1 the run could not continue
(a file it cannot write, no readable checkpoint), again one line naming the file and the cause.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

PREFIX = "reasonenv train"


def _one_line_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    print(f"{PREFIX}: warning: {message}", file=sys.stderr)


def run_train_command(args: Any) -> int:
    """Run ``reasonenv train`` from its argparse namespace; returns the exit code."""
    from reasonenv.agents.config import ConfigError, load_config
    from reasonenv.agents.hub_access import probed_unreachable
    from reasonenv.agents.preflight import check_config

    try:
        cfg = load_config(args.config, args.overrides)
        check_config(cfg)
    except ConfigError as e:
        print(f"{PREFIX}: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_plain(), sort_keys=False), end="")
        return 0
    if probed_unreachable():
        # The hub is down and every hub name is cached (else check_config failed): read the
        # caches directly instead of letting transformers / datasets retry the network first.
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
            os.environ.setdefault(var, "1")
    from reasonenv.agents.checkpoints import CheckpointError
    from reasonenv.agents.runlog import RunWriteError
    from reasonenv.agents.trainer import main as train_main
    from reasonenv.agents.trainer import print_summary

    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            history = train_main(cfg)
        except ConfigError as e:
            print(f"{PREFIX}: {e}", file=sys.stderr)
            return 2
        except (RunWriteError, CheckpointError) as e:
            print(f"{PREFIX}: {e}", file=sys.stderr)
            return 1
    print_summary(history, cfg)
    return 0
