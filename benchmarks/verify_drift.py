"""How far do honest re-runs of the same checkpoints drift? The measurement behind the verified tier's tolerance.

For each algorithm: `evaluate` fits it briefly (its suite config's network sizes, few
steps: inference kernels do not depend on training length), saves its checkpoints and
writes the returns a submitter would submit. Then the board's own re-run,
`harness.reevaluate`, scores the same checkpoints again under each variant:

    re-run 1 thread        in this process, torch.set_num_threads(1)
    re-run 2 threads       in this process, torch.set_num_threads(2)
    worker 1 thread        a spawned worker process (LocalExecutor(2)), 1 torch thread
    worker 2 threads       a spawned worker process, 2 torch threads

and compares every episode return with the submitted one: max |difference| and max
|difference| / |return|. Per family, the largest over all algorithms and variants.

    python benchmarks/verify_drift.py                                  # pointgoal-3 (built or built now)
    python benchmarks/verify_drift.py --suite halfcheetah-vel-lite     # a MuJoCo suite, if built
    python benchmarks/verify_drift.py --mujoco-card halfcheetah-vel    # a tiny suite of that family built here

`--mujoco-card FAMILY` builds a throw-away suite of a MuJoCo family (2 train, 2 test tasks,
the family's episode length, tiny data) in a temporary Minari root: enough to measure
the re-run drift of MuJoCo physics when no MuJoCo suite is built on this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TINY_MUJOCO_CARD = """
name = "drift-{family}"
version = 0
family = "{family}"
description = "Throw-away {family} suite for benchmarks/verify_drift.py."
episode_length = {episode_length}
train_tasks = [0.5, 2.5]
test_tasks = [1.0, 2.0]
reference_episodes = 10
eval_episodes = 3

[behaviour]
steps_per_task = 1000
learning_starts = 200
hidden = [64, 64]
batch_size = 64
updates_per_step = 1
seed = 0

[expert]
min_steps = 1000
max_steps = 1000
eval_every = 500
num_envs = 2
hidden = [64, 64]
batch_size = 64
updates_per_step = 1
seed = 1
"""

# Few training steps; everything that shapes inference (widths, candidates) stays the config's.
SHORT = {
    "batch-sac": {"steps": 200},
    "pearl": {"steps": 200},
    "bcq": {"steps": 200},
    "time": {"phase1_steps": 200, "phase2_steps": 200},
    "random": {},
    "oracle": {},
}
VARIANTS = ("re-run 1 thread", "re-run 2 threads", "worker 1 thread", "worker 2 threads")


def _diffs(submitted: list[dict[str, Any]], rerun: list[dict[str, Any]]) -> tuple[float, float, int]:
    """(max |a - b|, max |a - b| / |a|, episodes compared)."""
    mine = {(r["seed"], r["task_index"]): r["episode_returns"] for r in rerun}
    worst_abs = worst_rel = 0.0
    n = 0
    for run in submitted:
        for a, b in zip(run["episode_returns"], mine[(run["seed"], run["task_index"])], strict=True):
            worst_abs = max(worst_abs, abs(a - b))
            worst_rel = max(worst_rel, abs(a - b) / max(abs(a), 1e-12))
            n += 1
    return worst_abs, worst_rel, n


def measure(suite: str, algorithm: str, seeds: list[int], config: str | None, work: Path) -> dict[str, Any]:
    import torch

    from bmrl_bench.executor import LocalExecutor
    from bmrl_bench.harness import evaluate, reevaluate
    from bmrl_bench.results import parse_results

    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    run = evaluate(algorithm, suite, seeds=seeds, overrides=SHORT[algorithm] or None, config_name=config,
                   out_dir=None, checkpoint_dir=work / algorithm)
    fit_s = time.perf_counter() - t0
    results = parse_results(run.results, "eval")
    submitted = run.results["returns"]
    row: dict[str, Any] = {"algorithm": algorithm, "config": results.algorithm.config_name,
                           "fit_and_eval_s": round(fit_s, 1)}
    for variant in VARIANTS:
        threads = 2 if "2 threads" in variant else 1
        if variant.startswith("worker"):
            torch.set_num_threads(1)
            with LocalExecutor(2) as ex:
                again = reevaluate(results, work / algorithm, executor=ex, unit_cpus=threads)
        else:
            torch.set_num_threads(threads)
            again = reevaluate(results, work / algorithm)
        worst_abs, worst_rel, n = _diffs(submitted, again.returns)
        row[variant] = {"max_abs": worst_abs, "max_rel": worst_rel, "episodes": n,
                        "wall_s": round(again.wall_time_s, 2)}
    torch.set_num_threads(threads_before)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="pointgoal-3", help="A suite built on this machine (built now if missing).")
    parser.add_argument("--mujoco-card", choices=["halfcheetah-vel", "hopper-vel"], default=None,
                        help="Measure on a tiny suite of this MuJoCo family, built here (its family's episode length).")
    parser.add_argument("--algos", default="batch-sac,pearl,time,bcq,random,oracle", help="Comma-separated algorithms.")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--config", default=None, help="Named config (default: the suite's / family's).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="verify-drift-"))
    suite, config = args.suite, args.config
    if args.mujoco_card:
        cards = work / "cards"
        cards.mkdir()
        from bmrl_bench.families import get_family

        suite = f"drift-{args.mujoco_card}"
        length = get_family(args.mujoco_card).default_episode_length
        (cards / f"{suite}.toml").write_text(TINY_MUJOCO_CARD.format(family=args.mujoco_card, episode_length=length))
        extra = os.environ.get("BMRL_BENCH_CARDS", "")
        os.environ["BMRL_BENCH_CARDS"] = os.pathsep.join(filter(None, [str(cards), extra]))
        os.environ["MINARI_DATASETS_PATH"] = str(work / "minari")
        os.environ["BMRL_BENCH_CACHE"] = str(work / "cache")
        config = config or f"{args.mujoco_card}-lite"
        from bmrl_bench.builder import ensure_built
        from bmrl_bench.suites import get_card

        t0 = time.perf_counter()
        ensure_built(get_card(suite))
        print(f"built {suite} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    from bmrl_bench.suites import get_card

    family = get_card(suite).family
    rows = []
    for algorithm in [a for a in args.algos.split(",") if a]:
        cfg = None if algorithm in ("random", "oracle") else config
        print(f"{algorithm} on {suite} ...", file=sys.stderr, flush=True)
        row = measure(suite, algorithm, [int(s) for s in args.seeds.split(",")], cfg, work / "ckpt")
        rows.append(row)
        print(f"  {algorithm:10s} ({row['config']}): " + "; ".join(
            f"{v}: abs {row[v]['max_abs']:.3g} rel {row[v]['max_rel']:.3g} ({row[v]['wall_s']:.1f} s)"
            for v in VARIANTS),
            flush=True)
    worst_abs = max(row[v]["max_abs"] for row in rows for v in VARIANTS)
    worst_rel = max(row[v]["max_rel"] for row in rows for v in VARIANTS)
    episodes = sum(row[v]["episodes"] for row in rows for v in VARIANTS)
    print(f"{family} ({suite}): max abs difference {worst_abs:.3g}, max relative difference {worst_rel:.3g}"
          f" over {episodes} re-run episodes")
    if args.json is not None:
        from bmrl_bench.fsutil import atomic_write_text

        atomic_write_text(args.json, json.dumps({"suite": suite, "family": family, "rows": rows,
                                                 "max_abs": worst_abs, "max_rel": worst_rel}, indent=2) + "\n")


if __name__ == "__main__":
    main()
