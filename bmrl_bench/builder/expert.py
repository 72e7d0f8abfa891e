"""The family-wide expert: one SAC whose observation carries the task parameter (a candidate for `ref_max`).

It trains on tasks drawn uniformly from the suite's parameter range, a new task every
episode, on `num_envs` envs stepping in turn. Every `eval_every` env steps a check runs
deterministic episodes on fixed tasks (their own env seeds: a check never changes the
training stream). The card's `expert.stop_rule` decides when to stop:

- `mean-plateau` (the default, and what the published suites were built with): from
  `min_steps` on, once the mean return over `eval_tasks` evenly spaced tasks has not beaten
  its best before the last `patience` checks by `min_improvement` x (best - first check).
- `every-task`: from `min_steps` on, once EVERY train task has settled: the mean of its last
  `patience` checks has neither risen above the median of the `patience` checks before them,
  nor fallen below its best such median, by more than `tolerance` x (its return bound - its
  worst check). A mean can sit on a plateau while one task still learns or collapses; this rule
  waits for all of them, and it compares medians of checks, not single checks, because one check
  of a Hopper is one or two episodes that a fall can cut short.

`max_steps` caps both; `ExpertTraining.stop_reason` says in one sentence what ended it.

Checkpoints: given an `ExpertCheckpoint`, the training writes everything it depends on
after every check (weights, Adam's moments, the replay buffer, every RNG state, each env's
episode so far) to one file, atomically, and a later call with the same file resumes
there. Writing one draws no random number, and each env is restored by replaying its
episode from its reset seed (then checked against the saved observation and env RNG),
so a resumed training ends bit-identical to one that never stopped. The pieces a behaviour
shard's checkpoint shares are in `bmrl_bench.learners.checkpoint`.

Snapshots: given a `snapshots` list, every check appends (env step, the actor's weights) to it
(and the checkpoint keeps them), so a tier can act with the expert as it was at a check
(`bmrl_bench.builder.tiers`: the `medium` tier). Copying weights draws no random number and
changes no arithmetic: the expert trains the same with or without them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from bmrl_bench.collect import ReturnsProgressFn, evaluate_policy, expert_policy, task_feature, with_task
from bmrl_bench.families import Family
from bmrl_bench.learners.checkpoint import (
    ENV_MOVED,
    Checkpoint,
    env_rng_state,
    learning_arrays,
    learning_meta,
    read_checkpoint,
    replay_episode,
    restore_learning,
    write_checkpoint,
)
from bmrl_bench.learners.sac import BatchedReplay, BatchedSAC, SACConfig
from bmrl_bench.suites import ExpertRecipe

# The expert's checks reset their envs from this seed range (disjoint from the rest).
EXPERT_CHECK_SEED = 60_000_000
CHECKPOINT_FORMAT = 1  # bump when what a checkpoint holds changes: older files are then not resumed

Curve = list[tuple[int, float]]
TaskCurve = list[tuple[int, list[float]]]
Snapshots = list[tuple[int, dict[str, np.ndarray]]]  # (env step of a check, the actor's weights then)


@dataclass
class ExpertTraining:
    """How the family-wide expert's training ended: the record saved beside its weights."""

    steps: int
    converged: bool  # False: stopped by max_steps before the rule fired
    curve: Curve  # (env step, mean deterministic return over the check's tasks)
    stop_reason: str = ""  # one sentence: which rule ended the training, at which step
    check_params: list[float] = field(default_factory=list)  # the tasks every check ran
    task_curve: TaskCurve = field(default_factory=list)  # every-task: (env step, return per check task)


ExpertCheckpoint = Checkpoint  # where `train_expert` keeps its checkpoint (steps: env steps over all envs)


# ---------------------------------------------------------------------------- stopping rules (pure)


def mean_converged(curve: Sequence[tuple[int, float]], patience: int, min_improvement: float) -> bool:
    """No check in the last `patience` beat the best before them by `min_improvement` x (best - first)."""
    if len(curve) <= patience:
        return False
    returns = [r for _, r in curve]
    best_before = max(returns[:-patience])
    scale = max(best_before - returns[0], 1e-8)
    return max(returns[-patience:]) <= best_before + min_improvement * scale


