"""A behaviour shard killed mid-way resumes from its checkpoint and returns exactly what an uninterrupted one
does (in this process, in a build whose local worker is SIGKILLed, in a killed Ray worker); a checkpoint of
another run, or one whose envs do not replay, is discarded, saying why."""
from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bmrl_bench.builder import UnitCache, build_suite, run_build_unit
from bmrl_bench.builder.units import ShardUnit
from bmrl_bench.collect import TaskCollection, collect_behaviour
from bmrl_bench.data import read_metadata
from bmrl_bench.executor import LocalExecutor, RayExecutor, UnitEvent
from bmrl_bench.families import get_family
from bmrl_bench.learners.checkpoint import ENV_MOVED, NOT_THIS_TRAINING, Checkpoint
from bmrl_bench.runtime import torch_threads
from bmrl_bench.suites import BehaviourRecipe, get_card
from tests.executor_units import KillOnce, Wrapping
from tests.test_expert_resume import Crash, crash_at

TINY = "tiny-pointgoal"  # one behaviour shard: 3 tasks, 1000 steps each

# (family, episode length, task params, recipe, checkpoint every). PointGoal's checkpoints fall right after
# every env's episode ended (a fresh episode, reset unseeded); the Hopper's mid-episode, after random falls.
CASES: dict[str, tuple[str, int, list[float], dict[str, Any], int]] = {
    "pointgoal": ("pointgoal", 20, [0.0, 90.0, 180.0],
                  dict(steps_per_task=300, learning_starts=100, hidden=[16, 16], batch_size=16), 100),
    "hopper": ("hopper-vel", 50, [0.5, 2.0],
               dict(steps_per_task=300, learning_starts=100, hidden=[16, 16], batch_size=16, seed=3), 70),
}


def collect(case: str, checkpoint: Checkpoint | None = None, **update: Any) -> list[TaskCollection]:
    family, length, params, fields, every = CASES[case]
    with torch_threads(1):  # as a build collects: the sums, and so the bits, depend on the thread count
        return collect_behaviour(get_family(family), params, length, BehaviourRecipe(**(fields | update)),
                                 checkpoint=checkpoint, checkpoint_every=every)


def assert_same_collections(a: list[TaskCollection], b: list[TaskCollection]) -> None:
    """Bit-identical: the same episodes (values and dtypes) and actor weights, no tolerance."""
    assert [t.param for t in a] == [t.param for t in b]
    for x, y in zip(a, b):
        assert len(x.episodes) == len(y.episodes)
        for e, f in zip(x.episodes, y.episodes):
            for name in ("observations", "actions"):
                mine, theirs = getattr(e, name), getattr(f, name)
                assert [o.dtype for o in mine] == [o.dtype for o in theirs], name
                assert np.array_equal(np.stack(mine), np.stack(theirs)), name
            assert (e.rewards, e.terminations, e.truncations) == (f.rewards, f.terminations, f.truncations)
        assert x.actor_state.keys() == y.actor_state.keys()
        for k in x.actor_state:
            assert np.array_equal(x.actor_state[k].numpy(), y.actor_state[k].numpy()), k


@pytest.mark.parametrize("case", sorted(CASES))
def test_killed_collection_resumes_bit_identical(case: str, tmp_path: Path) -> None:
    whole = collect(case)
    every = CASES[case][-1]
    path = tmp_path / "shard.npz"
    with pytest.raises(Crash):
        collect(case, Checkpoint(path, saved=crash_at(2)))
    assert path.exists() and not list(tmp_path.glob(".*.tmp"))  # a whole file, no leftover
    with np.load(path) as z:  # the case covers what it says: episodes reset unseeded, cut or not
        meta = json.loads(z["meta"].tobytes())
        current = [int(z[f"task{i}.lengths"][-1]) for i in range(len(meta["envs"]))]
    assert meta["step"] == 2 * every and all(env["start"] is not None for env in meta["envs"])
    assert all(n == 0 for n in current) if case == "pointgoal" else all(n > 0 for n in current)
    resumed = Checkpoint(path)
    assert_same_collections(collect(case, resumed), whole)
    assert resumed.resumed_at == 2 * every and resumed.discarded == ""
    if case == "hopper":  # falls: episodes that end before the time limit
        assert any(ep.terminations[-1] for t in whole for ep in t.episodes)


