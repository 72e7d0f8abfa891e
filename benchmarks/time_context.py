"""Re-score saved tiMe runs with other test-time contexts (how many of the episode's latest
transitions the set encoder f pools), without training again.

    bmrl-bench eval --algo time --suite pointgoal-semicircle --seeds 0-4 --checkpoints ckpt/
    python benchmarks/time_context.py --suite pointgoal-semicircle --checkpoints ckpt/ --contexts 1,2,4,0

Same episodes and seeds as the harness (the card's episodes per task). Prints, per test
context, the normalized IQM over runs x tasks, the mean per task and, on PointGoal, the angle
of the agent's final position. `--protocol offline-context` scores the same runs with the
context taken from the test task's own offline data instead (200 transitions, as that
protocol does; the episode itself is not observed): identification from diverse data,
against identification from the agent's own path.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from baselines.time_distill import TiMe
from bmrl_bench.data import Batch, Suite, load_suite
from bmrl_bench.fsutil import atomic_write_text
from bmrl_bench.metrics import iqm, normalize
from bmrl_bench.protocols import PROTOCOLS, episode_seed


def episode(
    suite: Suite, agent: Any, param: float, seed: int, context: Batch | None, rng: np.random.Generator
) -> tuple[float, np.ndarray]:
    """(return, final observation) of one scored episode; `context` given: observed first, the episode not."""
    agent.reset()
    if context is not None:
        for i in rng.integers(0, len(context), size=int(PROTOCOLS["offline-context"].constants["context_transitions"])):
            agent.observe(context.observations[i], context.actions[i], float(context.rewards[i]),
                          context.next_observations[i], bool(context.terminals[i]))
    env = suite.family.make(param, max_episode_steps=suite.card.episode_length)
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action = np.clip(agent.act(np.asarray(obs, np.float32)), -1, 1).astype(np.float32)
        nxt, r, term, trunc, _ = env.step(action)
        if context is None:
            agent.observe(obs, action, float(r), nxt, bool(term))
        total += float(r)
        obs, done = nxt, term or trunc
    env.close()
    return total, np.asarray(obs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", required=True)
    ap.add_argument("--checkpoints", type=Path, required=True, help="the --checkpoints folder of `eval --algo time`")
    ap.add_argument("--contexts", default="1,0", help="comma-separated test_context values (0: the whole episode)")
    ap.add_argument("--protocol", default="zero-shot", choices=["zero-shot", "offline-context"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    suite = load_suite(args.suite)
    runs = sorted(args.checkpoints.glob(f"time-{suite.name}-seed*"))
    if not runs:
        raise SystemExit(f"error: no time-{suite.name}-seed* checkpoints in {args.checkpoints}; "
                         "run eval with --checkpoints first")
    pointgoal = suite.family.name == "pointgoal"
    report: dict[str, Any] = {"suite": suite.name, "protocol": args.protocol, "runs": [r.name for r in runs],
                              "contexts": {}}
    offline = args.protocol == "offline-context"
    test_data = {t.index: suite.load_test_batch(t.index) for t in suite.test_tasks} if offline else {}
    for n in (int(c) for c in args.contexts.split(",")):
        scores = np.zeros((len(runs), len(suite.test_tasks)))
        angles: dict[float, list[float]] = {t.param: [] for t in suite.test_tasks}
        for i, run in enumerate(runs):
            algo = TiMe.load(run)
            algo.config = dataclasses.replace(algo.config, test_context=n)
            for j, task in enumerate(suite.test_tasks):
                agent = algo.make_agent()
                rng = np.random.default_rng(episode_seed(algo.seed, task.index, 999))
                rets = []
                for e in range(suite.card.eval_episodes):
                    seed = episode_seed(algo.seed, task.index, e)
                    ret, last = episode(suite, agent, task.param, seed, test_data.get(task.index), rng)
                    rets.append(ret)
                    if pointgoal:
                        angles[task.param].append(float(np.degrees(np.arctan2(last[1], last[0]))))
                scores[i, j] = float(normalize(np.array(rets), task.ref_min, task.ref_max).mean())
        row: dict[str, Any] = {"iqm": round(iqm(scores), 3), "per_task": scores.mean(0).round(3).tolist()}
        if pointgoal:
            row["final_angle_median"] = {str(p): round(float(np.median(a)), 1) for p, a in angles.items()}
            row["final_angle_quartiles"] = {str(p): np.percentile(a, [25, 75]).round(1).tolist()
                                            for p, a in angles.items()}
        report["contexts"][str(n)] = row
        print(f"test_context {n}: {json.dumps(row)}", flush=True)
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
