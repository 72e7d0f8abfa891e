"""PointGoal's published ref_max against the task's analytic optimum, and what the board's scores would become.

Measures only: nothing is written, the published files and the board stay as they are. Since session 7 the
published ref_max IS the optimum (source "optimal"), so the two columns agree; the script made the case for the
switch and checks it stays true. For each PointGoal suite:

1. per task (train and test): ref_min and ref_max as published (`datasets/<suite>.published.json`), the analytic
   optimum (`families.pointgoal_optimal_return`: no policy can beat it), and how far below it ref_max lies;
2. per board entry: the normalized score of every test task and the IQM / mean, under today's references and
   with ref_max replaced by the optimum. Both come from the board's own `load_board`, which re-scores every entry
   from the raw returns of its results file (a verified entry from the board's re-run), so only ref_max differs.

    python benchmarks/pointgoal_optimum.py                      # pointgoal-3 and pointgoal-semicircle
    python benchmarks/pointgoal_optimum.py --suite pointgoal-3 --board leaderboard
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from bmrl_bench.board.model import Entry, SuiteReference
from bmrl_bench.families import pointgoal_optimal_return
from bmrl_bench.fsutil import atomic_write_text
from bmrl_bench.leaderboard import load_board
from bmrl_bench.published import read_published, suite_reference
from bmrl_bench.suites import get_card

ROOT = Path(__file__).resolve().parents[1]
SUITES = ["pointgoal-3", "pointgoal-semicircle"]


def analytic_reference(name: str, version: int) -> SuiteReference:
    """Today's reference of the suite, with every PointGoal test task's ref_max replaced by the optimum."""
    ref = suite_reference(name, version)
    if ref.family != "pointgoal":
        return ref
    tasks = [t._replace(ref_max=pointgoal_optimal_return(t.param, ref.episode_length)) for t in ref.test_tasks]
    return dataclasses.replace(ref, test_tasks=tasks)


def reference_table(suite: str) -> list[str]:
    card = get_card(suite)
    lines = [f"### {suite}: references ({card.episode_length} steps)", "",
             "| task | split | goal (deg) | ref_min | ref_max (published) | optimum (analytic) | optimum - ref_max |",
             "|---|---|---:|---:|---:|---:|---:|"]
    published = read_published(card)
    for index in range(card.num_tasks):
        d = published[card.dataset_id(index)]
        optimum = pointgoal_optimal_return(d["param"], card.episode_length)
        lines.append(f"| {index:02d} | {d['split']} | {d['param']:g} | {d['ref_min']:.2f} | {d['ref_max']:.2f}"
                     f" | {optimum:.2f} | {optimum - d['ref_max']:.2f} |")
    return lines


def score_table(suite: str, today: list[Entry], analytic: list[Entry]) -> list[str]:
    rows = [(a, b) for a, b in zip(today, analytic, strict=True) if a.suite == suite]
    if not rows:
        return [f"### {suite}: no board entries", ""]
    tasks = rows[0][0].tasks
    heads = " | ".join(f"task {t.task_index:02d} ({t.param:g})" for t in tasks)
    lines = [f"### {suite}: normalized scores, published ref_max -> analytic optimum", "",
             f"| entry | status | #seeds | {heads} | IQM | mean |", "|---|---|---:|" + "---:|" * (len(tasks) + 2)]
    for a, b in sorted(rows, key=lambda r: (-r[0].iqm[0], r[0].entry_id)):
        assert a.entry_id == b.entry_id and a.tasks[0].ref_min == b.tasks[0].ref_min
        cells = " | ".join(f"{x:.3f} -> {y:.3f}" for x, y in zip(a.per_task, b.per_task, strict=True))
        status = "verified" if a.verified else "self-reported"
        lines.append(f"| {a.entry_id} | {status} | {len(a.seeds)} | {cells} | {a.iqm[0]:.3f} -> {b.iqm[0]:.3f}"
                     f" | {a.aggregates['mean'][0]:.3f} -> {b.aggregates['mean'][0]:.3f} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append", choices=SUITES, help="default: both")
    parser.add_argument("--board", type=Path, default=ROOT / "leaderboard")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    suites = args.suite or SUITES
    today, analytic = load_board(args.board, suite_reference), load_board(args.board, analytic_reference)
    out: list[str] = []
    for suite in suites:
        out += reference_table(suite) + [""] + score_table(suite, today, analytic)
    print("\n".join(out))
    if args.json:
        data = {e.entry_id: {"suite": e.suite, "algorithm": e.algorithm, "today": list(e.per_task),
                             "analytic": list(f.per_task), "iqm": [e.iqm[0], f.iqm[0]]}
                for e, f in zip(today, analytic, strict=True) if e.suite in suites}
        atomic_write_text(args.json, json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
