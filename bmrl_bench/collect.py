"""Behaviour data as in the tiMe paper: the replay buffer of SAC trained online on one task.

All tasks of a suite train together: one `BatchedSAC` whose member k learns task k
from env k only, so K tasks cost one batched update per step instead of K updates.
The whole replay buffer of each member (random warm-up, poor and good behaviour)
becomes that task's dataset. The family-wide expert (`builder.expert.train_expert`)
sees the task parameter through `with_task`; it is a candidate for each task's `ref_max_score`.

Checkpoints: a shard can run for hours (hopper-vel-lite's: 2 h), so given a `Checkpoint`,
`collect_behaviour` writes everything the rest of the run depends on every `checkpoint_every`
steps per task (weights, Adam's moments, the replay buffer, every RNG state, the episodes so
far) to one file, atomically, and a later call with the same file resumes there. Each env is
replayed: reset as its episode began (its seeded first reset, or unseeded from the RNG state
its reset drew from), stepped through the episode's actions, then checked against the saved
observation, RNGs, time-limit count and MuJoCo state. Writing draws no random number, so a
resumed run returns exactly what an uninterrupted one does (`tests/test_shard_resume.py`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from bmrl_bench.families import Family
from bmrl_bench.learners.checkpoint import (
    ENV_MOVED,
    Checkpoint,
    env_rng_state,
    env_state,
    learning_arrays,
    learning_meta,
    read_checkpoint,
    replay_episode,
    restore_learning,
    write_checkpoint,
)
from bmrl_bench.learners.sac import BatchedReplay, BatchedSAC, SACConfig
from bmrl_bench.replay import shard_reset_seed
from bmrl_bench.suites import BehaviourRecipe

Policy = Callable[[np.ndarray], np.ndarray]  # (B, obs_dim) -> (B, act_dim), deterministic
ReturnsProgressFn = Callable[[int, int, list[float]], None]  # (step, total, recent return per task): not a ProgressFn

CHECKPOINT_EVERY = 5000  # steps per task between a shard's checkpoints (hopper-vel-lite: about every 20 min)
SHARD_CHECKPOINT_FORMAT = 1  # bump when what a shard's checkpoint holds changes: older files are then not resumed


@dataclass
class Episode:
    """One episode in Minari's layout: T+1 observations, T of everything else."""

    observations: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminations: list[bool] = field(default_factory=list)
    truncations: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def episode_return(self) -> float:
        return float(np.sum(self.rewards))


@dataclass
class TaskCollection:
    param: float
    episodes: list[Episode]
    actor_state: dict[str, torch.Tensor]  # the behaviour SAC's final actor (member weights)


def _sac_config(hidden: Sequence[int], batch_size: int) -> SACConfig:
    return SACConfig(hidden=tuple(hidden), batch_size=batch_size)


