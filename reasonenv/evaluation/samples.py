"""Eval sample records and the run folder that keeps them: ``samples.jsonl`` (appended as groups
finish, so an interrupted run resumes), ``eval_config.json``, ``results.json``, ``passk.png``.

One line of ``samples.jsonl`` per sample::

    {"benchmark", "problem_id", "sample", "prompt", "response", "steps", "step_tokens",
     "n_tokens", "answer", "verdict", "correct", "extracted", "reference_ok", "reason",
     "truncated", "reward_terms" (per step: {shaper: term}), "episode_terms", "group_terms",
     "token_terms_sum", "variant" ("worked" | "corrupted" | null), "first_error_step"}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Settings that may differ between a run and its resumption without changing the samples.
_VOLATILE = ("limit", "progress", "out_dir", "resume")


def _variant(steps: Sequence[str], problem: Any) -> str | None:
    """``"worked"`` / ``"corrupted"`` when the response is that worked solution of the problem."""
    clean = [s.strip() for s in steps if s.strip()]
    meta = problem.metadata
    if "solution_steps" in meta and clean == [s.strip() for s in meta["solution_steps"]]:
        return "worked"
    if "corrupted_steps" in meta and clean == [s.strip() for s in meta["corrupted_steps"]]:
        return "corrupted"
    return None


def sample_of(benchmark: str, problem: Any, group: Any, j: int) -> dict[str, Any]:
    """The JSON-ready record of member ``j`` of a finished group (a ``GroupResult``).

    ``n_tokens`` / ``step_tokens`` count tokens when the policy gave token ids, else characters.
    """
    ep = group.episodes[j]
    verdict = dict(group.verdicts[j])
    if all(ids is not None for ids in ep.step_token_ids):
        step_tokens = list(ep.step_lengths)
    else:
        step_tokens = [len(s) for s in ep.steps]
    return {
        "benchmark": benchmark,
        "problem_id": problem.id,
        "sample": j,
        "prompt": ep.prompt,
        "response": ep.response,
        "steps": list(ep.steps),
        "step_tokens": step_tokens,
        "n_tokens": int(sum(step_tokens)),
        "answer": problem.answer,
        "verdict": verdict,
        "correct": bool(verdict.get("correct", False)),
        "extracted": verdict.get("extracted"),
        "reference_ok": bool(verdict.get("reference_ok", True)),
        "reason": verdict.get("reason"),
        "truncated": not bool(ep.terminated),
        "reward_terms": [dict(t) for t in group.reward_terms[j]],
        "episode_terms": dict(ep.episode_terms),
        "group_terms": {k: float(v[j]) for k, v in group.group_terms.items()},
        "token_terms_sum": {k: float(sum(v)) for k, v in ep.token_terms.items()},
        "variant": _variant(ep.steps, problem),
        "first_error_step": problem.metadata.get("first_error_step"),
    }


class SampleStore:
    """An eval run folder.

    Args:
        out_dir: The folder (created).
        config: The run's settings; a resumed run must have the same (``limit`` may differ).
        resume: Keep the finished problems of an existing ``samples.jsonl``; else start over.
        n: Samples per problem: a problem with fewer lines (an interrupted write) is redone.

    Raises:
        ValueError: Resuming a folder written with other settings (names the differing keys).
        OSError: The folder cannot be created or written (the message names the path).
    """

    def __init__(self, out_dir: str | Path, config: Mapping[str, Any], *, resume: bool, n: int) -> None:
        self.dir = Path(out_dir)
        if self.dir.exists() and not self.dir.is_dir():
            raise NotADirectoryError(f"eval out_dir {str(self.dir)!r} exists and is not a folder")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.samples_path = self.dir / "samples.jsonl"
        self.n = n
        cfg_path = self.dir / "eval_config.json"
        plain = json.loads(json.dumps(dict(config), default=repr))
        if resume and cfg_path.exists() and self.samples_path.exists():
            old = json.loads(cfg_path.read_text(encoding="utf-8"))
            diff = sorted(k for k in set(old) | set(plain) if k not in _VOLATILE and old.get(k) != plain.get(k))
            if diff:
                raise ValueError(
                    f"{str(self.dir)!r} holds an eval run with other settings ({', '.join(diff)}: "
                    f"{ {k: old.get(k) for k in diff} } vs { {k: plain.get(k) for k in diff} }); "
                    "use another out_dir or resume=False"
                )
        elif self.samples_path.exists() and not resume:
            self.samples_path.unlink()
        _atomic_write(cfg_path, json.dumps(plain, indent=2))

    def finished(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """The problems with all ``n`` samples on disk; the file is rewritten without the rest."""
        if not self.samples_path.exists():
            return {}
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for line in self.samples_path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by an interruption
                continue
            groups.setdefault((rec["benchmark"], rec["problem_id"]), []).append(rec)
        done = {k: sorted(v, key=lambda r: r["sample"]) for k, v in groups.items()
                if len({r["sample"] for r in v}) == self.n}
        for k in done:
            seen: dict[int, dict[str, Any]] = {r["sample"]: r for r in done[k]}
            done[k] = [seen[i] for i in sorted(seen)]
        _atomic_write(self.samples_path, "".join(json.dumps(r) + "\n" for recs in done.values() for r in recs))
        return done

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append one finished problem's samples (flushed to disk)."""
        with open(self.samples_path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())

    def write_results(self, result: Any) -> None:
        """``results.json`` and the pass@k plot ``passk.png``."""
        _atomic_write(self.dir / "results.json", json.dumps(result.to_dict(), indent=2))
        from reasonenv.evaluation.report import plot_pass_at_k

        plot_pass_at_k(result, self.dir / "passk.png")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise OSError(f"cannot write {str(path)!r}: {e.strerror or e}") from e


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``samples.jsonl`` file, or of the one in an eval run folder."""
    p = Path(path)
    if p.is_dir():
        p = p / "samples.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"{str(p)!r} does not exist: not an eval run folder or samples file")
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
