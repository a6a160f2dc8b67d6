"""Text tables and the pass@k plot of an eval run (matplotlib is imported only to plot).

Example:
    >>> from reasonenv.evaluation.bootstrap import MetricEstimate
    >>> fmt(MetricEstimate(0.5, 0.4, 0.625, 10))
    '0.500 [0.400, 0.625]'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_ORDER = ("avg@n", "maj@n", "pass@", "pass^", "format_rate", "truncation_rate", "mean_tokens")


def fmt(est: Any) -> str:
    """``value [low, high]`` of a metric estimate (3 decimals; 1 for token counts)."""
    if est is None:
        return "-"
    if abs(est.value) >= 100:
        return f"{est.value:.1f} [{est.low:.1f}, {est.high:.1f}]"
    return f"{est.value:.3f} [{est.low:.3f}, {est.high:.3f}]"


def _metric_key(name: str) -> tuple[int, int]:
    for i, prefix in enumerate(_ORDER):
        if name.startswith(prefix):
            m = re.search(r"(\d+)$", name)
            return i, int(m.group(1)) if m and prefix.endswith(("@", "^")) else 0
    return len(_ORDER), 0


def metrics_table(result: Any) -> str:
    """One row per metric, one column per benchmark plus ``overall`` (value [CI])."""
    cols = dict(result.summaries)
    if len(cols) > 1:
        cols["overall"] = result.overall
    names = sorted({m for s in cols.values() for m in s.metrics}, key=_metric_key)
    header = ["metric", *cols]
    rows = [[name, *(fmt(s.metrics.get(name)) for s in cols.values())] for name in names]
    rows.append(["problems", *(f"{s.n_problems} (+{s.n_excluded_problems} excluded)" for s in cols.values())])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
    if getattr(result, "diagnostics", None):
        lines.append("")
        lines.append(diagnostics_table(result.diagnostics))
    return "\n".join(lines)


def diagnostics_table(diagnostics: dict[str, dict[str, Any]]) -> str:
    """One row per shaper: its diagnostic numbers (see :mod:`reasonenv.evaluation.diagnostics`)."""
    keys = sorted({k for d in diagnostics.values() for k in d if not isinstance(d[k], (dict, list))})
    header = ["shaper", *keys]
    rows = [[name, *(_num(d.get(k)) for k in keys)] for name, d in diagnostics.items()]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [header, *rows])


def _num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def plot_pass_at_k(result: Any, path: str | Path) -> Path | None:
    """pass@k (with its 95 % CI band) against k, one line per benchmark; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in result.summaries.items():
        ks = sorted(int(k.split("@")[1]) for k in s.metrics if k.startswith("pass@"))
        if not ks:
            continue
        est = [s.metrics[f"pass@{k}"] for k in ks]
        ax.plot(ks, [e.value for e in est], marker="o", label=name)
        ax.fill_between(ks, [e.low for e in est], [e.high for e in est], alpha=0.2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (unbiased), 95 % CI")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
