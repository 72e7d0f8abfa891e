"""The card's PNGs, drawn from `card.json`'s dict alone (matplotlib, headless Agg, imported lazily).

Small on purpose (about 90 dpi, a few hundred pixels a side): the cards are committed.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

DPI = 85
TRAIN, TEST = "#1f77b4", "#d62728"  # one colour per split, on every figure
# Not `figures.py`'s helpers (private there): the same headless backend, our own size.


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    fig.savefig(path, dpi=DPI, metadata={"Software": None})  # no version string: same card, same bytes
    _pyplot().close(fig)
    return path.name


def _colour(split: str) -> str:
    return TRAIN if split == "train" else TEST


def tasks_plot(card: dict[str, Any], path: Path) -> str:
    """PointGoal: the goals on the radius-10 semicircle; other families: the parameter on a line."""
    plt = _pyplot()
    s, tasks = card["suite"], card["tasks"]
    if s["family"] == "pointgoal":
        fig, ax = plt.subplots(figsize=(4.6, 2.9))
        arc = [math.radians(a) for a in range(0, 181, 2)]
        ax.plot([10 * math.cos(a) for a in arc], [10 * math.sin(a) for a in arc], color="#bbb", lw=1, zorder=1)
        ax.plot([0], [0], "k+", ms=8)
        ax.annotate("start", (0, 0), xytext=(4, -10), textcoords="offset points", fontsize=8)
        for split, marker, size in (("train", "o", 40), ("test", "x", 60)):
            pts = [t for t in tasks if t["split"] == split]
            ax.scatter([10 * math.cos(math.radians(t["param"])) for t in pts],
                       [10 * math.sin(math.radians(t["param"])) for t in pts],
                       marker=marker, s=size, color=_colour(split), label=f"{split} ({len(pts)})", zorder=2)
        ax.set_aspect("equal")
        ax.set_xlim(-12, 12)
        ax.set_ylim(-1.5, 12)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title("goals (goal_angle_deg on the radius-10 semicircle)", fontsize=9)
    else:
        fig, ax = plt.subplots(figsize=(6.0, 1.9))
        for row, split, marker in ((1, "train", "o"), (0, "test", "x")):
            pts = [t["param"] for t in tasks if t["split"] == split]
            ax.scatter(pts, [row] * len(pts), marker=marker, s=45, color=_colour(split),
                       label=f"{split} ({len(pts)})")
        lo, hi = s["param_range"]
        ax.set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        ax.set_ylim(-0.7, 1.7)
        ax.set_yticks([0, 1], ["test", "train"])
        ax.set_xlabel(f"{s['param_name']} ({s['param_unit']}); family range [{lo:g}, {hi:g}]")
        ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right", framealpha=0.9)
    fig.tight_layout()
    return _save(fig, path)


def expert_plot(card: dict[str, Any], path: Path) -> str | None:
    """The family-wide expert's checks over env steps (None if the build recorded none)."""
    expert = card["expert"]
    if not expert or not expert["curve"]:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.0))
    for step, returns in expert["task_curve"]:  # every-task rule: one faint dot per check task
        ax.scatter([step] * len(returns), returns, s=6, color="#999", zorder=1)
    steps, means = zip(*expert["curve"])
    ax.plot(steps, means, "o-", ms=3, color="#2ca02c", label="mean check return", zorder=2)
    if expert["check_optimum"] is not None:
        ax.axhline(expert["check_optimum"], ls="--", color="k", lw=1, label="analytic optimum (mean)")
    else:
        ax.axhline(expert["check_upper_bound"], ls="--", color="k", lw=1, label="return bound (mean)")
    min_steps = expert["recipe"].get("min_steps")
    if min_steps:
        ax.axvline(min_steps, ls=":", color="#888", lw=1, label="min_steps")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(f"family-wide expert: checks on {len(expert['check_params'])} tasks", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def returns_name(tier: str) -> str:
    """The figure key (and PNG stem) of a tier's returns plot: `returns` for replay, as before tiers."""
    return "returns" if tier == "replay" else f"returns-{tier}"


def _task_returns(card: dict[str, Any], tier: str) -> list[tuple[dict[str, Any], list[float]]]:
    """Every task with the episode returns of its dataset in `tier` (a tier built here)."""
    data = {d["task_index"]: d["episode_returns"] for d in card["datasets"] if d["tier"] == tier}
    return [(t, data[t["index"]]) for t in card["tasks"]]


def _returns_range(card: dict[str, Any]) -> tuple[float, float]:
    """One y range for every tier's returns plot, so that the tiers compare at a glance."""
    values = [r for d in card["datasets"] if d["built"] for r in d["episode_returns"]]
    values += [t[k] for t in card["tasks"] for k in ("ref_min", "ref_max", "optimal_return") if t[k] is not None]
    lo, hi = min(values), max(values)
    pad = 0.05 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def returns_plot(card: dict[str, Any], path: Path, tier: str = "replay") -> str:
    """One box plot per task of the tier's episode returns, with ref_min / ref_max (and the optimum) marked."""
    plt = _pyplot()
    rows = _task_returns(card, tier)
    tasks = [t for t, _ in rows]
    fig, ax = plt.subplots(figsize=(max(4.5, 0.45 * len(tasks) + 2.0), 3.2))
    xs = list(range(len(tasks)))
    box = ax.boxplot([returns for _, returns in rows], positions=xs, widths=0.55,
                     patch_artist=True, showfliers=True, flierprops={"markersize": 2, "alpha": 0.5})
    for patch, t in zip(box["boxes"], tasks):
        patch.set_facecolor(_colour(t["split"]))
        patch.set_alpha(0.35)
    # Markers, not lines: a box's whisker caps are short black lines already.
    ax.scatter(xs, [t["ref_min"] for t in tasks], marker="v", s=22, color="#9467bd", label="ref_min", zorder=3)
    ax.scatter(xs, [t["ref_max"] for t in tasks], marker="^", s=22, color="#2ca02c", label="ref_max", zorder=3)
    if all(t["optimal_return"] is not None for t in tasks):
        ax.scatter(xs, [t["optimal_return"] for t in tasks], marker="*", s=30, color="k", label="optimum",
                   zorder=3)
    ax.set_xticks(xs, [f"{t['index']}\n{t['param']:.3g}" for t in tasks], fontsize=7)
    for label, t in zip(ax.get_xticklabels(), tasks):
        label.set_color(_colour(t["split"]))
    ax.set_ylim(*_returns_range(card))
    ax.set_xlabel(f"task (index, {card['suite']['param_name']}); blue: train, red: test", fontsize=8)
    ax.set_ylabel("episode return")
    ax.set_title(f"episode returns in the data: tier {tier}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def behaviour_plot(card: dict[str, Any], path: Path) -> str:
    """Per task, a small panel: episode return against episode index (the replay data in collection order)."""
    plt = _pyplot()
    rows = _task_returns(card, "replay")
    cols = min(4, len(rows))
    lines = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(2.1 * cols, 1.55 * lines + 0.35), squeeze=False)
    for ax, (t, returns) in zip(axes.flat, rows):
        ax.plot(range(len(returns)), returns, lw=0.8, color=_colour(t["split"]))
        ax.axhline(t["ref_min"], ls=":", color="#9467bd", lw=0.9)
        ax.axhline(t["ref_max"], ls="--", color="#2ca02c", lw=0.8)
        ax.set_title(f"task {t['index']} ({t['split']}) {t['param']:.3g}", fontsize=7, color=_colour(t["split"]))
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.suptitle("behaviour learning curves (tier replay): return per episode; dotted ref_min, dashed ref_max",
                 fontsize=8)
    fig.supxlabel("episode index", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
