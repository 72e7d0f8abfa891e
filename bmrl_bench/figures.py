"""The paper's figures, re-made on our suites (PNG files, one command each).

- `misidentification`: Figure 2 (left, middle): Batch SAC's critic estimate Q(s0, a0)
  against the discounted return it actually obtains, over training; and its
  trajectories against the train goals.
- `time_figure`: Figure 2 (right): tiMe's trajectory and final position per test goal;
  for MuJoCo suites, Figure 3's comparison: tiMe's return against the behaviour SAC's
  learning curve on each test task (from the dataset metadata).
Rolling policies out here is diagnosis only; nothing is learned from it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bmrl_bench.algorithms import ProbedFit, get_algorithm, load_algorithm, resolve_config
from bmrl_bench.builder import ensure_built
from bmrl_bench.data import Suite, load_suite, read_episodes
from bmrl_bench.errors import BmrlError
from bmrl_bench.meta_data import meta_train_data, spec_of
from bmrl_bench.protocols import episode_seed


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Write `fig` to `path` as a PNG and free it."""
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def rollout(suite: Suite, agent: Any, param: float, seed: int, gamma: float = 0.99) -> tuple[np.ndarray, float, float]:
    """(positions (T+1, o), undiscounted return, discounted return) of one zero-shot episode."""
    env = suite.family.make(param, max_episode_steps=suite.card.episode_length)
    obs, _ = env.reset(seed=seed)
    agent.reset()
    path, rewards, done = [obs], [], False
    while not done:
        action = np.clip(agent.act(np.asarray(obs, np.float32)), -1, 1).astype(np.float32)
        nxt, r, term, trunc, _ = env.step(action)
        agent.observe(obs, action, float(r), nxt, bool(term))
        path.append(nxt)
        rewards.append(float(r))
        obs, done = nxt, term or trunc
    env.close()
    disc = float(np.sum(np.array(rewards) * gamma ** np.arange(len(rewards))))
    return np.array(path), float(np.sum(rewards)), disc


def _goal_xy(param: float, radius: float = 10.0) -> tuple[float, float]:
    return radius * np.cos(np.deg2rad(param)), radius * np.sin(np.deg2rad(param))