def unsettled_tasks(
    history: Sequence[tuple[int, Sequence[float]]], bounds: Sequence[float], patience: int, tolerance: float
) -> list[int]:
    """Positions of the tasks that have not settled after the checks in `history` ((step, return per task)).

    With w = `patience`: task t has settled when there are at least 2w checks, the median of its last
    w checks is at most slack_t above the median of the w before them (it stopped rising), and at
    least its best median of w consecutive checks minus slack_t (it has not collapsed), where slack_t
    = tolerance x (bounds[t] - its worst check) and bounds[t] is the highest return any policy can
    get. Medians of w checks, not single checks: one check is one or two episodes, and a Hopper that
    falls in one check would otherwise look unsettled for w checks (the first form of this rule, per
    check and scaled by bound - first check, would not let the hopper-vel-lite expert settle).
    """
    if len(history) < 2 * patience:
        return list(range(len(bounds)))
    unsettled = []
    for t, bound in enumerate(bounds):
        returns = np.array([float(r[t]) for _, r in history])
        windows = np.median(np.lib.stride_tricks.sliding_window_view(returns, patience), axis=-1)  # w in a row
        last, before = windows[-1], windows[-1 - patience]
        slack = tolerance * max(float(bound) - float(returns.min()), 0.0)
        if last - before > slack or last < windows.max() - slack:
            unsettled.append(t)
    return unsettled


def every_task_converged(
    history: Sequence[tuple[int, Sequence[float]]], bounds: Sequence[float], min_steps: int, patience: int,
    tolerance: float,
) -> bool:
    """At least `min_steps` env steps at the last check, and every task settled (`unsettled_tasks`)."""
    return bool(history) and history[-1][0] >= min_steps and not unsettled_tasks(history, bounds, patience, tolerance)


def stop_reason(recipe: ExpertRecipe, steps: int, converged: bool, unsettled_params: Sequence[float] = ()) -> str:
    """One sentence: why the training ended at `steps` (`unsettled_params`: every-task's tasks not settled)."""
    if recipe.stop_rule == "every-task":
        settled = (f"settled (its median over the last {recipe.patience} checks within {recipe.tolerance:g} x "
                   f"(return bound - worst check) of the {recipe.patience} before and of its best)")
        if converged:
            return f"converged at step {steps}: every train task {settled}"
        waiting = ", ".join(f"{p:g}" for p in unsettled_params)
        return f"hit max_steps ({recipe.max_steps}): not every train task {settled} (still moving: {waiting})"
    if converged:
        return (f"converged at step {steps}: the mean check return over {recipe.eval_tasks} tasks did not beat its "
                f"best before the last {recipe.patience} checks by {recipe.min_improvement:g} x (best - first check)")
    if recipe.min_steps >= recipe.max_steps:
        return f"hit max_steps ({recipe.max_steps}); min_steps = max_steps, so convergence was never judged"
    return f"hit max_steps ({recipe.max_steps}) before the mean check return over {recipe.eval_tasks} tasks settled"


# ---------------------------------------------------------------------------- training


@dataclass
class _Slot:
    """One env in mid-episode, with what it takes to replay the episode: its task, reset seed and actions.
    (Its current observation is its row of the training loop's `obs`.)"""

    env: gym.Env
    param: float
    seed: int
    feature: float  # the task parameter as the expert sees it (`task_feature`)
    actions: list[np.ndarray] = field(default_factory=list)


