"""A build's units of work, the one function that runs any of them, and the finished-unit cache.

Units: the family-wide expert, one per behaviour shard (the card's `tasks_per_shard`
tasks trained as one batched SAC) and one per task's reference scores. Which tasks
share a shard is fixed by the card, never by the executor, so every executor writes
the same bytes. A finished shard is kept in `<root>/.staging/units/` until its tasks
are published, so an interrupted build resumes from the units that finished.
The long units also checkpoint themselves there while they train, so a killed or
retried unit resumes instead of starting over: the expert from its last check, a
behaviour shard from its last checkpoint (every `CHECKPOINT_EVERY` steps per task).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bmrl_bench.builder.expert import ExpertCheckpoint, ExpertTraining, Snapshots, train_expert
from bmrl_bench.builder.policies import expert_from_state, family_act_dim, family_obs_dim
from bmrl_bench.builder.reference_scores import reference_returns
from bmrl_bench.builder.task_data import TaskData
from bmrl_bench.collect import CHECKPOINT_EVERY, collect_behaviour
from bmrl_bench.executor import report
from bmrl_bench.families import get_family
from bmrl_bench.fsutil import atomic_file
from bmrl_bench.learners.checkpoint import Checkpoint
from bmrl_bench.runtime import torch_threads
from bmrl_bench.suites import SuiteCard

UNIT_FORMAT = 1  # bump when what a cached unit holds changes


@dataclass(frozen=True)
class ShardUnit:
    """Train the behaviour SAC of tasks `tasks` (one shard of the card) online; return their data.
    `checkpoint`: its resume file (a path stable across runs), written every `checkpoint_every` steps per task."""

    card: SuiteCard
    shard: int
    tasks: tuple[int, ...]
    checkpoint: Path | None = None
    checkpoint_every: int = CHECKPOINT_EVERY

    @property
    def label(self) -> str:
        span = f"task {self.tasks[0]}" if len(self.tasks) == 1 else f"tasks {self.tasks[0]}-{self.tasks[-1]}"
        return f"behaviour shard {self.shard} ({span})"


@dataclass(frozen=True)
class ExpertUnit:
    """Train the suite's family-wide expert; `checkpoint`: its resume file (a path stable across runs)."""

    card: SuiteCard
    label: str = "expert"
    checkpoint: Path | None = None


@dataclass(frozen=True)
class ReferenceUnit:
    """Reference returns (random, behaviour, expert) of one task; the expert comes as the shared input."""

    card: SuiteCard
    index: int
    actor_state: dict[str, np.ndarray]

    @property
    def label(self) -> str:
        return f"references task {self.index:02d}"


@dataclass
class ShardResult:
    tasks: list[TaskData]
    seconds: float


@dataclass
class ExpertResult:
    state: dict[str, np.ndarray]
    obs_dim: int  # with the task feature
    act_dim: int
    training: ExpertTraining
    seconds: float
    snapshots: Snapshots = field(default_factory=list)  # the actor at every check (the medium tier's candidates)


def _unit_progress(phase: str) -> Callable[[int, int, list[float]], None]:
    def cb(step: int, total: int, recent: list[float]) -> None:
        shown = " ".join("  -  " if np.isnan(r) else f"{r:.1f}" for r in recent)
        report(step, total, f"return so far: {shown}", phase=phase)
    return cb


def _resume_note(ckpt: Checkpoint, from_scratch: str) -> str:
    """How a checkpointed unit ran: resumed (at which step) or from scratch, and why a checkpoint was discarded."""
    said = from_scratch if ckpt.resumed_at is None else f"resumed at step {ckpt.resumed_at}"
    return said + (f" (a checkpoint was discarded: {ckpt.discarded})" if ckpt.discarded else "")


