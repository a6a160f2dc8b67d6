"""``reasonenv grade``: grade one response from the command line.

Example:
    $ reasonenv grade --response 'so the answer is \\boxed{\\frac{1}{2}}' --reference 0.5
    correct: True  (numeric)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_grade_arguments", "main", "run_grade"]


def add_grade_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``grade`` options to ``parser`` (used for the ``reasonenv grade`` subcommand).

    Example:
        >>> p = argparse.ArgumentParser(); add_grade_arguments(p)
        >>> p.parse_args(["--response", "#### 4", "--reference", "4"]).reference
        '4'
    """
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--response", help="the model response text")
    src.add_argument(
        "--response-file", type=Path, help="read the response from this file ('-' = stdin)"
    )
    parser.add_argument("--reference", required=True, help="the gold answer")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="hard timeout in seconds (default 2)"
    )
    parser.add_argument(
        "--last-number", action="store_true", help="fall back to the last number in the response"
    )
    parser.add_argument(
        "--math-verify", action="store_true", help="also record math-verify's opinion"
    )


def run_grade(args: argparse.Namespace) -> int:
    """Grade using parsed arguments; print the verdict. Returns 0 if correct, 1 if not, 2 on error.

    Example:
        >>> p = argparse.ArgumentParser(); add_grade_arguments(p)
        >>> run_grade(p.parse_args(["--response", "#### 4", "--reference", "4"]))
        correct: True  (exact)
        0
    """
    from reasonenv.grading.grader import Grader, check_timeout

    if args.response_file is not None:
        try:
            if str(args.response_file) == "-":
                response = sys.stdin.read()
            else:
                response = args.response_file.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            print(f"error: cannot read {args.response_file}: {exc}", file=sys.stderr)
            return 2
    else:
        response = args.response
    try:
        check_timeout(args.timeout, field="--timeout")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with Grader(n_workers=1, timeout=args.timeout) as grader:
        verdict = grader.grade(
            response,
            args.reference,
            last_number_fallback=args.last_number,
            use_math_verify=getattr(args, "math_verify", False),
        )
    if args.json:
        print(json.dumps(verdict.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(f"correct: {verdict.correct}  ({verdict.reason})")
        if verdict.reason not in ("exact", "numeric", "symbolic"):
            print(f"extracted: {verdict.extracted!r}")
            print(f"normalised: {verdict.pred_normalized!r} vs {verdict.ref_normalized!r}")
        if verdict.error:
            print(f"detail: {verdict.error}")
        if verdict.second_opinion is not None:
            print(f"math-verify: {verdict.second_opinion}")
    if verdict.reason in ("error", "bad_reference", "timeout"):
        return 2
    return 0 if verdict.correct else 1


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m reasonenv.grading.cli --response ... --reference ...``.

    Example:
        >>> main(["--response", "The answer is 7.", "--reference", "8"])
        correct: False  (mismatch)
        extracted: '7'
        normalised: '7' vs '8'
        1
    """
    parser = argparse.ArgumentParser(prog="reasonenv grade", description="Grade a math answer.")
    add_grade_arguments(parser)
    return run_grade(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