def train_expert(
    family: Family,
    param_low: float,
    param_high: float,
    episode_length: int,
    recipe: ExpertRecipe,
    progress: ReturnsProgressFn | None = None,
    *,
    train_params: Sequence[float] = (),
    checkpoint: ExpertCheckpoint | None = None,
    snapshots: Snapshots | None = None,
) -> tuple[BatchedSAC, ExpertTraining]:
    """SAC on tasks drawn uniformly from [param_low, param_high] per episode, param in the obs.

    Trains at least `min_steps` env steps, then until the card's stop rule fires (see the
    module's docstring) or `max_steps` is reached. `train_params`: the tasks the every-task
    rule checks. `checkpoint`: resume from its file if it holds this training, and write it
    after every check. `snapshots`: a list that receives (step, actor weights) at every check.
    """
    every_task = recipe.stop_rule == "every-task"
    if every_task and not train_params:
        raise ValueError("train_expert: the every-task stop rule needs the train tasks (train_params)")
    rng = np.random.default_rng(recipe.seed)
    n = recipe.num_envs
    probe = family.make(param_low, max_episode_steps=episode_length)
    obs_dim = probe.observation_space.shape[0] + 1
    act_dim = probe.action_space.shape[0]
    probe.close()
    sac = BatchedSAC(1, obs_dim, act_dim, SACConfig(hidden=tuple(recipe.hidden), batch_size=recipe.batch_size),
                     seed=recipe.seed)
    replay = BatchedReplay(1, recipe.max_steps, obs_dim, act_dim, seed=recipe.seed)
    if every_task:
        check_params = [float(p) for p in train_params]
        bounds = [family.return_bounds(episode_length, p)[1] for p in check_params]
    else:
        check_params = [float(p) for p in np.linspace(param_low, param_high, recipe.eval_tasks)]
        bounds = []

    def check() -> float:  # mean-plateau: one episode per task
        return float(np.mean([
            evaluate_policy(family, p, episode_length, expert_policy(sac, family, p), 1, EXPERT_CHECK_SEED + j)[0]
            for j, p in enumerate(check_params)
        ]))

    def check_tasks() -> list[float]:  # every-task: `check_episodes` per task, seeds apart per task
        return [
            float(np.mean(evaluate_policy(family, p, episode_length, expert_policy(sac, family, p),
                                          recipe.check_episodes, EXPERT_CHECK_SEED + 1000 * j)))
            for j, p in enumerate(check_params)
        ]

    def new_env(row: np.ndarray) -> _Slot:
        """A new episode on a new task; its first observation (with the task feature) goes into `row`."""
        param = float(rng.uniform(param_low, param_high))
        env = family.make(param, max_episode_steps=episode_length)
        seed = int(rng.integers(2**31))
        o, _ = env.reset(seed=seed)
        feature = task_feature(family, param)
        row[:] = with_task(o, feature)
        return _Slot(env, param, seed, feature)

    key = {"format": CHECKPOINT_FORMAT, "family": family.name, "param_low": float(param_low),
           "param_high": float(param_high), "episode_length": int(episode_length),
           "train_params": [float(p) for p in train_params], "recipe": recipe.model_dump()}
    resumed = _resume(checkpoint, key, family, episode_length)
    obs = np.empty((n, obs_dim), np.float32)  # each env's current observation, task feature last
    if resumed is None:
        slots = [new_env(obs[i]) for i in range(n)]
        returns = [0.0] * n
        recent = [float("nan")]
        curve: Curve = []
        task_curve: TaskCurve = []
        step = 0
    else:
        saved, slots, saved_obs = resumed
        obs[:] = saved_obs
        restore_learning(saved, sac, replay, rng)
        meta = saved["meta"]
        returns, recent, step = list(meta["returns"]), list(meta["recent"]), int(meta["step"])
        curve = [(int(s), float(r)) for s, r in meta["curve"]]
        task_curve = [(int(s), [float(x) for x in r]) for s, r in meta["task_curve"]]
        if snapshots is not None:
            snapshots.extend(_saved_snapshots(saved))
        if checkpoint is not None:
            checkpoint.resumed_at = step
    warmup = min(recipe.min_steps // 10, 5000)
    # The checks fall at fixed steps, so the next one follows from the last one made.
    next_check = max(warmup, recipe.eval_every) + len(curve) * recipe.eval_every
    converged = False
    # One loop step's n transitions, stored with one replay write after the n env steps (the replay is
    # sampled only after them, so this stores what n writes in env order would). Filled in place: float32
    # rows, cast from the env's output exactly as `with_task` casts it.
    next_obs = np.empty((1, n, obs_dim), np.float32)
    rewards = np.empty((1, n), np.float32)
    terminals = np.empty((1, n), np.float32)
    ended: list[int] = []
    while step < recipe.max_steps:
        if step < warmup:
            actions = rng.uniform(-1.0, 1.0, size=(n, act_dim)).astype(np.float32)
        else:
            actions = sac.act(obs[None], deterministic=False)[0].astype(np.float32, copy=False)
        for i, s in enumerate(slots):
            o2, r, term, trunc, _ = s.env.step(actions[i])
            next_obs[0, i, :-1] = o2
            next_obs[0, i, -1] = s.feature
            rewards[0, i] = r
            terminals[0, i] = term
            returns[i] += float(r)
            if term or trunc:
                recent[0] = returns[i]
                returns[i] = 0.0
                ended.append(i)
            else:
                s.actions.append(actions[i].copy())
        replay.add_steps(obs[None], actions[None], rewards, next_obs, terminals)
        obs[:] = next_obs[0]
        for i in ended:  # in env order: each new task and reset seed draws from `rng` as it always did
            slots[i].env.close()
            slots[i] = new_env(obs[i])
        ended.clear()
        step += n
        if step >= warmup:
            for _ in range(n * recipe.updates_per_step):
                sac.update(replay.sample(recipe.batch_size))
        if progress is not None and (step % 400 < n or step >= recipe.max_steps):
            progress(min(step, recipe.max_steps), recipe.max_steps, recent + [curve[-1][1]] if curve else recent)
        if step >= next_check:
            next_check += recipe.eval_every
            if every_task:
                task_returns = check_tasks()
                task_curve.append((step, task_returns))
                curve.append((step, float(np.mean(task_returns))))
                converged = every_task_converged(task_curve, bounds, recipe.min_steps, recipe.patience,
                                                 recipe.tolerance)
            else:
                curve.append((step, check()))
                converged = step >= recipe.min_steps and mean_converged(curve, recipe.patience, recipe.min_improvement)
            if snapshots is not None:
                snapshots.append((step, {k: v.numpy() for k, v in sac.actor_state(0).items()}))
            if converged:
                break
            if checkpoint is not None and step < recipe.max_steps:
                _write_checkpoint(checkpoint.path, key, step, sac, replay, rng, slots, obs, returns, recent, curve,
                                  task_curve, snapshots)
                if checkpoint.saved is not None:
                    checkpoint.saved(step)
    for s in slots:
        s.env.close()
    unsettled = unsettled_tasks(task_curve, bounds, recipe.patience, recipe.tolerance) if every_task else []
    reason = stop_reason(recipe, step, converged, [check_params[t] for t in unsettled])
    return sac, ExpertTraining(step, converged, curve, reason, check_params, task_curve)


# ---------------------------------------------------------------------------- checkpoints


def _write_checkpoint(path: Path, key: dict[str, Any], step: int, sac: BatchedSAC, replay: BatchedReplay,
                      rng: np.random.Generator, slots: list[_Slot], obs: np.ndarray, returns: list[float],
                      recent: list[float], curve: Curve, task_curve: TaskCurve,
                      snapshots: Snapshots | None = None) -> None:
    """Everything the rest of the training depends on, in one .npz (no pickle), written atomically."""
    meta = {
        "key": key, "step": step, "returns": returns, "recent": recent, "curve": curve, "task_curve": task_curve,
        **learning_meta(replay, rng),
        "slots": [{"param": s.param, "seed": s.seed, "env_rng": env_rng_state(s.env)} for s in slots],
    }
    arrays = learning_arrays(sac, replay)
    for i, s in enumerate(slots):
        arrays[f"slot{i}.obs"] = obs[i]
        arrays[f"slot{i}.actions"] = np.asarray(s.actions, dtype=np.float32).reshape(len(s.actions), sac.act_dim)
    for step_, weights in snapshots or ():  # the check snapshots so far, as `snap.<step>.<name>`
        arrays.update({f"snap.{step_}.{k}": v for k, v in weights.items()})
    write_checkpoint(path, meta, arrays)


def _resume(checkpoint: ExpertCheckpoint | None, key: dict[str, Any], family: Family,
            episode_length: int) -> tuple[dict[str, Any], list[_Slot], np.ndarray] | None:
    """(the saved state, its envs replayed, their observations) if `checkpoint` holds this training; else None
    (and why, if a file was)."""
    saved = read_checkpoint(checkpoint, key)
    if saved is None or checkpoint is None:
        return None
    replayed = _replay_envs(saved, family, episode_length)
    if replayed is None:
        checkpoint.discarded = ENV_MOVED
        return None
    return saved, *replayed


def _replay_envs(saved: dict[str, Any], family: Family,
                 episode_length: int) -> tuple[list[_Slot], np.ndarray] | None:
    """Each saved env, made again and replayed from its reset seed, and its observation (with the task feature);
    None if one does not end where it was saved."""
    slots: list[_Slot] = []
    observations = []
    for i, s in enumerate(saved["meta"]["slots"]):
        env = family.make(s["param"], max_episode_steps=episode_length)
        actions = saved[f"slot{i}.actions"]
        o = replay_episode(env, actions, seed=s["seed"])
        feature = task_feature(family, s["param"])
        obs = with_task(o, feature)
        slots.append(_Slot(env, float(s["param"]), int(s["seed"]), feature, list(actions)))
        observations.append(obs)
        if not np.array_equal(obs, saved[f"slot{i}.obs"]) or env_rng_state(env) != s["env_rng"]:
            for slot in slots:
                slot.env.close()
            return None
    return slots, np.stack(observations)


def _saved_snapshots(saved: dict[str, Any]) -> Snapshots:
    """The check snapshots a checkpoint holds (none in one written without them), in step order."""
    by_step: dict[int, dict[str, np.ndarray]] = {}
    for name, value in saved.items():
        if name.startswith("snap."):
            step, key = name[5:].split(".", 1)
            by_step.setdefault(int(step), {})[key] = value
    return sorted(by_step.items())
