"""How good are tiMe's phase-1 teachers? The ceiling of what phase 2 can distill.

Trains the phase-1 learners of `--suite` (one per meta-train task, as `bmrl-bench eval
--algo time` does, same seed and same update sequence) and, at each of `--steps`:
- scores every teacher on its own meta-train task (it knows its task: no identification);
- scores, on every meta-test task, the teacher of the nearest meta-train task (a perfect
  identification followed by nearest-neighbour generalization).
Each checkpoint is also written to the phase-1 cache under the key that `eval --algo time
--set phase1_steps=N` looks up (the first N updates are the same whatever the total, so the
file is byte for byte what that eval would train); checkpoints already cached are loaded, so
a second run only scores.

    python benchmarks/time_teachers.py --suite halfcheetah-vel-lite --steps 3000,10000 --out results/teachers.json

Prints per-task normalized returns (the suite's reference scores) and writes them as JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from baselines.time_distill import CONFIGS, TiMe, TiMeConfig
from bmrl_bench.cli_inputs import parse_overrides, split_overrides
from bmrl_bench.data import TaskInfo, load_suite, read_episodes
from bmrl_bench.fsutil import atomic_write_text
from bmrl_bench.harness import meta_train_data, spec_of
from bmrl_bench.learners.sampling import TaskSampler
from bmrl_bench.metrics import normalize


def shooting_policy(learner: Any, act_dim: int, shots: int, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """tiMe's PointGoal acting, on each teacher's own critic: the best of `shots` uniform actions by Q."""
    gen = torch.Generator().manual_seed(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        k = obs.shape[0]
        cand = torch.rand(k, shots, act_dim, generator=gen) * 2.0 - 1.0
        q = learner.q_value(torch.as_tensor(obs).unsqueeze(1).expand(k, shots, -1), cand)  # (K, shots)
        return cand[torch.arange(k), q.argmax(1)].numpy()

    return act


@dataclasses.dataclass
class Rollouts:
    """Per task (len(tasks),): mean return, mean |action|, and (with a `q_fn`) the teacher's mean Q at the
    states and actions it visited against the Monte-Carlo discounted return that followed them (steps
    more than `MC_TAIL` before the episode's end only, so the truncated tail weighs below 5%)."""

    returns: np.ndarray
    abs_action: np.ndarray
    q: np.ndarray | None = None
    mc: np.ndarray | None = None


MC_TAIL = 300  # 0.99 ** 300 < 0.05


def run_episodes(policy: Callable[[np.ndarray], np.ndarray], k: int, suite: Any, tasks: list[TaskInfo],
                 members: list[int], episodes: int, seed: int, gamma: float = 0.99,
                 q_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> Rollouts:
    """Member `members[i]` on `tasks[i]` for `episodes` each, all envs stepped in lockstep.

    `policy` maps the K members' observations (K, o) to their actions (K, a); `q_fn` the same inputs and
    actions to the members' Q values (K,)."""
    envs = [suite.family.make(t.param, max_episode_steps=suite.card.episode_length) for t in tasks]
    n = len(tasks)
    totals, abs_a, steps = np.zeros(n), np.zeros(n), np.zeros(n)
    q_sum, mc_sum, mc_count = np.zeros(n), np.zeros(n), np.zeros(n)
    for e in range(episodes):
        obs = np.stack([env.reset(seed=seed * 1000 + 17 * i + e)[0] for i, env in enumerate(envs)]).astype(np.float32)
        done = np.zeros(n, dtype=bool)
        rewards: list[list[float]] = [[] for _ in range(n)]
        qs: list[list[float]] = [[] for _ in range(n)]
        while not done.all():
            full = np.zeros((k, obs.shape[1]), dtype=np.float32)
            full[members] = obs
            full_act = policy(full)
            act = full_act[members]
            if q_fn is not None:
                q = q_fn(full, full_act)[members]
            for i, env in enumerate(envs):
                if done[i]:
                    continue
                o, r, term, trunc, _ = env.step(act[i])
                totals[i] += r
                abs_a[i] += float(np.abs(act[i]).mean())
                steps[i] += 1
                rewards[i].append(float(r))
                if q_fn is not None:
                    qs[i].append(float(q[i]))
                obs[i] = o
                done[i] = term or trunc
        if q_fn is not None:
            for i in range(n):
                g, ret = 0.0, np.zeros(len(rewards[i]))
                for t in range(len(rewards[i]) - 1, -1, -1):
                    g = rewards[i][t] + gamma * g
                    ret[t] = g
                head = max(1, len(ret) - MC_TAIL)
                q_sum[i] += float(np.sum(qs[i][:head]))
                mc_sum[i] += float(np.sum(ret[:head]))
                mc_count[i] += head
    for env in envs:
        env.close()
    out = Rollouts(totals / episodes, abs_a / np.maximum(steps, 1))
    if q_fn is not None:
        out.q, out.mc = q_sum / mc_count, mc_sum / mc_count
    return out


def behaviour_level(suite: Any, tasks: list[TaskInfo]) -> dict[str, dict[str, float]]:
    """Per task: the normalized mean of its behaviour data's last 10 episodes and its best episode."""
    out = {}
    for t in tasks:
        r = read_episodes(t.dataset_id, suite.root).episode_returns()
        out[str(t.param)] = {k: round(float(normalize(np.array(v), t.ref_min, t.ref_max)), 3)
                             for k, v in (("last_10_episodes", r[-10:].mean()), ("best_episode", r.max()))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="halfcheetah-vel-lite")
    ap.add_argument("--config", default=None, help="tiMe config name (default: the suite's)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a field of the config (repeatable), as `eval --set` does")
    ap.add_argument("--steps", default="3000", help="comma-separated phase-1 update counts to score at")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="torch device of the teachers")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    # One thread, as the harness runs each seed: with two of these scripts at 2 threads each on the
    # 2-core machine, 3k hopper-vel-lite updates took 594 s, against about 2 min per seed in `eval`.
    torch.set_num_threads(int(os.environ.get("BMRL_BENCH_THREADS", "1")))
    config_name = args.config or args.suite
    if config_name not in CONFIGS:
        raise SystemExit(f"--config {config_name!r}: unknown; tiMe's configs: {', '.join(CONFIGS)}")
    base = dataclasses.replace(CONFIGS[config_name], **parse_overrides(TiMeConfig, split_overrides(args.set)))
    suite = load_suite(args.suite)
    data = meta_train_data(suite)
    checkpoints = sorted(int(s) for s in args.steps.split(","))
    algo = TiMe(dataclasses.replace(base, phase1_steps=checkpoints[-1]), spec_of(suite), args.seed, args.device)
    sampler = TaskSampler(data.batch, data.num_tasks, args.device)
    learner = algo._phase1_learner(data.num_tasks)
    gen = algo.phase1_generator()  # the same stream and updates as TiMe.train_phase1

    train, test = suite.train_tasks, suite.test_tasks
    params = np.array([t.param for t in train])
    nearest = [int(np.abs(params - t.param).argmin()) for t in test]
    # The behaviour data's level: a teacher should reach its own task's last-10 level (issue 17); on the
    # test tasks, what a learner that imitated the best of that task's behaviour would score.
    levels = {"train": behaviour_level(suite, train), "test": behaviour_level(suite, test)}
    print(json.dumps({"behaviour_data": levels}), flush=True)
    rows = []

    def cache_path(n: int) -> Path:
        return TiMe(dataclasses.replace(base, phase1_steps=n), spec_of(suite), args.seed,
                    args.device).phase1_cache_path(data)

    def q_of(teacher: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def q(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
            return teacher.q_value(torch.as_tensor(obs)[:, None], torch.as_tensor(act)[:, None])[:, 0].cpu().numpy()
        return q

    # Train only as far as the last checkpoint that is not cached yet; cached ones are loaded.
    last_new = max((n for n in checkpoints if not cache_path(n).exists()), default=0)
    train_s, step = 0.0, 0
    for n in checkpoints:
        path = cache_path(n)
        metrics: dict[str, float] = {}
        if n <= last_new:
            t0 = time.perf_counter()
            while step < n:
                metrics = algo.phase1_update(learner, sampler, gen)
                step += 1
            train_s += time.perf_counter() - t0
            if not path.exists():
                TiMe.save_phase1(learner, path)
            teacher = learner
        else:
            teacher = algo._phase1_learner(data.num_tasks)
            teacher.load_state_dict(load_file(str(path)))
        row: dict[str, Any] = {"phase1_steps": n, "train_seconds": round(train_s, 1) if n <= last_new else "cached",
                               "last_metrics": {k: round(v, 3) for k, v in metrics.items()}}
        actor = functools.partial(teacher.act, deterministic=True) if base.phase1 == "sac" else teacher.act
        policies = {"actor": actor}
        if base.phase1 == "sac":  # what tiMe does with Q_S, here with the teacher's own Q
            act_dim = suite.train.actions.shape[1]
            policies["shooting"] = shooting_policy(teacher, act_dim, base.shooting_actions, args.seed)
        for how, policy in policies.items():
            runs = (("own_task", train, list(range(len(train)))), ("nearest_teacher_on_test", test, nearest))
            for label, tasks, members in runs:
                q_fn = q_of(teacher) if label == "own_task" and how == "actor" else None
                ro = run_episodes(policy, data.num_tasks, suite, tasks, members, args.episodes, args.seed,
                                  base.gamma, q_fn)
                norm = [float(normalize(np.array(r), t.ref_min, t.ref_max)) for r, t in zip(ro.returns, tasks)]
                cell: dict[str, Any] = {
                    "returns": ro.returns.round(1).tolist(), "normalized": np.round(norm, 3).tolist(),
                    "mean": round(float(np.mean(norm)), 3), "abs_action": ro.abs_action.round(3).tolist()}
                if ro.q is not None and ro.mc is not None:
                    cell["q_on_policy"] = ro.q.round(1).tolist()
                    cell["mc_return"] = ro.mc.round(1).tolist()
                row[f"{label} ({how})"] = cell
        row["nearest_teacher"] = nearest
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:  # after every checkpoint, so a stopped run keeps what it measured
            report = {"suite": args.suite, "seed": args.seed, "episodes": args.episodes, "config": config_name,
                      "set": args.set, "device": args.device, "behaviour_data": levels, "rows": rows}
            atomic_write_text(args.out, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
