"""``reasonenv shapers``: list the registered reward shapers and where they come from.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="reasonenv shapers")
    >>> add_shapers_arguments(parser)
    >>> run_shapers(parser.parse_args(["--json"]))  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any, TextIO


def add_shapers_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``reasonenv shapers`` to ``parser``.

    Args:
        parser: The (sub)parser of the ``shapers`` command.
    """
    parser.add_argument("--json", action="store_true", help="machine-readable output (a JSON object)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show each shaper's source, module and options with defaults")
    parser.add_argument("--strict", action="store_true",
                        help="fail (exit 1) if any plugin fails to load, as REASONENV_STRICT_PLUGINS=1")


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def run_shapers(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print the registered shapers; return the exit code.

    Columns: name, distribution, version, hook points, enters, services needed. Plugins that
    failed to load are listed on stderr (their warnings are folded into that list).

    Args:
        args: Parsed arguments (see :func:`add_shapers_arguments`).
        out: Output stream (default stdout).
        err: Error stream (default stderr).

    Returns:
        0, or 1 if discovery raised a ``PluginError`` (a duplicate name, or a broken plugin with
        ``--strict``).
    """
    from reasonenv.shaping.registry import PluginError, ReasonenvPluginWarning, default_registry

    out = out or sys.stdout
    err = err or sys.stderr
    reg = default_registry()
    saved_strict = reg.strict
    if getattr(args, "strict", False):
        reg.strict = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReasonenvPluginWarning)
            reg.reload()
            infos = reg.list_shapers()
            failures = reg.failures()
    except PluginError as exc:
        err.write(f"error: {exc}\n")
        return 1
    finally:
        reg.strict = saved_strict
    if getattr(args, "json", False):
        doc = {
            "shapers": [
                {"name": i.name, "distribution": i.distribution, "version": i.version, "source": i.source,
                 "module": i.module, "hook_points": list(i.hook_points), "enters": i.enters,
                 "services": list(i.services), "config": _jsonable(i.config)}
                for i in infos
            ],
            "failures": [
                {"distribution": f.distribution, "version": f.version, "source": f.source, "error": f.error}
                for f in failures
            ],
        }
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        rows = [("NAME", "DISTRIBUTION", "VERSION", "HOOKS", "ENTERS", "SERVICES")]
        for i in infos:
            rows.append((i.name, i.distribution or "-", i.version or "-", ",".join(i.hook_points) or "-",
                         i.enters, ",".join(i.services) or "-"))
        _table(rows, out)
        if getattr(args, "verbose", False):
            for i in infos:
                opts = ", ".join(f"{k}={v!r}" for k, v in i.config.items()) or "(none)"
                out.write(f"\n{i.name}\n  source:  {i.source}\n  module:  {i.module}\n  options: {opts}\n")
    for f in failures:
        err.write(f"warning: plugin {f.source} from {f.distribution or 'unknown distribution'} "
                  f"failed to load and was skipped: {f.error}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reasonenv.shaping.cli`` (same as ``reasonenv shapers``)."""
    parser = argparse.ArgumentParser(prog="reasonenv shapers", description="List the registered reward shapers.")
    add_shapers_arguments(parser)
    return run_shapers(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
