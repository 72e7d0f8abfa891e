"""Behaviour data as in the tiMe paper: the replay buffer of SAC trained online on one task.

All tasks of a suite train together: one `BatchedSAC` whose member k learns task k
from env k only, so K tasks cost one batched update per step instead of K updates.
The whole replay buffer of each member (random warm-up, poor and good behaviour)
becomes that task's dataset. The family-wide expert (`builder.expert.train_expert`)
sees the task parameter through `with_task`; it is a candidate for each task's `ref_max_score`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from bmrl_bench.families import Family
from bmrl_bench.learners.sac import BatchedReplay, BatchedSAC, SACConfig
from bmrl_bench.replay import shard_reset_seed
from bmrl_bench.suites import BehaviourRecipe

Policy = Callable[[np.ndarray], np.ndarray]  # (B, obs_dim) -> (B, act_dim), deterministic
ReturnsProgressFn = Callable[[int, int, list[float]], None]  # (step, total, recent return per task): not a ProgressFn


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
) -> list[TaskCollection]:
    """Train one SAC per task parameter online, all batched; return every transition."""
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

    for step in range(recipe.steps_per_task):
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
                o2, _ = env.reset()
                current[i] = Episode(observations=[np.asarray(o2, dtype=np.float32)])
            obs[i] = o2
        replay.add(prev_obs, actions, rewards, next_obs, terminals)
        if step >= recipe.learning_starts:
            for _ in range(recipe.updates_per_step):
                sac.update(replay.sample(recipe.batch_size))
        if progress is not None and (step % 200 == 0 or last_step):
            progress(step + 1, recipe.steps_per_task, recent)

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