def run_build_unit(
    unit: ShardUnit | ExpertUnit | ReferenceUnit, shared: Any
) -> ShardResult | ExpertResult | dict[str, list[float]]:
    """One unit of a build; the same code under every executor. One torch thread: reproducible bytes."""
    card = unit.card
    family = get_family(card.family)
    t0 = time.perf_counter()
    with torch_threads(1):
        if isinstance(unit, ShardUnit):
            params = [card.task_param(i) for i in unit.tasks]
            steps = card.behaviour.steps_per_task
            on_saved = lambda step: report(step, steps, f"checkpoint at step {step}", phase="behaviour SAC")  # noqa: E731
            shard_ckpt = None if unit.checkpoint is None else Checkpoint(unit.checkpoint, saved=on_saved)
            collections = collect_behaviour(family, params, card.episode_length, card.behaviour,
                                            _unit_progress("behaviour SAC"), checkpoint=shard_ckpt,
                                            checkpoint_every=unit.checkpoint_every)
            if shard_ckpt is not None:  # its file is deleted once the result is cached (`pipeline`)
                report(steps, steps, _resume_note(shard_ckpt, "collected from scratch"), phase="behaviour SAC")
            return ShardResult([TaskData.from_collection(c) for c in collections], time.perf_counter() - t0)
        if isinstance(unit, ExpertUnit):
            all_params = card.train_tasks + card.test_tasks
            total = card.expert.max_steps
            saved = lambda step: report(step, total, f"checkpoint at step {step}", phase="expert SAC")  # noqa: E731
            ckpt = None if unit.checkpoint is None else ExpertCheckpoint(unit.checkpoint, saved=saved)
            snapshots: Snapshots = []
            expert, training = train_expert(family, min(all_params), max(all_params), card.episode_length, card.expert,
                                            _unit_progress("expert SAC"), train_params=card.train_tasks,
                                            checkpoint=ckpt, snapshots=snapshots)
            if ckpt is not None:
                said = _resume_note(ckpt, "trained from scratch")
                report(training.steps, training.steps, f"{said}; {training.stop_reason}", phase="expert SAC")
                ckpt.path.unlink(missing_ok=True)  # the expert's own files, saved next, supersede it
            state = {k: v.numpy() for k, v in expert.state_dict().items()}
            obs_dim = family_obs_dim(family) + 1  # the expert sees the task parameter too
            return ExpertResult(state, obs_dim, family_act_dim(family), training, time.perf_counter() - t0, snapshots)
        expert = expert_from_state(shared["state"], shared["config"])
        report(0, 1, "", phase="reference returns")
        refs = reference_returns(card, family, unit.index, unit.actor_state, expert, shared["config"]["act_dim"])
        report(1, 1, f"random {np.mean(refs['random']):.1f} behaviour {np.mean(refs['behaviour']):.1f} "
                     f"expert {np.mean(refs['expert']):.1f}", phase="reference returns")
        return refs


class UnitCache:
    """Finished behaviour shards of one suite, kept until their tasks are published.

    `<root>/.staging/units/<suite>-v<version>/shard-<i>-<key>.npz`; the key hashes what
    the shard's data depends on, so a changed card never reuses a stale shard. A shard
    still training checkpoints itself beside it (`shard-<i>-<key>.checkpoint.npz`, deleted
    once the shard is saved), the expert in `expert-<key>.npz`. Files appear by rename
    only: a reader never sees half of one.
    """

    def __init__(self, card: SuiteCard, root: Path) -> None:
        self.card = card
        self.dir = root / ".staging" / "units" / f"{card.name}-v{card.version}"

    def _shard_name(self, shard: int) -> str:
        card = self.card
        tasks = card.shards()[shard]
        key = {"family": card.family, "episode_length": card.episode_length, "behaviour": card.behaviour.model_dump(),
               "params": [card.task_param(i) for i in tasks], "format": UNIT_FORMAT}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return f"shard-{shard:03d}-{digest}"

    def path(self, shard: int) -> Path:
        return self.dir / f"{self._shard_name(shard)}.npz"

    def shard_checkpoint(self, shard: int) -> Path:
        """Where shard `shard` checkpoints itself while it trains (keyed like its result)."""
        return self.dir / f"{self._shard_name(shard)}.checkpoint.npz"

    def expert_checkpoint(self) -> Path:
        """Where the expert unit checkpoints itself; the key hashes what its training depends on."""
        card = self.card
        params = card.train_tasks + card.test_tasks
        key = {"family": card.family, "episode_length": card.episode_length, "expert": card.expert.model_dump(),
               "range": [min(params), max(params)], "train": card.train_tasks, "format": UNIT_FORMAT}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return self.dir / f"expert-{digest}.npz"

    def has(self, shard: int) -> bool:
        return self.path(shard).exists()

    def save(self, shard: int, tasks: list[TaskData]) -> None:
        arrays: dict[str, np.ndarray] = {}
        for j, t in enumerate(tasks):
            arrays.update(t.to_arrays(f"t{j}."))
        with atomic_file(self.path(shard)) as f:  # streamed to disk: a shard can be large
            np.savez(f, **arrays)

    def load(self, shard: int, task: int, actor_only: bool = False) -> TaskData:
        """Task `task` (a suite task index) of shard `shard`."""
        j = self.card.shards()[shard].index(task)
        with np.load(self.path(shard)) as arrays:
            return TaskData.from_arrays(arrays, f"t{j}.", actor_only)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.dir.parent.rmdir()  # `units/` itself, once no suite has finished units
