"""The contract every registered algorithm meets (`test_contract.py` runs it on each of them).

`check_algorithm_contract(cls, config, suite)` fits `cls` on the suite's meta-train data,
checks the progress log, saves, reloads through the entry-point registry
(`load_algorithm`), and checks agents: the Agent protocol, action shape, dtype and bounds,
and identical actions from the original and the reloaded algorithm after identical
reset/observe calls. A `Privileged` algorithm (the oracle) is bound to the suite and its
agents are told the first test task, as the harness does. It runs in an empty working
directory and asserts that nothing was written there (no `d3rlpy_logs/`, no
`MUJOCO_LOG.TXT`): an algorithm writes only where it is told to.

`tiny_batch`, `TINY_SPEC` and `RecordingLog` serve the algorithm-specific tests.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from bmrl_bench.algorithms import Agent, EnvSpec, Privileged, load_algorithm
from bmrl_bench.data import Batch, Suite
from bmrl_bench.harness import meta_train_data, spec_of

TINY_SPEC = EnvSpec(family="pointgoal", obs_dim=2, act_dim=2, episode_length=20)


def tiny_batch(num_tasks: int = 2, per_task: int = 60, episode_length: int = 20, obs_dim: int = 2, act_dim: int = 2,
               seed: int = 0) -> Batch:
    """PointGoal-like pooled data: num_tasks x per_task transitions, episodes cut by timeouts.

    Each task walks from the origin with random actions in [-1, 1]; the reward is minus the
    distance to a task-specific goal, so tasks differ in reward only.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for task in range(num_tasks):
        goal = rng.normal(size=obs_dim).astype(np.float32) * 5
        actions = rng.uniform(-1, 1, size=(per_task, act_dim)).astype(np.float32)
        obs = np.zeros((per_task, obs_dim), np.float32)
        next_obs = np.zeros((per_task, obs_dim), np.float32)
        timeouts = np.zeros(per_task, np.float32)
        pos = np.zeros(obs_dim, np.float32)
        for t in range(per_task):
            if t % episode_length == 0:
                pos = np.zeros(obs_dim, np.float32)
            obs[t] = pos
            step = np.zeros(obs_dim, np.float32)
            step[: min(obs_dim, act_dim)] = actions[t, : min(obs_dim, act_dim)]
            pos = pos + step
            next_obs[t] = pos
            timeouts[t] = float(t % episode_length == episode_length - 1)
        parts.append(Batch(
            observations=obs, actions=actions, rewards=-np.linalg.norm(next_obs - goal, axis=1).astype(np.float32),
            next_observations=next_obs, terminals=np.zeros(per_task, np.float32), timeouts=timeouts,
            task_index=np.full(per_task, task, np.int64),
        ))
    return Batch.concatenate(parts)


class RecordingLog:
    """A `log` callback that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, dict[str, float]]] = []

    def __call__(self, phase: str, step: int, total: int, metrics: dict[str, float]) -> None:
        self.calls.append((phase, step, total, dict(metrics)))


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _play(agent: Any, batch: Batch, n: int) -> np.ndarray:
    """reset, then act/observe on the batch's first n transitions; the actions taken."""
    agent.reset()
    actions = []
    for t in range(n):
        obs = batch.observations[t]
        actions.append(np.array(agent.act(obs), copy=True))
        reward, terminal = float(batch.rewards[t]), bool(batch.terminals[t])
        agent.observe(obs, batch.actions[t], reward, batch.next_observations[t], terminal)
    return np.stack(actions)


def _agent(algo: Any, suite: Suite) -> Any:
    """A fresh agent, told the first test task if the algorithm is privileged (as the harness does)."""
    agent = algo.make_agent()
    if isinstance(algo, Privileged):
        task = suite.test_tasks[0]
        agent.set_task(task.index, task.param)
    return agent


def check_algorithm_contract(cls: type, config: Any, suite: Suite, tmp_path: Path) -> Any:
    """Fit, log, save, load, act: the shared contract. Returns the fitted algorithm.

    `tmp_path`: a folder for the checkpoint and the empty working directory.
    """
    spec, data = spec_of(suite), meta_train_data(suite)
    batch = data.batch
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    old_cwd = os.getcwd()
    os.chdir(cwd)
    try:
        algo = cls(config, spec, seed=0)
        if isinstance(algo, Privileged):
            algo.bind_suite(suite)
        log = RecordingLog()
        algo.fit(data, log)
        ckpt = tmp_path / "ckpt"
        algo.save(ckpt)
        loaded = load_algorithm(ckpt)
        if isinstance(loaded, Privileged):
            loaded.bind_suite(suite)
        # Fresh agents on both sides, before any other agent was made: identical histories, identical actions.
        n = 2 * spec.episode_length
        before = _play(_agent(algo, suite), batch, n)
        after = _play(_agent(loaded, suite), batch, n)
        written = _tree(cwd)
    finally:
        os.chdir(old_cwd)

    assert written == [], f"{cls.__name__} wrote into the working directory: {written}"

    # progress log
    assert log.calls, f"{cls.__name__}.fit never called log"
    for phase, step, total, metrics in log.calls:
        assert isinstance(phase, str) and phase
        assert isinstance(step, int) and isinstance(total, int) and 0 < step <= total, (phase, step, total)
        assert all(isinstance(k, str) and isinstance(v, float) and math.isfinite(v)
                   for k, v in metrics.items()), metrics
    last_phase = [c for c in log.calls if c[0] == log.calls[-1][0]]
    steps = [c[1] for c in last_phase]
    assert steps == sorted(steps) and steps[-1] == last_phase[-1][2], steps  # the last phase runs to its total

    # checkpoint: the two files, weights-only, and the same algorithm back
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "weights.safetensors"]
    assert type(loaded) is cls
    assert loaded.config == algo.config and loaded.spec == algo.spec and loaded.seed == algo.seed

    # actions: shape, dtype, bounds; identical after the round trip
    for actions in (before, after):
        assert actions.shape == (n, spec.act_dim), actions.shape
        assert np.issubdtype(actions.dtype, np.floating), actions.dtype
        assert np.all(np.isfinite(actions)) and np.all(np.abs(actions) <= 1.0)
    np.testing.assert_array_equal(before, after)

    # the Agent protocol, float64 observations (MuJoCo's), reset/act/observe in any order
    agent = _agent(algo, suite)
    assert isinstance(agent, Agent)
    agent.reset()
    obs64 = batch.observations[3].astype(np.float64)
    action = np.asarray(agent.act(obs64))
    assert action.shape == (spec.act_dim,) and np.issubdtype(action.dtype, np.floating)
    assert np.all(np.abs(action) <= 1.0)
    agent.observe(obs64, action, 0.0, obs64, False)
    agent.observe(obs64, action, 0.0, obs64, True)
    agent.reset()
    assert np.asarray(agent.act(batch.observations[0])).shape == (spec.act_dim,)
    return algo
