"""Which task does tiMe think it is in, step by step of a zero-shot episode?

    bmrl-bench eval --algo time --suite halfcheetah-vel-lite --seeds 0 --checkpoints ckpt/
    python benchmarks/time_identification.py --suite halfcheetah-vel-lite --checkpoints ckpt/ --seed 0 \\
        --out docs/figures/time-identification-halfcheetah-vel-lite.json

Decodes tiMe's embedding into the task parameter (a target velocity; PointGoal: the goal's angle)
with a linear read-out (ridge, least squares) fit on embeddings of offline contexts from the train
tasks' own data (contexts of 1, 5, 20 and 200 transitions, 20 draws each per task). Then, per test
task, it reports:
- the read-out of offline contexts (200 transitions, as the offline-context protocol draws them) of
  that task's offline data: the read-out is sound where this lands near the task's target;
- the harness's first zero-shot episode (its episode seed), in windows of steps: the agent's mean
  forward velocity (PointGoal: distance to the goal), the read-out of the embedding it acted with
  (the episode so far) and the mean |a|.
An embedding whose read-out drifts from the target towards the agent's own velocity is a context
that identifies the wrong task: a transition at velocity v with reward -|v - v_target| says only
that v_target is one of v +- |r|, and the episode's transitions share one v.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.time_distill import TiMe
from bmrl_bench.data import Batch, load_suite
from bmrl_bench.errors import CheckpointError
from bmrl_bench.fsutil import atomic_write_text
from bmrl_bench.harness import checkpoint_of
from bmrl_bench.protocols import episode_seed

WINDOWS = ((0, 10), (10, 50), (50, 200), (200, 1000))


def embedding(algo: TiMe, batch: Batch, n: int, rng: np.random.Generator) -> np.ndarray:
    """The embedding of `n` transitions drawn from `batch`."""
    return algo.context_embedding(batch, rng.integers(0, len(batch), size=n)).numpy()


def fit_readout(algo: TiMe, suite: Any, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Ridge weights (d + 1,) mapping an embedding to the train task's parameter, and the fit's RMSE."""
    x, y = [], []
    for task in suite.train_tasks:
        batch = suite.train.task(task.index)
        for n in (1, 5, 20, 200):
            for _ in range(20):
                x.append(embedding(algo, batch, n, rng))
                y.append(task.param)
    xa = np.c_[np.array(x), np.ones(len(x))]
    w = np.linalg.solve(xa.T @ xa + 1e-3 * np.eye(xa.shape[1]), xa.T @ np.array(y))
    return w, float(np.sqrt(np.mean((xa @ w - np.array(y)) ** 2)))


def zero_shot_trace(algo: TiMe, suite: Any, task: Any, readout: np.ndarray) -> dict[str, Any]:
    """The harness's first zero-shot episode on `task`, with the read-out of the embedding at each step."""
    env = suite.family.make(task.param, max_episode_steps=suite.card.episode_length)
    agent = algo.make_agent()
    agent.reset()
    obs, _ = env.reset(seed=episode_seed(algo.seed, task.index, 0))
    rows, total = [], 0.0
    while True:
        read = float(np.r_[agent.embedding.numpy(), 1.0] @ readout)  # the embedding this action is chosen with
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        agent.observe(obs, action, float(reward), next_obs, terminated)
        tracked = info["x_velocity"] if "x_velocity" in info else info["distance"]
        rows.append((float(tracked), read, float(np.abs(action).mean())))
        total, obs = total + float(reward), next_obs
        if terminated or truncated:
            break
    env.close()
    trace = np.array(rows)
    mean = lambda lo, hi, col: round(float(trace[lo:hi, col].mean()), 3)  # noqa: E731
    windows = [{"steps": f"{lo}-{min(hi, len(trace))}", "velocity": mean(lo, hi, 0), "read_out": mean(lo, hi, 1),
                "mean_abs_action": mean(lo, hi, 2)} for lo, hi in WINDOWS if lo < len(trace)]
    return {"return": round(total, 2), "windows": windows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="halfcheetah-vel-lite")
    ap.add_argument("--checkpoints", type=Path, required=True, help="the --checkpoints folder of `eval --algo time`")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = ap.parse_args()

    torch.set_num_threads(int(os.environ.get("BMRL_BENCH_THREADS", "1")))
    suite = load_suite(args.suite)
    try:
        run = checkpoint_of(args.checkpoints, TiMe.name, suite.name, args.seed)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    algo = TiMe.load(run)
    rng = np.random.default_rng(0)
    readout, rmse = fit_readout(algo, suite, rng)
    report: dict[str, Any] = {"suite": suite.name, "checkpoint": str(run), "read_out_fit_rmse": round(rmse, 3),
                              "tasks": []}
    print(f"read-out fit on the train tasks' offline contexts: RMSE {rmse:.3f}")
    for task in suite.test_tasks:
        batch = suite.load_test_batch(task.index)
        offline = [float(np.r_[embedding(algo, batch, 200, rng), 1.0] @ readout) for _ in range(5)]
        row = {"param": task.param, "offline_context_read_out": round(float(np.mean(offline)), 3),
               "zero_shot": zero_shot_trace(algo, suite, task, readout)}
        report["tasks"].append(row)
        print(f"test {task.param:g}: offline context reads {row['offline_context_read_out']:.3f}; "
              f"zero-shot return {row['zero_shot']['return']:.1f}")
        for w in row["zero_shot"]["windows"]:
            print(f"  steps {w['steps']:>8}: velocity {w['velocity']:.3f}  read-out {w['read_out']:.3f}  "
                  f"|a| {w['mean_abs_action']:.2f}")
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(report, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