def collect_behaviour(
    family: Family,
    params: Sequence[float],
    episode_length: int,
    recipe: BehaviourRecipe,
    progress: ReturnsProgressFn | None = None,
    *,
    checkpoint: Checkpoint | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> list[TaskCollection]:
    """Train one SAC per task parameter online, all batched; return every transition.

    `checkpoint`: resume from its file if it holds this run, and write it every `checkpoint_every`
    steps per task (its `saved` hook gets the step; `resumed_at` and `discarded` say what happened).
    """
    if checkpoint_every < 1:
        raise ValueError(f"collect_behaviour: checkpoint_every must be positive, got {checkpoint_every}")
    k = len(params)
    envs = [family.make(p, max_episode_steps=episode_length) for p in params]
    obs_dim = envs[0].observation_space.shape[0]
    act_dim = envs[0].action_space.shape[0]
    sac = BatchedSAC(k, obs_dim, act_dim, _sac_config(recipe.hidden, recipe.batch_size), seed=recipe.seed)
    replay = BatchedReplay(k, recipe.steps_per_task, obs_dim, act_dim, seed=recipe.seed)
    rng = np.random.default_rng(recipe.seed)

    # One seeded reset per task, then unseeded ones: `datasets verify --replay` recomputes these seeds.
    obs = np.stack([env.reset(seed=shard_reset_seed(recipe.seed, i))[0] for i, env in enumerate(envs)])
    for i, env in enumerate(envs):
        env.action_space.seed(shard_reset_seed(recipe.seed, i))
    current = [Episode(observations=[obs[i].copy()]) for i in range(k)]
    finished: list[list[Episode]] = [[] for _ in range(k)]
    recent = [float("nan")] * k
    # The env RNG state each env's current episode was reset from (None: its seeded first reset): a resume
    # replays the episode from there. Reading it draws nothing.
    starts: list[dict[str, Any] | None] = [None] * k
    first = 0

    key = {"format": SHARD_CHECKPOINT_FORMAT, "family": family.name, "params": [float(p) for p in params],
           "episode_length": int(episode_length), "recipe": recipe.model_dump()}
    saved = read_checkpoint(checkpoint, key)
    if saved is not None and checkpoint is not None:
        resumed = _resume(saved, family, params, episode_length, recipe.seed)
        if resumed is None:
            checkpoint.discarded = ENV_MOVED
        else:
            for env in envs:
                env.close()
            envs, obs, current, finished, starts, recent, first = resumed
            restore_learning(saved, sac, replay, rng)
            checkpoint.resumed_at = first

    for step in range(first, recipe.steps_per_task):
        if step < recipe.learning_starts:
            actions = rng.uniform(-1.0, 1.0, size=(k, act_dim)).astype(np.float32)
        else:
            actions = sac.act(obs, deterministic=False).astype(np.float32)
        prev_obs = obs.copy()
        next_obs = np.empty_like(obs)
        rewards = np.empty(k, dtype=np.float32)
        terminals = np.empty(k, dtype=np.float32)
        last_step = step == recipe.steps_per_task - 1
        for i, env in enumerate(envs):
            o2, r, term, trunc, _ = env.step(actions[i])
            ep = current[i]
            ep.actions.append(actions[i])
            ep.rewards.append(float(r))
            ep.terminations.append(bool(term))
            # The buffer ends mid-episode: Minari needs a closed episode, so truncate it.
            ep.truncations.append(bool(trunc) or (last_step and not term))
            ep.observations.append(np.asarray(o2, dtype=np.float32))
            next_obs[i], rewards[i], terminals[i] = o2, r, float(term)
            if term or trunc:
                finished[i].append(ep)
                recent[i] = ep.episode_return
                starts[i] = env_rng_state(env)
                o2, _ = env.reset()
                current[i] = Episode(observations=[np.asarray(o2, dtype=np.float32)])
            obs[i] = o2
        replay.add(prev_obs, actions, rewards, next_obs, terminals)
        if step >= recipe.learning_starts:
            for _ in range(recipe.updates_per_step):
                sac.update(replay.sample(recipe.batch_size))
        if progress is not None and (step % 200 == 0 or last_step):
            progress(step + 1, recipe.steps_per_task, recent)
        if checkpoint is not None and (step + 1) % checkpoint_every == 0 and not last_step:
            _write_checkpoint(checkpoint.path, key, step + 1, sac, replay, rng, envs, obs, current, finished,
                              starts, recent)
            if checkpoint.saved is not None:
                checkpoint.saved(step + 1)

    for i in range(k):
        if len(current[i]) > 0:
            finished[i].append(current[i])
    for env in envs:
        env.close()
    return [
        TaskCollection(param=float(p), episodes=finished[i], actor_state=sac.actor_state(i))
        for i, p in enumerate(params)
    ]


# ---------------------------------------------------------------------------------------
# A shard's checkpoint: the learner (`learners.checkpoint`), then per task its episodes so far
# (`task<i>.*`, the current one last) and its env's state; the loop's `obs` as it is.


def _write_checkpoint(path: Path, key: dict[str, Any], step: int, sac: BatchedSAC, replay: BatchedReplay,
                      rng: np.random.Generator, envs: list[gym.Env], obs: np.ndarray, current: list[Episode],
                      finished: list[list[Episode]], starts: list[dict[str, Any] | None], recent: list[float]) -> None:
    meta = {"key": key, "step": step, "recent": recent, **learning_meta(replay, rng),
            "envs": [{"start": start, **env_state(env)} for env, start in zip(envs, starts)]}
    arrays = learning_arrays(sac, replay)
    arrays["obs"] = obs
    for i in range(len(envs)):
        arrays.update(_episode_arrays(f"task{i}.", finished[i] + [current[i]], sac.act_dim))
    write_checkpoint(path, meta, arrays)


def _episode_arrays(prefix: str, episodes: list[Episode], act_dim: int) -> dict[str, np.ndarray]:
    """The episodes concatenated. A task's very first observation keeps its dtype (the reset's, not cast
    to float32 as every later one is), so it is stored on its own."""
    obs = [o for ep in episodes for o in ep.observations]
    return {
        f"{prefix}lengths": np.array([len(ep) for ep in episodes], dtype=np.int64),
        f"{prefix}first_observation": obs[0],
        f"{prefix}observations": np.asarray(obs[1:], dtype=np.float32).reshape(len(obs) - 1, -1),
        f"{prefix}actions": np.asarray([a for ep in episodes for a in ep.actions], np.float32).reshape(-1, act_dim),
        f"{prefix}rewards": np.asarray([r for ep in episodes for r in ep.rewards], dtype=np.float64),
        f"{prefix}terminations": np.asarray([t for ep in episodes for t in ep.terminations], dtype=bool),
        f"{prefix}truncations": np.asarray([t for ep in episodes for t in ep.truncations], dtype=bool),
    }


def _saved_episodes(saved: dict[str, Any], prefix: str) -> list[Episode]:
    lengths = saved[f"{prefix}lengths"]
    later = list(saved[f"{prefix}observations"])
    first = saved[f"{prefix}first_observation"]
    episodes, t = [], 0
    for j, n in enumerate(lengths.tolist()):
        o = t + j  # observations before this episode's first (all but the task's first one are in `later`)
        observations = [first, *later[:n]] if j == 0 else later[o - 1 : o + n]
        episodes.append(Episode(
            observations=observations,
            actions=list(saved[f"{prefix}actions"][t : t + n]),
            rewards=saved[f"{prefix}rewards"][t : t + n].tolist(),
            terminations=saved[f"{prefix}terminations"][t : t + n].tolist(),
            truncations=saved[f"{prefix}truncations"][t : t + n].tolist(),
        ))
        t += n
    return episodes


def _resume(saved: dict[str, Any], family: Family, params: Sequence[float], episode_length: int, seed: int) -> tuple[
        list[gym.Env], np.ndarray, list[Episode], list[list[Episode]], list[dict[str, Any] | None], list[float], int
] | None:
    """The loop's state as saved (envs, obs, current and finished episodes, reset RNG states, recent returns,
    step), each env replayed into its current episode; None if an env does not end where it was saved."""
    meta = saved["meta"]
    episodes = [_saved_episodes(saved, f"task{i}.") for i in range(len(params))]
    envs: list[gym.Env] = []
    for i, (param, state) in enumerate(zip(params, meta["envs"])):
        env = family.make(param, max_episode_steps=episode_length)
        envs.append(env)
        env.reset(seed=shard_reset_seed(seed, i))  # as the run began
        start = state["start"]  # None: the current episode is the first, from that seeded reset
        o = replay_episode(env, episodes[i][-1].actions, seed=shard_reset_seed(seed, i) if start is None else None,
                           rng_state=start)
        env.action_space.np_random.bit_generator.state = state["action_rng"]
        if not np.array_equal(o, saved["obs"][i]) or env_state(env) != {k: v for k, v in state.items() if k != "start"}:
            for e in envs:
                e.close()
            return None
    current = [eps[-1] for eps in episodes]
    finished = [eps[:-1] for eps in episodes]
    starts = [state["start"] for state in meta["envs"]]
    return envs, saved["obs"].copy(), current, finished, starts, [float(r) for r in meta["recent"]], int(meta["step"])


# ---------------------------------------------------------------------------------------
# The family-wide expert's observation: the env's, then the task parameter scaled to [0, 1].


def task_feature(family: Family, param: float) -> float:
    lo, hi = family.param_range
    return (param - lo) / (hi - lo)


def with_task(obs: np.ndarray, feature: float) -> np.ndarray:
    feat = np.full(obs.shape[:-1] + (1,), feature, dtype=np.float32)
    return np.concatenate([obs.astype(np.float32), feat], axis=-1)


# ---------------------------------------------------------------------------------------
# Evaluating a fixed policy: reference scores.


def evaluate_policy(
    family: Family,
    param: float,
    episode_length: int,
    policy: Policy,
    episodes: int,
    seed: int,
) -> np.ndarray:
    """Undiscounted returns of `episodes` episodes; all episodes step in lockstep."""
    envs = [family.make(param, max_episode_steps=episode_length) for _ in range(episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    returns = np.zeros(episodes)
    alive = np.ones(episodes, dtype=bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        actions = np.asarray(policy(obs[idx]), dtype=np.float32)
        for j, i in enumerate(idx):
            o2, r, term, trunc, _ = envs[i].step(actions[j])
            returns[i] += r
            obs[i] = o2
            if term or trunc:
                alive[i] = False
    for env in envs:
        env.close()
    return returns


def random_policy(act_dim: int, seed: int) -> Policy:
    rng = np.random.default_rng(seed)
    return lambda obs: rng.uniform(-1.0, 1.0, size=(obs.shape[0], act_dim)).astype(np.float32)


def expert_policy(expert: BatchedSAC, family: Family, param: float) -> Policy:
    feat = task_feature(family, param)
    return lambda obs: expert.act(with_task(obs, feat)[None], deterministic=True)[0]
