"""tiMe zero-shot with another test-time setting: a shorter context (the episode's last n transitions), more candidates.

    python benchmarks/time_test_context.py --suite halfcheetah-vel-lite --entry time-58414763c55e94bb \\
        --contexts 0,1,5,20,50 --out results/ablations/test-context.json
    python benchmarks/time_test_context.py --suite halfcheetah-vel-lite --entry time-dc34aa82507f1896 \\
        --knob bcq_candidates --contexts 10,30,100

Re-scores a verified board entry's checkpoints (`leaderboard/checkpoints/<suite>/<protocol>/<entry>/`)
under the entry's own protocol, episodes and episode seeds (`harness.reevaluate`), each time with
`--knob` (`test_context` unless given) set to n in a copy of every seed's `config.json`. Nothing is
retrained: the knobs are read at test time only, so the entry's own value (`test_context` 0,
`bcq_candidates` 10) reproduces its returns exactly. Prints and writes, per n, the normalized score
per test task (mean over seeds) and the IQM over seed x task cells.
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

# TiMeConfig fields that only acting reads (the weights do not depend on them)
TEST_TIME_KNOBS = ("test_context", "bcq_candidates", "shooting_actions")


def rescore(suite: str, entry: str, contexts: list[int], board: Path, protocol: str,
            knob: str = "test_context") -> dict[int, dict[str, Any]]:
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
                saved["config"][knob] = n
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
        print(f"{knob} {n}: {out[n]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="halfcheetah-vel-lite")
    ap.add_argument("--entry", required=True, help="a verified tiMe entry's name, e.g. time-58414763c55e94bb")
    ap.add_argument("--contexts", default="0,1,5,20,50", help="comma-separated n (test_context 0: the whole episode)")
    ap.add_argument("--knob", default="test_context", choices=TEST_TIME_KNOBS, help="the test-time setting n sets")
    ap.add_argument("--protocol", default="zero-shot")
    ap.add_argument("--board", type=Path, default=Path("leaderboard"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = rescore(args.suite, args.entry, [int(n) for n in args.contexts.split(",")], args.board, args.protocol,
                  args.knob)
    if args.out is not None:
        atomic_write_text(args.out, json.dumps({"suite": args.suite, "entry": args.entry, "knob": args.knob,
                                                "scores": out}, indent=1))


if __name__ == "__main__":
    main()
