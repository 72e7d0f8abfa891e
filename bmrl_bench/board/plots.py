"""Interval-estimate plots (IQM with its 95% CI per entry), one per suite, as inline SVG."""
from __future__ import annotations

import io

import numpy as np

from bmrl_bench.board.model import DEFAULT_TIER
from bmrl_bench.board.scoring import Table


def plot_svg(title: str, labels: list[str], stats: list[tuple[float, float, float]], local: list[bool]) -> str:
    """A self-contained, deterministic inline SVG."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.hashsalt": "bmrl-bench", "svg.fonttype": "none", "font.size": 9}):
        fig = Figure(figsize=(7.0, 1.0 + 0.35 * len(labels)))
        ax = fig.add_subplot()
        y = np.arange(len(labels))[::-1]
        points = np.array([s[0] for s in stats])
        err = np.array([[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]])
        for is_local, color in ((False, "tab:blue"), (True, "tab:orange")):
            pick = np.array([flag == is_local for flag in local])
            if pick.any():
                ax.errorbar(points[pick], y[pick], xerr=err[:, pick], fmt="o", color=color, ecolor=color, capsize=3,
                            label="local-build data" if is_local else "reference data")
        if any(local):
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
        ax.set_yticks(y, labels)
        ax.set_xlabel("IQM of normalized score (95% CI)")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    svg = buf.getvalue()
    return svg[svg.index("<svg"):].strip()  # drop the XML prolog and doctype for inlining


def plots(tables: list[Table]) -> list[tuple[str, str, str, str]]:
    """One plot per suite (version): (id, suite, title, svg) with every entry of its tables."""
    by_suite: dict[tuple[str, int], list[Table]] = {}
    for t in tables:
        by_suite.setdefault((t.suite, t.suite_version), []).append(t)
    latest: dict[str, int] = {}
    for s, v in by_suite:
        latest[s] = max(latest.get(s, v), v)
    out = []
    for (s, v), ts in by_suite.items():
        labels, stats, local = [], [], []
        for t in ts:
            for row in t.rows:
                e = row.entry
                marker = " · LOCAL-BUILD" if e.data != "reference" else ""
                tier = "" if e.tier == DEFAULT_TIER else f" · {e.tier}"
                check = "" if e.verified else " · self-reported"
                labels.append(f"{e.algorithm} ({e.config_name[:24]}) · {e.protocol}{tier}{marker}{check}")
                stats.append(e.iqm)
                local.append(e.data != "reference")
        plot_id = f"plot-{s}" + ("" if v == latest[s] else f"-v{v}")
        title = f"{s} v{v}"
        out.append((plot_id, s, title, plot_svg(title, labels, stats, local)))
    return out
