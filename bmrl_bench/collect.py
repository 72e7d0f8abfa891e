"""Behaviour data as in the tiMe paper: the replay buffer of SAC trained online on one task.

All tasks of a suite train together: one `BatchedSAC` whose member k learns task k
from env k only, so K tasks cost one batched update per step instead of K updates.
The whole replay buffer of each member (random warm-up, poor and good behaviour)
becomes that task's dataset. `train_expert` trains one family-wide SAC that sees
the task parameter; it is a candidate for each task's `ref_max_score`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from bmrl_bench.families import Family
from bmrl_bench.learners.sac import BatchedReplay, BatchedSAC, SACConfig
from bmrl_bench.suites import BehaviourRecipe, ExpertRecipe

Policy = Callable[[np.ndarray], np.ndarray]  # (B, obs_dim) -> (B, act_dim), deterministic
ReturnsProgressFn = Callable[[int, int, list[float]], None]  # (step, total, recent return per task): not a ProgressFn
# The expert's convergence checks reset their envs from this seed range (disjoint from the rest).
EXPERT_CHECK_SEED = 60_000_000


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

    obs = np.stack([env.reset(seed=recipe.seed * 1000 + i)[0] for i, env in enumerate(envs)])
    for i, env in enumerate(envs):
        env.action_space.seed(recipe.seed * 1000 + i)
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
# The family-wide expert: one SAC whose observation carries the task parameter.


def task_feature(family: Family, param: float) -> float:
    lo, hi = family.param_range
    return (param - lo) / (hi - lo)


def with_task(obs: np.ndarray, feature: float) -> np.ndarray:
    feat = np.full(obs.shape[:-1] + (1,), feature, dtype=np.float32)
    return np.concatenate([obs.astype(np.float32), feat], axis=-1)


@dataclass
class ExpertTraining:
    """How the family-wide expert's training ended: the record saved beside its weights."""

    steps: int
    converged: bool  # False: stopped by max_steps before the rule fired
    curve: list[tuple[int, float]]  # (env step, mean deterministic return over the check's tasks)


def _converged(curve: list[tuple[int, float]], patience: int, min_improvement: float) -> bool:
    """No check in the last `patience` beat the best before them by `min_improvement` x (best - first)."""
    if len(curve) <= patience:
        return False
    returns = [r for _, r in curve]
    best_before = max(returns[:-patience])
    scale = max(best_before - returns[0], 1e-8)
    return max(returns[-patience:]) <= best_before + min_improvement * scale


def train_expert(
    family: Family,
    param_low: float,
    param_high: float,
    episode_length: int,
    recipe: ExpertRecipe,
    progress: ReturnsProgressFn | None = None,
) -> tuple[BatchedSAC, ExpertTraining]:
    """SAC on tasks drawn uniformly from [param_low, param_high] per episode, param in the obs.

    Trains at least `min_steps` env steps, then until the deterministic return on
    `eval_tasks` fixed tasks stops improving (`_converged`) or `max_steps` is reached.
    The checks use their own env seeds, so they never change the training stream.
    """
    rng = np.random.default_rng(recipe.seed)
    n = recipe.num_envs
    probe = family.make(param_low, max_episode_steps=episode_length)
    obs_dim = probe.observation_space.shape[0] + 1
    act_dim = probe.action_space.shape[0]
    probe.close()
    sac = BatchedSAC(1, obs_dim, act_dim, _sac_config(recipe.hidden, recipe.batch_size), seed=recipe.seed)
    replay = BatchedReplay(1, recipe.max_steps, obs_dim, act_dim, seed=recipe.seed)
    check_params = np.linspace(param_low, param_high, recipe.eval_tasks)

    def check() -> float:
        return float(np.mean([
            evaluate_policy(family, float(p), episode_length, expert_policy(sac, family, float(p)), 1,
                            EXPERT_CHECK_SEED + j)[0]
            for j, p in enumerate(check_params)
        ]))

    def new_env(slot: int) -> tuple[gym.Env, float, np.ndarray]:
        param = float(rng.uniform(param_low, param_high))
        env = family.make(param, max_episode_steps=episode_length)
        o, _ = env.reset(seed=int(rng.integers(2**31)))
        return env, task_feature(family, param), with_task(o, task_feature(family, param))

    slots = [new_env(i) for i in range(n)]
    returns = [0.0] * n
    recent = [float("nan")]
    warmup = min(recipe.min_steps // 10, 5000)
    curve: list[tuple[int, float]] = []
    next_check = max(warmup, recipe.eval_every)
    converged = False
    step = 0
    while step < recipe.max_steps:
        obs = np.stack([s[2] for s in slots])
        if step < warmup:
            actions = rng.uniform(-1.0, 1.0, size=(n, act_dim)).astype(np.float32)
        else:
            actions = sac.act(obs[None], deterministic=False)[0].astype(np.float32)
        for i in range(n):
            env, feat, o = slots[i]
            o2, r, term, trunc, _ = env.step(actions[i])
            o2 = with_task(o2, feat)
            replay.add(o[None], actions[i][None], np.array([r], np.float32), o2[None],
                       np.array([float(term)], np.float32))
            returns[i] += float(r)
            if term or trunc:
                recent[0] = returns[i]
                returns[i] = 0.0
                env.close()
                slots[i] = new_env(i)
            else:
                slots[i] = (env, feat, o2)
            step += 1
        if step >= warmup:
            for _ in range(n * recipe.updates_per_step):
                sac.update(replay.sample(recipe.batch_size))
        if progress is not None and (step % 400 < n or step >= recipe.max_steps):
            progress(min(step, recipe.max_steps), recipe.max_steps, recent + [curve[-1][1]] if curve else recent)
        if step >= next_check:
            next_check += recipe.eval_every
            curve.append((step, check()))
            converged = step >= recipe.min_steps and _converged(curve, recipe.patience, recipe.min_improvement)
            if converged:
                break
    for env, _, _ in slots:
        env.close()
    return sac, ExpertTraining(step, converged, curve)


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
