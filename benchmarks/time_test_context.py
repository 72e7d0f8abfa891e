"""tiMe zero-shot with a shorter test-time context: the episode's last n transitions instead of all of them.

    python benchmarks/time_test_context.py --suite halfcheetah-vel-lite --entry time-58414763c55e94bb \\
        --contexts 0,1,5,20,50 --out results/ablations/test-context.json

Re-scores a verified board entry's checkpoints (`leaderboard/checkpoints/<suite>/<protocol>/<entry>/`)
under the entry's own protocol, episodes and episode seeds (`harness.reevaluate`), each time with
`test_context` set to n in a copy of every seed's `config.json`. Nothing is retrained: `test_context`
is read at test time only, so n = 0 reproduces the entry's returns exactly. Prints and writes, per n,
the normalized score per test task (mean over seeds) and the IQM over seed x task cells.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bmrl_bench.executor import LocalExecutor
from bmrl_bench.fsutil import atomic_write_text
from bmrl_bench.harness import reevaluate
from bmrl_bench.metrics import iqm
from bmrl_bench.published import read_published
from bmrl_bench.results import load_results
from bmrl_bench.suites import get_card


def rescore(suite: str, entry: str, contexts: list[int], board: Path, protocol: str) -> dict[int, dict[str, Any]]:
    card = get_card(suite)
    results = load_results(board / "submissions" / suite / protocol / f"{entry}.json")
    refs = {card.dataset_id(i): read_published(card)[card.dataset_id(i)] for i in card.test_indices()}
    out: dict[int, dict[str, Any]] = {}
    for n in contexts:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / entry
            shutil.copytree(board / "checkpoints" / suite / protocol / entry, folder)
            for path in folder.glob("*/config.json"):
                saved = json.loads(path.read_text())
                saved["config"]["test_context"] = n
                path.write_text(json.dumps(saved))
            rows = reevaluate(results, folder, LocalExecutor(1)).returns
        cells: dict[int, list[float]] = {}
        for row in rows:
            ref = refs[card.dataset_id(row["task_index"])]
            score = (np.mean(row["episode_returns"]) - ref["ref_min"]) / (ref["ref_max"] - ref["ref_min"])
            cells.setdefault(row["task_index"], []).append(float(score))
        scores = np.array(list(cells.values())).T  # (num_seeds, num_tasks)
        out[n] = {"per_task": {str(t): round(float(np.mean(v)), 3) for t, v in cells.items()},
                  "iqm": round(float(iqm(scores)), 3)}
        print(f"test_context {n}: {out[n]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="halfcheetah-vel-lite")
    ap.add_argument("--entry", required=True, help="a verified tiMe entry's name, e.g. time-58414763c55e94bb")
    ap.add_argument("--contexts", default="0,1,5,20,50", help="comma-separated n (0: the whole episode)")
    ap.add_argument("--protocol", default="zero-shot")
    ap.add_argument("--board", type=Path, default=Path("leaderboard"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = rescore(args.suite, args.entry, [int(n) for n in args.contexts.split(",")], args.board, args.protocol)
    if args.out is not None:
        atomic_write_text(args.out, json.dumps({"suite": args.suite, "entry": args.entry, "scores": out}, indent=1))


if __name__ == "__main__":
    main()
