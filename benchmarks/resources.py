"""Measure what a build's units cost on this machine and extrapolate to every suite card.

    python benchmarks/resources.py                 # about 2 minutes of one core
    python benchmarks/resources.py --members 1 4 8 --json out.json

Measured (one torch thread, as builds run; CPU time, so other load on the machine
matters little):
- CPU seconds per environment step of one behaviour shard, during the random warm-up and
  with SAC updates, for shards of K members (K tasks trained as one batched SAC), with
  each family's network sizes (256-256, batch 256);
- bytes of memory per transition a shard unit holds at its peak (episode lists, replay
  buffer, the compact copy it returns and that copy pickled for the trip back);
- bytes on disk per transition of a written Minari dataset (HDF5 + metadata).

Extrapolated (linear models, stated in `docs/scale-out.md`): CPU-hours, the longest
unit, peak memory per unit and disk of each card, both as the card is (its
`tasks_per_shard`) and with one task per shard (the most parallel layout).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# family -> (task parameter, episode length) used for the measurement: the paper cards' episode lengths
FAMILIES = {"halfcheetah-vel": (1.0, 200), "hopper-vel": (1.0, 1000)}


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:  # Linux: the current resident set
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class ShardTiming:
    family: str
    members: int
    warmup_s_per_step: float  # random actions, no updates
    update_s_per_step: float  # env steps + one batched SAC update per step


def time_shard(family_name: str, members: int, warmup: int, updates: int, hidden: list[int], batch: int) -> ShardTiming:
    """One behaviour shard of `members` tasks, `warmup` random steps then `updates` steps with SAC updates."""
    from bmrl_bench.collect import collect_behaviour
    from bmrl_bench.families import get_family
    from bmrl_bench.suites import BehaviourRecipe

    family = get_family(family_name)
    recipe = BehaviourRecipe(steps_per_task=warmup + updates, learning_starts=warmup, hidden=hidden, batch_size=batch)
    marks: dict[int, float] = {}

    # CPU time of this process (one torch thread): what a unit costs, whatever else shares the machine.
    def progress(step: int, total: int, recent: list[float]) -> None:  # called every 200 steps
        marks[step] = time.process_time()

    param, length = FAMILIES[family_name]
    collect_behaviour(family, [param] * members, length, recipe, progress)
    end = time.process_time()
    # Timed from the first step's mark (set-up excluded); the first mark after the warm-up splits the two regimes.
    split_step = min(s for s in marks if s > warmup)
    split = marks[split_step]
    return ShardTiming(
        family_name, members, (split - marks[1]) / (split_step - 1), (end - split) / (warmup + updates - split_step)
    )


def memory_per_transition(family_name: str, steps: int) -> float:
    """Peak bytes per transition a shard unit allocates (tracemalloc sees Python objects and numpy arrays).

    No SAC updates: the data dominates (episode lists, the replay buffer, the compact
    copy the unit returns and that copy pickled for the trip back).
    """
    import tracemalloc

    from bmrl_bench.builder import TaskData
    from bmrl_bench.collect import collect_behaviour
    from bmrl_bench.families import get_family
    from bmrl_bench.suites import BehaviourRecipe

    family = get_family(family_name)
    recipe = BehaviourRecipe(steps_per_task=steps, learning_starts=steps, hidden=[32, 32], batch_size=32)
    param, length = FAMILIES[family_name]
    tracemalloc.start()
    try:
        collections = collect_behaviour(family, [param] * 2, length, recipe)
        data = [TaskData.from_collection(c) for c in collections]
        blob = pickle.dumps(data, protocol=5)
        peak = tracemalloc.get_traced_memory()[1]
        del collections, data, blob
    finally:
        tracemalloc.stop()
    return peak / (2 * steps)


def disk_per_transition(family_name: str, steps: int) -> float:
    """Bytes on disk per transition of a dataset written exactly as a build writes it (random-policy data)."""
    from bmrl_bench.builder import TaskData, write_dataset
    from bmrl_bench.collect import collect_behaviour
    from bmrl_bench.families import get_family
    from bmrl_bench.suites import BehaviourRecipe, SuiteCard

    family = get_family(family_name)
    recipe = BehaviourRecipe(steps_per_task=steps, learning_starts=steps, hidden=[32, 32], batch_size=32)
    param, length = FAMILIES[family_name]
    card = SuiteCard(name="resources-probe", version=0, family=family_name, description="probe", episode_length=length,
                     train_tasks=[param], test_tasks=[param], behaviour=recipe,
                     expert={"min_steps": 1, "max_steps": 1, "hidden": [32, 32], "batch_size": 32})
    data = TaskData.from_collection(collect_behaviour(family, [param], length, recipe)[0])
    refs = {"random": [-1.0] * 10, "behaviour": [0.0] * 10, "expert": [0.0] * 10}
    with tempfile.TemporaryDirectory() as root:
        path = write_dataset(card, family, 0, data, refs, {"probe": True}, Path(root))  # no expert record
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return size / steps


def measure(members: list[int], warmup: int, updates: int, mem_steps: int) -> dict[str, Any]:
    import torch

    import bmrl_bench.builder  # noqa: F401 - everything a unit imports, for the baseline below
    from bmrl_bench.families import get_family

    torch.set_num_threads(1)
    for fam in FAMILIES:
        get_family(fam).make(FAMILIES[fam][0]).close()  # MuJoCo loaded too
    out: dict[str, Any] = {"machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                                       "load_avg_1min": os.getloadavg()[0]},
                           "base_memory_bytes": _rss_bytes(), "families": {}}
    for fam in FAMILIES:
        timings = [time_shard(fam, k, warmup, updates, [256, 256], 256) for k in members]
        out["families"][fam] = {
            "shard_timings": [t.__dict__ for t in timings],
            "memory_bytes_per_transition": memory_per_transition(fam, mem_steps),
            "disk_bytes_per_transition": disk_per_transition(fam, mem_steps),
        }
    return out


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares a + b*K (a single point: all of it per member)."""
    if len(points) == 1:
        return 0.0, points[0][1] / points[0][0]
    k = np.array([p[0] for p in points], float)
    y = np.array([p[1] for p in points], float)
    b, a = np.polyfit(k, y, 1)
    return float(a), float(b)


