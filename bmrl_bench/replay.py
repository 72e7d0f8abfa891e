"""Replaying stored episodes in the environment that made them, bit for bit.

A dataset stores no seed per episode, yet every episode's start can be recomputed from
what it does store. The collector (`bmrl_bench.collect.collect_behaviour`) resets task k's
env once with `seed = behaviour.seed * 1000 + k` (k: the task's place in its behaviour
shard), then after every episode calls `env.reset()` without a seed, so the next start is
drawn from the same env RNG stream. No family's `step` draws from that RNG (PointGoal has
none; the MuJoCo v5 envs draw only in `reset_model`), so episode e starts where the seeded
reset followed by e unseeded resets puts it, whatever was stepped in between. The seed
recipe and the shard size are in the dataset's metadata (`bmrl_behaviour`), so the stored
transitions and their checksums stay as they are. The other tiers (`bmrl_bench.builder.tiers`)
reset every episode with its own seed, recorded in their metadata (`bmrl_tier.episode_seeds`):
there each chosen episode is replayed from its own seeded reset.

The env is rebuilt with Minari's `recover_environment()` from the `env_spec` the dataset
stores (id, task parameter, time limit), so a replay also checks that spec. Comparisons are
of bits: float32 observations (as stored), float64 rewards, terminations and truncations.
This module only reads datasets.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bmrl_bench.data import Episodes, dataset_dir, datasets_root, read_episodes, read_metadata
from bmrl_bench.errors import BmrlError
from bmrl_bench.suites import get_card
from bmrl_bench.tiers import DEFAULT_TIER

# The collector seeds task k of a shard with `behaviour.seed * SEED_STRIDE + k` (bmrl_bench/collect.py).
SEED_STRIDE = 1000


@dataclass(frozen=True)
class Mismatch:
    """The first place where a replay and the stored episode differ."""

    dataset_id: str
    episode: int
    step: int | None  # the env step (0-based) within the episode; None: the observation `reset` returned
    field: str  # "observations[i]", "rewards", "terminations", "truncations", "task_param"
    stored: str
    replayed: str

    def __str__(self) -> str:
        where = "reset" if self.step is None else f"step {self.step}"
        return (f"{self.dataset_id}: episode {self.episode}, {where}, {self.field}: "
                f"stored {self.stored} vs replayed {self.replayed}")


@dataclass(frozen=True)
class ReplayResult:
    """One dataset's replay: the episodes tried, the steps they took, and what went wrong (None: bit-exact)."""

    dataset_id: str
    episodes: tuple[int, ...]
    steps: int
    mismatch: Mismatch | None
    seconds: float
    error: str | None = None  # the dataset could not be replayed at all (unreadable, env not recoverable)

    @property
    def ok(self) -> bool:
        return self.mismatch is None and self.error is None

    @property
    def problem(self) -> str | None:
        """One line naming the dataset: its first mismatch, or why nothing was replayed."""
        if self.mismatch is not None:
            return str(self.mismatch)
        return None if self.error is None else f"{self.dataset_id}: {self.error}"


def shard_reset_seed(behaviour_seed: int, place: int) -> int:
    """The seed of the one seeded reset of the task at `place` in its behaviour shard (and of its action space)."""
    return behaviour_seed * SEED_STRIDE + place


def reset_seed(meta: dict[str, Any]) -> int:
    """The seed of a dataset's first reset, from its metadata: task k of its shard got `seed * 1000 + k`."""
    behaviour = meta["bmrl_behaviour"]
    index = int(meta["bmrl_task_index"])
    per_shard = behaviour.get("tasks_per_shard")  # absent: all tasks in one shard
    # Shards are consecutive runs of `tasks_per_shard` task indices (`SuiteCard.shards`).
    place = index % int(per_shard) if per_shard else index
    return shard_reset_seed(int(behaviour["seed"]), place)


def spread(num_episodes: int, n: int) -> list[int]:
    """n episode indices spread evenly from the first to the last (all of them when n >= num_episodes)."""
    if n >= num_episodes:
        return list(range(num_episodes))
    if n == 1:
        return [0]
    # Integer steps of at least 1, so no index repeats (rounding half to even could repeat one).
    return [i * (num_episodes - 1) // (n - 1) for i in range(n)]


def _bits(x: np.ndarray | float, dtype: type) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=dtype)).view(np.uint32 if dtype is np.float32 else np.uint64)


def _first_obs_difference(stored: np.ndarray, replayed: Any) -> tuple[str, str, str] | None:
    """(field, stored, replayed) of the first observation component whose float32 bits differ."""
    got = np.asarray(replayed, dtype=np.float32).reshape(stored.shape)
    differ = np.flatnonzero(_bits(stored, np.float32) != _bits(got, np.float32))
    if differ.size == 0:
        return None
    i = int(differ[0])
    return f"observations[{i}]", repr(float(stored[i])), repr(float(got[i]))