def test_a_checkpoint_of_another_run_is_discarded(tmp_path: Path) -> None:
    path = tmp_path / "shard.npz"
    with pytest.raises(Crash):
        collect("pointgoal", Checkpoint(path, saved=crash_at(1)))
    other = Checkpoint(path)
    collect("pointgoal", other, seed=7)  # another recipe: also writes its own checkpoints there
    assert other.resumed_at is None and other.discarded == NOT_THIS_TRAINING

    with pytest.raises(Crash):
        collect("pointgoal", Checkpoint(path, saved=crash_at(1)))
    with np.load(path) as z:
        arrays = dict(z)
    arrays["obs"] = arrays["obs"] + 1.0  # envs that would not replay to where they were saved
    with path.open("wb") as f:
        np.savez(f, **arrays)
    moved = Checkpoint(path)
    whole = collect("pointgoal")
    assert_same_collections(collect("pointgoal", moved), whole)  # from scratch, and the same
    assert moved.resumed_at is None and moved.discarded == ENV_MOVED

    path.write_bytes(b"not a checkpoint")
    damaged = Checkpoint(path)
    collect("pointgoal", damaged)
    assert damaged.resumed_at is None and damaged.discarded.startswith("unreadable")


def test_the_unit_cache_keys_a_shards_checkpoint_by_its_recipe(tmp_path: Path) -> None:
    card = get_card(TINY)
    cache = UnitCache(card, tmp_path)
    other = card.model_copy(update={"behaviour": card.behaviour.model_copy(update={"seed": 7})})
    ckpt = cache.shard_checkpoint(0)
    assert ckpt.parent == cache.path(0).parent and ckpt != cache.path(0)
    assert ckpt.name.startswith(cache.path(0).name.removesuffix(".npz"))  # the shard's own key
    assert UnitCache(other, tmp_path).shard_checkpoint(0) != ckpt


# ---------------------------------------------------------------------------- through a build


@dataclasses.dataclass
class CheckpointEvery:
    """Runs a unit, a shard with checkpoints every `every` steps (the tiny suite's shard is shorter than the
    default interval). Picklable: worker processes run it."""

    fn: Callable[[Any, Any], Any]
    every: int

    def __call__(self, unit: Any, shared: Any) -> Any:
        if isinstance(unit, ShardUnit):
            unit = dataclasses.replace(unit, checkpoint_every=self.every)
        return self.fn(unit, shared)


def test_build_resumes_a_shard_killed_in_its_local_worker(_minari_root: Path, tiny_root: Path, tmp_path: Path) -> None:
    card = get_card(TINY)
    # The expert of the session's build of the tiny suite: this build runs the behaviour shard only.
    policies = f"{card.namespace()}/policies-v{card.version}"
    shutil.copytree(tiny_root / policies, _minari_root / policies)
    [shard] = card.shards()
    label = ShardUnit(card, 0, tuple(shard)).label
    events: list[UnitEvent] = []
    marker = tmp_path / "killed"
    # SIGKILLed at the first report past step 550: after the checkpoints at 250 and 500.
    ex = Wrapping(LocalExecutor(2, progress=events.append),
                  lambda fn: KillOnce(CheckpointEvery(fn, 250), str(marker), label, 550))
    report_ = build_suite(TINY, executor=ex)
    assert marker.exists()  # the worker really died
    assert report_.units_run == [label]
    notes = [e.message for e in events if e.message.startswith(("resumed at step", "collected from scratch"))]
    assert notes == ["resumed at step 500"]
    assert not UnitCache(card, _minari_root).shard_checkpoint(0).exists()
    # The same bytes and references as the session's uninterrupted build of the tiny suite.
    for i in range(card.num_tasks):
        mine, theirs = read_metadata(card.dataset_id(i), _minari_root), read_metadata(card.dataset_id(i), tiny_root)
        for key in ("bmrl_checksum", "ref_min_score", "ref_max_score"):
            assert mine[key] == theirs[key], key



def test_shard_killed_in_a_ray_worker_resumes_from_its_checkpoint(ray_local: Any, tmp_path: Path) -> None:
    card = get_card("tiny-shards")  # shard 1: tasks 2-3, 800 steps each
    unit = ShardUnit(card, 1, tuple(card.shards()[1]))
    [whole] = LocalExecutor(1).map(run_build_unit, [unit], name="shard")  # inline, no checkpoint
    events: list[UnitEvent] = []
    ckpt = tmp_path / "units" / "shard.npz"  # the same path on every attempt: Ray retries the unit here
    marker = tmp_path / "killed"
    # SIGKILLed at the first report past step 300: the one that the checkpoint at 400 is on disk.
    ex = Wrapping(RayExecutor(progress=events.append), lambda fn: KillOnce(fn, str(marker), unit.label, 300))
    [result] = ex.map(run_build_unit, [dataclasses.replace(unit, checkpoint=ckpt, checkpoint_every=200)], name="shard")
    assert marker.exists()
    assert [e.message for e in events if e.message.startswith("resumed at step")] == ["resumed at step 400"]
    for mine, theirs in zip(result.tasks, whole.tasks, strict=True):
        assert mine.param == theirs.param
        for name in ("observations", "actions", "rewards", "terminations", "truncations", "lengths"):
            assert np.array_equal(getattr(mine.episodes, name), getattr(theirs.episodes, name)), name
        for k, v in theirs.actor_state.items():
            assert np.array_equal(mine.actor_state[k], v), k
