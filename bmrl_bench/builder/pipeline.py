"""The build of a suite: train (expert, behaviour shards), score (references per task), publish.

`ensure_built` is what everything that needs a suite's data calls (the harness, the
figures); `build_suite` is the `datasets build` command. Re-running a build writes
exactly the tasks that are missing or damaged, from the units that already finished.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bmrl_bench.builder.policies import expert_files, save_expert
from bmrl_bench.builder.snapshots import save_snapshots
from bmrl_bench.builder.task_data import TaskData
from bmrl_bench.builder.tiers import build_tier
from bmrl_bench.builder.units import ExpertUnit, ReferenceUnit, ShardUnit, UnitCache, run_build_unit
from bmrl_bench.builder.writer import clean_staging, suite_lock, write_dataset, write_namespace
from bmrl_bench.data import REFERENCES_ONLY, dataset_status, datasets_root, missing_tasks, suite_bytes
from bmrl_bench.executor import Executor, LocalExecutor, ProgressFn, Resources
from bmrl_bench.families import get_family
from bmrl_bench.runtime import torch_threads
from bmrl_bench.suites import SuiteCard, get_card
from bmrl_bench.tiers import DEFAULT_TIER, check_tier
from bmrl_bench.unit_progress import phase_progress


@dataclass
class BuildReport:
    suite: str
    built: list[str]
    skipped: list[str]
    seconds: dict[str, float]
    bytes_on_disk: int
    units_run: list[str] = field(default_factory=list)  # labels of the units this call ran


def ensure_built(suite: SuiteCard | str, *, executor: Executor | None = None,
                 progress: ProgressFn | None = None) -> BuildReport | None:
    """Build the missing or damaged datasets of `suite` if there are any; None if all were built already."""
    card = get_card(suite) if isinstance(suite, str) else suite
    if not missing_tasks(card, datasets_root()):
        return None
    return build_suite(card.name, progress=progress, executor=executor)


def build_suite(name: str, force: bool = False, progress: ProgressFn | None = None,
                executor: Executor | None = None, tier: str = DEFAULT_TIER) -> BuildReport:
    """Build every missing or damaged dataset of suite `name` (all of them with `force`) in data tier `tier`.

    Units run on `executor` (default: inline in this process). Training runs on one
    torch thread: float sums depend on the thread count, and the same card must give
    the same bytes (checksums) on every machine of a kind. `force` also discards
    finished units of an earlier, interrupted build. Another tier than `replay` first builds
    what `replay` misses (its references and expert are the tier's), then rolls out its
    policies (`builder.tiers`); `force` then rewrites the tier's datasets only.
    """
    check_tier(tier)
    with torch_threads(1), suite_lock(name, datasets_root()):
        if tier == DEFAULT_TIER:
            return _build_suite(name, force, progress, executor or LocalExecutor(1))
        return _build_tier(name, tier, force, progress, executor or LocalExecutor(1))


def _build_tier(name: str, tier: str, force: bool, progress: ProgressFn | None, executor: Executor) -> BuildReport:
    replay = _build_suite(name, False, progress, executor)
    card = get_card(name)
    root = datasets_root()
    unit_progress = executor.progress or (phase_progress(progress) if progress is not None else None)
    done = build_tier(card, tier, root, force=force, executor=executor, progress=progress, unit_progress=unit_progress)
    seconds = {f"replay {k}": v for k, v in replay.seconds.items()} | done.seconds
    return BuildReport(card.name, done.built, done.skipped, seconds, suite_bytes(card, root),
                       replay.units_run + done.units_run)


def _build_suite(name: str, force: bool, progress: ProgressFn | None, executor: Executor) -> BuildReport:
    card = get_card(name)
    family = get_family(card.family)
    root = datasets_root()
    clean_staging(root)
    cache = UnitCache(card, root)
    if force:
        cache.clear()
    status = {i: "missing" if force else dataset_status(card, i, root) for i in range(card.num_tasks)}
    todo = [i for i in range(card.num_tasks) if status[i] != "ok"]
    refresh = {i for i in todo if status[i] in REFERENCES_ONLY}  # data intact: only its references are redone
    skipped = [card.dataset_id(i) for i in range(card.num_tasks) if i not in todo]
    seconds: dict[str, float] = {}
    report_ = BuildReport(card.name, [], skipped, seconds, 0)
    if not todo:
        cache.clear()
        report_.bytes_on_disk = suite_bytes(card, root)
        return report_
    unit_progress = executor.progress or (phase_progress(progress) if progress is not None else None)
    hint = f"finished units are kept: re-run `bmrl-bench datasets build {card.name}` to resume"

    # 1. Expert and behaviour shards: the long units, all independent.
    t0 = time.perf_counter()
    shards = card.shards()
    shard_of = {i: s for s, tasks in enumerate(shards) for i in tasks}
    needed = sorted({shard_of[i] for i in todo if i not in refresh})
    units: list[ShardUnit | ExpertUnit] = []
    if force or expert_files(card, root) is None:
        units.append(ExpertUnit(card, checkpoint=cache.expert_checkpoint()))  # first: usually the longest unit
    units += [ShardUnit(card, s, tuple(shards[s]), checkpoint=cache.shard_checkpoint(s))
              for s in needed if not cache.has(s)]

    def keep(i: int, result: Any) -> None:  # persist each unit as soon as it finishes
        unit = units[i]
        if isinstance(unit, ExpertUnit):
            save_expert(result.state, card, root, result.obs_dim, result.act_dim, result.training)
            save_snapshots(card, root, result.snapshots, result.training)  # the medium tier's candidates
            seconds["expert"] = result.seconds
        else:
            cache.save(unit.shard, result.tasks)
            cache.shard_checkpoint(unit.shard).unlink(missing_ok=True)  # the cached shard supersedes it
            seconds["behaviour"] = seconds.get("behaviour", 0.0) + result.seconds
        report_.units_run.append(unit.label)
        return None

    executor.map(run_build_unit, units, name=f"build {card.name}: train", labels=[u.label for u in units],
                 resources=Resources(num_cpus=1), on_result=keep, progress=unit_progress, hint=hint)
    seconds["units"] = time.perf_counter() - t0

    # 2. Reference returns per missing task (needs the expert and the task's behaviour actor).
    t0 = time.perf_counter()
    state, config = expert_files(card, root)  # type: ignore[misc]  # saved by step 1 or an earlier build
    expert_record = {"recipe": config["recipe"], **config["training"]}

    def task_data(i: int, actor_only: bool = False) -> TaskData:
        if i in refresh:
            return TaskData.from_dataset(card.dataset_id(i), root, actor_only)
        return cache.load(shard_of[i], i, actor_only)

    ref_units = [ReferenceUnit(card, i, task_data(i, actor_only=True).actor_state) for i in todo]
    refs = executor.map(run_build_unit, ref_units, name=f"build {card.name}: references",
                        labels=[u.label for u in ref_units], resources=Resources(num_cpus=1),
                        shared={"state": state, "config": config}, progress=unit_progress, hint=hint)
    seconds["references"] = time.perf_counter() - t0

    # 3. Publish each task (here: the datasets root is this machine's).
    t0 = time.perf_counter()
    for n, (index, task_refs) in enumerate(zip(todo, refs)):
        write_dataset(card, family, index, task_data(index), task_refs, expert_record, root)
        report_.built.append(card.dataset_id(index))
        if progress is not None:
            progress("write datasets", n + 1, len(todo),
                     f"{card.dataset_id(index)} ref_min {np.mean(task_refs['random']):.1f} "
                     f"behaviour {np.mean(task_refs['behaviour']):.1f} expert {np.mean(task_refs['expert']):.1f}")
    write_namespace(card, family, root)
    seconds["write"] = time.perf_counter() - t0
    cache.clear()  # every missing task is published: the finished units are no longer needed
    report_.bytes_on_disk = suite_bytes(card, root)
    return report_