def extrapolate(measured: dict[str, Any], suite: str, tasks_per_shard: int | None = None) -> dict[str, Any]:
    """CPU-hours, longest unit, peak memory per unit and disk of `suite` from the measurements."""
    from bmrl_bench.suites import get_card

    card = get_card(suite)
    m = measured["families"][card.family]
    warm = _fit([(t["members"], t["warmup_s_per_step"]) for t in m["shard_timings"]])
    upd = _fit([(t["members"], t["update_s_per_step"]) for t in m["shard_timings"]])
    size = tasks_per_shard or card.behaviour.tasks_per_shard or card.num_tasks
    shards = [min(size, card.num_tasks - s) for s in range(0, card.num_tasks, size)]
    b = card.behaviour

    def shard_seconds(k: int) -> float:
        return (b.learning_starts * (warm[0] + warm[1] * k)
                + (b.steps_per_task - b.learning_starts) * (upd[0] + upd[1] * k))

    behaviour_s = sum(shard_seconds(k) for k in shards)
    # The expert: one 1-member SAC, one update per environment step (assumed: as a 1-member shard), up to
    # max_steps (an upper bound: its convergence checks usually stop it earlier).
    expert_s = card.expert.max_steps * (upd[0] + upd[1])
    # References: 3 policies x reference_episodes x episode_length steps per task, at warm-up speed (an upper bound).
    refs_s = card.num_tasks * 3 * card.reference_episodes * card.episode_length * (warm[0] + warm[1])
    transitions = card.num_tasks * b.steps_per_task
    disk = transitions * m["disk_bytes_per_transition"]
    return {
        "suite": suite,
        "tasks": card.num_tasks,
        "transitions": transitions,
        "shards": len(shards),
        "tasks_per_shard": size,
        "cpu_hours": (behaviour_s + expert_s + refs_s) / 3600,
        "longest_unit_hours": max(max(shard_seconds(k) for k in shards), expert_s) / 3600,
        "peak_memory_per_unit_gb": (
            measured["base_memory_bytes"] + max(shards) * b.steps_per_task * m["memory_bytes_per_transition"]
        ) / 2**30,
        "disk_gb": disk / 2**30,
        "disk_peak_during_build_gb": 2 * disk / 2**30,  # finished shards are cached until their tasks are published
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| suite | tasks | transitions | shards | CPU-hours | longest unit (h) "
            "| peak memory / unit (GB) | disk (GB) |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['suite']} | {r['tasks']} | {r['transitions']:,} | {r['shards']} x {r['tasks_per_shard']} | "
                     f"{r['cpu_hours']:.1f} | {r['longest_unit_hours']:.1f} | {r['peak_memory_per_unit_gb']:.1f} | "
                     f"{r['disk_gb']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 4], help="shard sizes K to time")
    parser.add_argument("--warmup", type=int, default=400,
                        help="random steps timed per shard (at least the batch size)")
    parser.add_argument("--updates", type=int, default=600, help="steps with SAC updates timed per shard")
    parser.add_argument("--memory-steps", type=int, default=10000,
                        help="transitions per task for the memory and disk probes")
    parser.add_argument("--json", type=Path, help="also write the measurements and extrapolations here")
    parser.add_argument("--from-json", type=Path, help="skip measuring: extrapolate from an earlier --json file")
    args = parser.parse_args(argv)
    if args.from_json:
        measured = json.loads(args.from_json.read_text())["measured"]
    else:
        measured = measure(args.members, args.warmup, args.updates, args.memory_steps)
    suites = ["halfcheetah-vel-lite", "hopper-vel-lite", "halfcheetah-vel", "hopper-vel"]
    as_is = [extrapolate(measured, s) for s in suites]
    one_per_shard = [extrapolate(measured, s, tasks_per_shard=1) for s in suites]
    print(json.dumps(measured, indent=2))
    print("\nAs the cards are (tasks_per_shard unset: one shard):\n" + table(as_is))
    print("\nWith tasks_per_shard = 1:\n" + table(one_per_shard))
    if args.json:
        args.json.write_text(
            json.dumps({"measured": measured, "as_is": as_is, "one_per_shard": one_per_shard}, indent=2)
        )


if __name__ == "__main__":
    sys.exit(main())
