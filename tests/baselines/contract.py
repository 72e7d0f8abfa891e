"""The contract every registered algorithm meets: a reusable check for its tests.

`check_algorithm_contract(cls, config)` fits `cls` a few steps on a tiny
synthetic meta-train batch, checks the progress log, saves, reloads through the
entry-point registry (`load_algorithm`), and checks agents: the Agent protocol,
action shape, dtype and bounds, and identical actions from the original and the
reloaded algorithm after identical reset/observe calls. It runs in an empty working
directory and asserts that nothing was written there (no `d3rlpy_logs/`, no
`MUJOCO_LOG.TXT`): an algorithm writes only where it is told to. Plain module (no
dataclasses, no relative imports), so it also works when loaded from its file path.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bmrl_bench.algorithms import Agent, EnvSpec, MetaTrainData, load_algorithm
from bmrl_bench.data import Batch

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
        agent.observe(obs, batch.actions[t], float(batch.rewards[t]), batch.next_observations[t], bool(batch.terminals[t]))
    return np.stack(actions)


def check_algorithm_contract(cls: type, config: Any, tmp_path: Path | None = None, spec: EnvSpec = TINY_SPEC,
                             batch: Batch | None = None) -> Any:
    """Fit, log, save, load, act: the shared contract. Returns the fitted algorithm.

    `tmp_path`: a folder for the checkpoint and the empty working directory (default: a
    temporary folder, removed afterwards). `batch`: the meta-train data (default: `tiny_batch()`
    shaped like `spec`).
    """
    if tmp_path is None:
        with tempfile.TemporaryDirectory(prefix="bmrl-contract-") as tmp:
            return check_algorithm_contract(cls, config, Path(tmp), spec, batch)
    batch = batch if batch is not None else tiny_batch(obs_dim=spec.obs_dim, act_dim=spec.act_dim,
                                                       episode_length=spec.episode_length)
    num_tasks = int(np.unique(batch.task_index).size)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    old_cwd = os.getcwd()
    os.chdir(cwd)
    try:
        algo = cls(config, spec, seed=0)
        log = RecordingLog()
        algo.fit(MetaTrainData(spec=spec, batch=batch, num_tasks=num_tasks, suite="contract-test"), log)
        ckpt = tmp_path / "ckpt"
        algo.save(ckpt)
        loaded = load_algorithm(ckpt)
        # Fresh agents on both sides, before any other agent was made: identical histories, identical actions.
        n = 2 * spec.episode_length
        before = _play(algo.make_agent(), batch, n)
        after = _play(loaded.make_agent(), batch, n)
        written = _tree(cwd)
    finally:
        os.chdir(old_cwd)

    assert written == [], f"{cls.__name__} wrote into the working directory: {written}"

    # progress log
    assert log.calls, f"{cls.__name__}.fit never called log"
    for phase, step, total, metrics in log.calls:
        assert isinstance(phase, str) and phase
        assert isinstance(step, int) and isinstance(total, int) and 0 < step <= total, (phase, step, total)
        assert all(isinstance(k, str) and isinstance(v, float) and math.isfinite(v) for k, v in metrics.items()), metrics
    steps = [c[1] for c in log.calls if c[0] == log.calls[-1][0]]
    assert steps == sorted(steps), steps

    # checkpoint
    assert (ckpt / "config.json").is_file() and (ckpt / "weights.safetensors").is_file()
    assert type(loaded) is cls
    assert loaded.config == algo.config and loaded.spec == algo.spec and loaded.seed == algo.seed

    # actions: shape, dtype, bounds; identical after the round trip
    for actions in (before, after):
        assert actions.shape == (n, spec.act_dim), actions.shape
        assert np.issubdtype(actions.dtype, np.floating), actions.dtype
        assert np.all(np.isfinite(actions)) and np.all(np.abs(actions) <= 1.0)
    np.testing.assert_array_equal(before, after)

    # the Agent protocol, float64 observations (MuJoCo's), reset/act/observe in any order
    agent = algo.make_agent()
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