def misidentification(suite_name: str, out_dir: Path, seed: int = 0, probes: int = 20) -> list[Path]:
    """Train Batch SAC on the pooled meta-train data, probing its Q(s0, a0) against its returns."""
    import torch

    ensure_built(suite_name)
    suite = load_suite(suite_name)
    cls = get_algorithm("batch-sac")
    _, config = resolve_config(cls, suite.name, suite.family.name, None, None)
    algo: ProbedFit = cls(config, spec_of(suite), seed)  # Batch SAC's fit takes the probe callback
    steps, q_est, q_true = [], [], []

    def probe(step: int, sac: Any) -> None:
        agent = algo.make_agent()
        env = suite.family.make(suite.train_tasks[0].param)
        s0 = env.reset(seed=0)[0].astype(np.float32)
        env.close()
        a0 = agent.act(s0)
        q = float(sac.q_value(torch.as_tensor(s0)[None, None], torch.as_tensor(a0)[None, None])[0, 0])
        disc = [rollout(suite, agent, t.param, episode_seed(seed, t.index, 0), config.gamma)[2]
                for t in suite.train_tasks]
        steps.append(step)
        q_est.append(q)
        q_true.append(float(np.mean(disc)))

    algo.fit(meta_train_data(suite), callback=probe, callback_every=max(1, config.steps // probes))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    paths = []

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(steps, q_est, label="critic estimate Q(s0, a0)")
    ax.plot(steps, q_true, label="discounted return obtained (mean over train tasks)")
    ax.set_xlabel("gradient updates")
    ax.set_ylabel("value")
    ax.set_title(f"Batch SAC on {suite.name}: MDP mis-identification")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / f"misidentification-q-{suite.name}.png"))

    fig, ax = plt.subplots(figsize=(5, 4))
    agent = algo.make_agent()
    for t in suite.train_tasks:
        path, ret, _ = rollout(suite, agent, t.param, episode_seed(seed, t.index, 0))
        line = ax.plot(path[:, 0], path[:, 1], marker=".", label=f"goal {t.param:g} deg: return {ret:.0f}")
        if suite.family.name == "pointgoal":
            ax.scatter(*_goal_xy(t.param), marker="*", s=200, color=line[0].get_color())
    ax.set_aspect("equal")
    ax.set_title(f"Batch SAC trajectories on {suite.name}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / f"misidentification-trajectories-{suite.name}.png"))
    (out_dir / f"misidentification-{suite.name}.json").write_text(
        json.dumps({"steps": steps, "q_estimate": q_est, "discounted_return": q_true}, indent=1))
    return paths


def time_figure(suite_name: str, out_dir: Path, seed: int = 0, config_name: str | None = None,
                checkpoint: Path | None = None) -> list[Path]:
    """Plot what tiMe does on each test task: the one saved at `checkpoint` (by `eval --checkpoints`), else one
    trained now."""
    ensure_built(suite_name)
    suite = load_suite(suite_name)
    if checkpoint is not None:
        algo = load_algorithm(checkpoint)
        if algo.name != "time":
            raise BmrlError(f"{checkpoint} holds a {algo.name} checkpoint, not tiMe; "
                            "pass one saved by `eval --algo time --checkpoints DIR`")
    else:
        cls = get_algorithm("time")
        _, config = resolve_config(cls, suite.name, suite.family.name, config_name, None)
        algo = cls(config, spec_of(suite), seed)
        algo.fit(meta_train_data(suite))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    agent = algo.make_agent()
    # Constrained layout with the legend below the axes: it never covers the data, and the title is never cut.
    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    if suite.family.name == "pointgoal":
        for t in suite.test_tasks:
            path, ret, _ = rollout(suite, agent, t.param, episode_seed(seed, t.index, 0))
            line = ax.plot(path[:, 0], path[:, 1], alpha=0.6, label=f"goal {t.param:g} deg: return {ret:.0f}")
            color = line[0].get_color()
            ax.scatter(*_goal_xy(t.param), marker="*", s=250, color=color)
            ax.scatter(path[-1, 0], path[-1, 1], marker="o", s=60, facecolors="none", edgecolors=color)
        ax.set_aspect("equal", adjustable="datalim")  # widen the limits, not shrink the box: one layout pass
        ax.set_title(f"tiMe on {suite.name}\ntest goals (stars) and final positions (circles)", fontsize=10)
        legend_cols = 2
    else:
        for t in suite.test_tasks:
            # The SAC's episodes as stored, in order: Hopper's end early when it falls, so the steps are
            # the episodes' own lengths, not the time limit.
            episodes = read_episodes(t.dataset_id, suite.root)
            curve, steps = episodes.episode_returns(), np.cumsum(episodes.lengths)
            line = ax.plot(steps, curve, alpha=0.7, label=f"SAC v={t.param:g}")
            ret = np.mean([rollout(suite, agent, t.param, episode_seed(seed, t.index, e))[1] for e in range(3)])
            ax.axhline(ret, linestyle="--", color=line[0].get_color(), label=f"tiMe v={t.param:g}")
        ax.set_xlabel("SAC environment steps on the test task")
        ax.set_ylabel("episode return")
        ax.set_title(f"tiMe zero-shot (dashed) vs SAC from scratch (solid)\non {suite.name}", fontsize=10)
        legend_cols = len(suite.test_tasks)  # one column per task: its SAC curve above tiMe's line
    fig.legend(loc="outside lower center", ncols=legend_cols, fontsize=7)
    return [_save(fig, out_dir / f"time-{suite.name}.png")]
