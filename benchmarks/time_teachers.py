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

from baselines.time_distill import CONFIGS, TiMe
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


def run_episodes(policy: Callable[[np.ndarray], np.ndarray], k: int, suite: Any, tasks: list[TaskInfo],
                 members: list[int], episodes: int, seed: int) -> np.ndarray:
    """Mean return over `episodes` of member `members[i]` on `tasks[i]`, all envs stepped in lockstep: (len(tasks),).

    `policy` maps the K members' observations (K, o) to their actions (K, a)."""
    envs = [suite.family.make(t.param, max_episode_steps=suite.card.episode_length) for t in tasks]
    totals = np.zeros(len(tasks))
    for e in range(episodes):
        obs = np.stack([env.reset(seed=seed * 1000 + 17 * i + e)[0] for i, env in enumerate(envs)]).astype(np.float32)
        done = np.zeros(len(tasks), dtype=bool)
        while not done.all():
            full = np.zeros((k, obs.shape[1]), dtype=np.float32)
            full[members] = obs
            act = policy(full)[members]
            for i, env in enumerate(envs):
                if done[i]:
                    continue
                o, r, term, trunc, _ = env.step(act[i])
                totals[i] += r
                obs[i] = o
                done[i] = term or trunc
    for env in envs:
        env.close()
    return totals / episodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="halfcheetah-vel-lite")
    ap.add_argument("--config", default=None, help="tiMe config name (default: the suite's)")
    ap.add_argument("--steps", default="3000", help="comma-separated phase-1 update counts to score at")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    torch.set_num_threads(int(os.environ.get("BMRL_BENCH_THREADS", "2")))
    suite = load_suite(args.suite)
    data = meta_train_data(suite)
    checkpoints = sorted(int(s) for s in args.steps.split(","))
    base = CONFIGS[args.config or args.suite]
    algo = TiMe(dataclasses.replace(base, phase1_steps=checkpoints[-1]), spec_of(suite), args.seed)
    sampler = TaskSampler(data.batch, data.num_tasks, "cpu")
    learner = algo._phase1_learner(data.num_tasks)
    gen = algo.phase1_generator()  # the same stream and updates as TiMe.train_phase1

    train, test = suite.train_tasks, suite.test_tasks
    params = np.array([t.param for t in train])
    nearest = [int(np.abs(params - t.param).argmin()) for t in test]
    # The behaviour data's own ceiling on each test task: what a learner that imitated the best of its
    # task's behaviour would score (BCQ stays close to the data; the test tasks' data is never trained on).
    data_ceiling = {}
    for t in test:
        r = read_episodes(t.dataset_id, suite.root).episode_returns()
        data_ceiling[str(t.param)] = {k: round(float(normalize(np.array(v), t.ref_min, t.ref_max)), 3)
                                      for k, v in (("last_10_episodes", r[-10:].mean()), ("best_episode", r.max()))}
    print(json.dumps({"behaviour_data_on_test": data_ceiling}), flush=True)
    rows = []

    def cache_path(n: int) -> Path:
        return TiMe(dataclasses.replace(base, phase1_steps=n), spec_of(suite), args.seed).phase1_cache_path(data)

    # Train only as far as the last checkpoint that is not cached yet; cached ones are loaded.
    last_new = max((n for n in checkpoints if not cache_path(n).exists()), default=0)
    train_s, step = 0.0, 0
    for n in checkpoints:
        path = cache_path(n)
        if n <= last_new:
            t0 = time.perf_counter()
            while step < n:
                algo.phase1_update(learner, sampler, gen)
                step += 1
            train_s += time.perf_counter() - t0
            if not path.exists():
                TiMe.save_phase1(learner, path)
            teacher = learner
        else:
            teacher = algo._phase1_learner(data.num_tasks)
            teacher.load_state_dict(load_file(str(path)))
        row: dict[str, Any] = {"phase1_steps": n, "train_seconds": round(train_s, 1) if n <= last_new else "cached"}
        actor = functools.partial(teacher.act, deterministic=True) if base.phase1 == "sac" else teacher.act
        policies = {"actor": actor}
        if base.phase1 == "sac":  # what tiMe does with Q_S, here with the teacher's own Q
            act_dim = suite.train.actions.shape[1]
            policies["shooting"] = shooting_policy(teacher, act_dim, base.shooting_actions, args.seed)
        for how, policy in policies.items():
            runs = (("own_task", train, list(range(len(train)))), ("nearest_teacher_on_test", test, nearest))
            for label, tasks, members in runs:
                ret = run_episodes(policy, data.num_tasks, suite, tasks, members, args.episodes, args.seed)
                norm = [float(normalize(np.array(r), t.ref_min, t.ref_max)) for r, t in zip(ret, tasks)]
                row[f"{label} ({how})"] = {"returns": ret.round(1).tolist(), "normalized": np.round(norm, 3).tolist(),
                                           "mean": round(float(np.mean(norm)), 3)}
        row["nearest_teacher"] = nearest
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:  # after every checkpoint, so a stopped run keeps what it measured
            report = {"suite": args.suite, "seed": args.seed, "episodes": args.episodes,
                      "behaviour_data_on_test": data_ceiling, "rows": rows}
            atomic_write_text(args.out, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