def _replay_episode(env: Any, dataset_id: str, e: int, obs0: Any, ep: Episodes, slices: tuple[slice, slice],
                    closes_buffer: bool) -> tuple[int, Mismatch | None]:
    """Step episode e's stored actions from the start `obs0`; (steps taken, first mismatch)."""
    os_, ts = slices
    obs, actions = ep.observations[os_], ep.actions[ts]
    rewards, terms, truncs = ep.rewards[ts], ep.terminations[ts], ep.truncations[ts]

    def mismatch(step: int | None, field: str, stored: Any, replayed: Any) -> Mismatch:
        return Mismatch(dataset_id, e, step, field, str(stored), str(replayed))

    if (d := _first_obs_difference(obs[0], obs0)) is not None:
        return 0, mismatch(None, *d)
    n = len(actions)
    for t in range(n):
        o, r, term, trunc, _ = env.step(actions[t])
        if (d := _first_obs_difference(obs[t + 1], o)) is not None:
            return t + 1, mismatch(t, *d)
        if _bits(rewards[t], np.float64) != _bits(float(r), np.float64):
            return t + 1, mismatch(t, "rewards", repr(float(rewards[t])), repr(float(r)))
        if bool(terms[t]) != bool(term):
            return t + 1, mismatch(t, "terminations", bool(terms[t]), bool(term))
        # The dataset's last episode may end mid-episode: the collector truncated it where its buffer ended.
        expected_trunc = bool(trunc) or (closes_buffer and t == n - 1 and not term)
        if bool(truncs[t]) != expected_trunc:
            return t + 1, mismatch(t, "truncations", bool(truncs[t]), expected_trunc)
    return n, None


def replay_dataset(dataset_id: str, n: int, root: Path | None = None) -> ReplayResult:
    """Replay `n` of a dataset's episodes (spread over it) in its recovered env; name the first mismatch."""
    from minari.dataset.minari_dataset import MinariDataset

    t0 = time.perf_counter()
    root = root or datasets_root()
    meta = read_metadata(dataset_id, root)
    ep = read_episodes(dataset_id, root)
    chosen = spread(len(ep.lengths), n)
    try:
        env = MinariDataset(dataset_dir(dataset_id, root) / "data").recover_environment()
    except Exception as e:  # a spec naming an env that is not registered, or that cannot be made
        raise BmrlError(f"dataset {dataset_id}: its env cannot be recovered ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:120]})") from None
    steps, found = 0, None
    try:
        param, stored_param = float(env.unwrapped.task_param), float(meta["bmrl_task_param"])
        if param != stored_param:  # the spec's kwargs name another task than the metadata does
            mismatch = Mismatch(dataset_id, chosen[0], None, "task_param", repr(stored_param), repr(param))
            return ReplayResult(dataset_id, tuple(chosen), 0, mismatch, time.perf_counter() - t0)
        slices = list(ep.episode_slices())
        if "bmrl_tier" in meta:  # a tier dataset: every episode has its own reset seed
            runs = meta["bmrl_tier"]["episode_seeds"]
            seeds = [first + k for first, count in runs for k in range(count)]
            run_ends = set(np.cumsum([count for _, count in runs]) - 1)  # each run's last episode closes a buffer
            for e in chosen:
                obs0, _ = env.reset(seed=seeds[e])
                took, found = _replay_episode(env, dataset_id, e, obs0, ep, slices[e], e in run_ends)
                steps += took
                if found is not None:
                    break
            return ReplayResult(dataset_id, tuple(chosen), steps, found, time.perf_counter() - t0)
        obs0, _ = env.reset(seed=reset_seed(meta))
        resets = 0  # unseeded resets so far: episode e starts after e of them
        for e in chosen:
            while resets < e:  # draw the starts of the episodes in between from the same RNG stream
                obs0, _ = env.reset()
                resets += 1
            took, found = _replay_episode(env, dataset_id, e, obs0, ep, slices[e], e == len(slices) - 1)
            steps += took
            if found is not None:
                break
    finally:
        env.close()
    return ReplayResult(dataset_id, tuple(chosen), steps, found, time.perf_counter() - t0)


def replay_suite(name: str, n: int, root: Path | None = None, indices: list[int] | None = None,
                 tier: str = DEFAULT_TIER) -> list[ReplayResult]:
    """`replay_dataset` for each task of suite `name` (or the task `indices`) in data tier `tier`, in task order.

    A dataset that cannot be read or whose env cannot be made is a result too (its `error`), so one
    damaged dataset does not hide the replays of the others."""
    card = get_card(name)
    results = []
    for i in range(card.num_tasks) if indices is None else indices:
        dataset_id = card.dataset_id(i, tier)
        try:
            results.append(replay_dataset(dataset_id, n, root))
        except BmrlError as e:
            results.append(ReplayResult(dataset_id, (), 0, None, 0.0, error=str(e)))
    return results
