"""Distillation fidelity of a trained tiMe: does it act as its phase-1 teachers do, or stand still?

    bmrl-bench eval --algo time --suite halfcheetah-vel-lite --seeds 0 --checkpoints ckpt/
    python benchmarks/time_fidelity.py --suite halfcheetah-vel-lite --checkpoints ckpt/ --seed 0 --episodes 3 \\
        --out docs/figures/

Loads the seed's checkpoint (`ckpt/time-<suite>-seed<seed>`) and its teachers from the phase-1
cache (`TiMe.phase1_cache_path`: BMRL_BENCH_CACHE as at training; `--teachers FILE` names the
file instead). On every task it plays, for `--episodes` episodes each:
- teacher: on a train task its own phase-1 learner, on a test task the learner of the nearest
  train task; told its task, so nothing is identified. BCQ acts as BCQ does (best of its
  candidates by Q1); a SAC teacher with its deterministic actor.
- tiMe offline context: the offline-context protocol, the context drawn from the task's own
  data (a train task's meta-train data; a test task's offline data).
- tiMe zero-shot: the harness's protocol (context: the episode so far).
- standing still: action 0 every step.
Episode seeds are the harness's (`episode_seed(seed, task index, episode)`), so tiMe zero-shot on
a test task plays the harness's first `--episodes` episodes. Beside each return: the normalized
score (the suite's references), the mean |a| over steps, and the tracking error: mean over steps
of |v_x - v_target| (HalfCheetah, Hopper) or the final distance to the goal (PointGoal).

Q against Monte Carlo, per train task: `--q-states` states s drawn from the task's data with
their data actions a. Q is the teacher's critic at (s, a) (BCQ's Q1; SAC's min(Q1, Q2)), averaged.
The Monte-Carlo value of the same pairs: the env is put in state s (MuJoCo: qpos = (0, obs[:nq-1]),
qvel = obs[nq-1:], exact as the reward ignores x; Hopper's observed qvel is clipped at 10;
PointGoal: the position), plays a, then the teacher's own policy, and sums gamma^t r_t over
`--mc-horizon` steps (default: the first H with gamma^H <= 0.01, 459 at gamma 0.99: the
critics bootstrap through time limits, so they estimate the untruncated value; the cut tail is
at most 1% of its scale), stopping early only at a true termination (Hopper falling). One
rollout per pair, averaged over the pairs. tiMe's Q_S at the same pairs, with the embedding of
an offline context from the task's data, stands beside them.

Prints the tables (rich) and writes `time-fidelity-<suite>.json` and `.png` into `--out`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from baselines.time_distill import TiMe
from bmrl_bench.algorithms import Agent, ContextFreeAgent
from bmrl_bench.data import Batch, Suite, TaskInfo, load_suite, read_episodes
from bmrl_bench.errors import CheckpointError
from bmrl_bench.families import PointGoalEnv
from bmrl_bench.fsutil import atomic_write_bytes, atomic_write_text
from bmrl_bench.harness import checkpoint_of, meta_train_data
from bmrl_bench.metrics import normalize
from bmrl_bench.protocols import PROTOCOLS, episode_seed, run_episode

POLICIES = ("teacher", "time_offline_context", "time_zero_shot", "standing_still")
LABELS = {"teacher": "teacher", "time_offline_context": "tiMe offline ctx", "time_zero_shot": "tiMe zero-shot",
          "standing_still": "standing still"}
COLORS = {"teacher": "tab:green", "time_offline_context": "tab:blue", "time_zero_shot": "tab:orange",
          "standing_still": "tab:gray"}


# ----------------------------------------------------------------------------- agents and envs
class StandStill(ContextFreeAgent):
    def __init__(self, act_dim: int) -> None:
        self.action = np.zeros(act_dim, dtype=np.float32)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.action


class Teacher(ContextFreeAgent):
    """Member `member` of the batched phase-1 learners acting alone (every member sees the state; one answers)."""

    def __init__(self, learner: Any, member: int, sac: bool) -> None:
        self.learner, self.member, self.sac = learner, member, sac

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = np.tile(np.asarray(obs, np.float32), (self.learner.num_members, 1))
        return (self.learner.act(x, deterministic=True) if self.sac else self.learner.act(x))[self.member]


class FirstAction(ContextFreeAgent):
    """Plays `action` once, then `then`'s policy: the return of that episode samples Q^then(s0, action)."""

    def __init__(self, action: np.ndarray, then: Agent) -> None:
        self.first: np.ndarray | None = action
        self.then = then

    def act(self, obs: np.ndarray) -> np.ndarray:
        action, self.first = self.first, None
        return self.then.act(obs) if action is None else action


class Recorder(gym.Wrapper):
    """Per episode, the mean |a| over steps and the tracking error (see the module docstring)."""

    def __init__(self, env: gym.Env, pointgoal: bool) -> None:
        super().__init__(env)
        self.pointgoal = pointgoal
        self.abs_action: list[float] = []
        self.tracking: list[float] = []
        self._a: list[float] = []
        self._err: list[float] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._close_episode()
        return self.env.reset(**kwargs)

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        out = self.env.step(action)
        info = out[4]
        self._a.append(float(np.abs(action).mean()))
        target = self.env.unwrapped.task_param
        self._err.append(info["distance"] if self.pointgoal else abs(info["x_velocity"] - target))
        return out

    def _close_episode(self) -> None:
        if self._a:
            self.abs_action.append(float(np.mean(self._a)))
            self.tracking.append(self._err[-1] if self.pointgoal else float(np.mean(self._err)))
        self._a, self._err = [], []

    def summary(self) -> tuple[float, float]:
        self._close_episode()
        return float(np.mean(self.abs_action)), float(np.mean(self.tracking))


class FromState(gym.Wrapper):
    """Every episode starts in the state that `obs` shows, and rewards come discounted: r_t * gamma^t."""

    def __init__(self, env: gym.Env, obs: np.ndarray, gamma: float) -> None:
        super().__init__(env)
        self.obs, self.gamma, self.t = np.asarray(obs, np.float32), gamma, 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        _, info = self.env.reset(**kwargs)
        inner = self.env.unwrapped
        if isinstance(inner, PointGoalEnv):
            inner._pos = self.obs.copy()
        else:  # MuJoCo: the observation is qpos without x, then qvel; x changes neither dynamics nor reward
            nq = inner.model.nq
            inner.set_state(np.concatenate([[0.0], self.obs[: nq - 1]]), self.obs[nq - 1:])
        self.t = 0
        return self.obs.copy(), info

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, r, term, trunc, info = self.env.step(action)
        r, self.t = float(r) * self.gamma**self.t, self.t + 1
        return obs, r, term, trunc, info


# ----------------------------------------------------------------------------- measurements
def play(suite: Suite, task: TaskInfo, make_agent: Callable[[], Agent], protocol: str, episodes: int, seed: int,
         context: Callable[[], Batch]) -> dict[str, Any]:
    """`episodes` scored episodes of one policy on one task under `protocol`, with what the report sets beside them."""
    env = Recorder(suite.family.make(task.param, max_episode_steps=suite.card.episode_length),
                   pointgoal=suite.family.name == "pointgoal")
    returns = PROTOCOLS[protocol].run_task(
        make_agent(), env, episodes, seed_of=lambda e: episode_seed(seed, task.index, e), test_batch=context,
        rng=np.random.default_rng(episode_seed(seed, task.index, 999)))
    env.close()
    abs_action, tracking = env.summary()
    return {"returns": [round(r, 3) for r in returns], "return": float(np.mean(returns)),
            "normalized": float(normalize(np.mean(returns), task.ref_min, task.ref_max)),
            "mean_abs_action": abs_action, "tracking_error": tracking}


def context_embedding(algo: TiMe, batch: Batch, rng: np.random.Generator) -> torch.Tensor:
    """tiMe's embedding after an offline context from `batch` (as the offline-context protocol draws it)."""
    n = int(PROTOCOLS["offline-context"].constants["context_transitions"])
    return algo.context_embedding(batch, rng.integers(0, len(batch), size=n))


@torch.no_grad()
def q_against_monte_carlo(suite: Suite, task: TaskInfo, algo: TiMe, teacher: Teacher, batch: Batch, states: int,
                          horizon: int, seed: int) -> dict[str, float]:
    """Mean teacher Q, Monte-Carlo value of the teacher's policy and tiMe's Q_S at the same data (s, a)."""
    rng = np.random.default_rng(episode_seed(seed, task.index, 998))
    rows = rng.choice(len(batch), size=min(states, len(batch)), replace=False)
    s, a = batch.observations[rows], batch.actions[rows]
    k = teacher.learner.num_members  # every member sees the pairs; one is read
    q_all = teacher.learner.q_value(torch.as_tensor(s).expand(k, -1, -1), torch.as_tensor(a).expand(k, -1, -1))
    q_teacher = q_all[teacher.member].cpu().numpy()
    emb = context_embedding(algo, batch, rng)
    q_student = algo.nets.q_value(torch.as_tensor(s), torch.as_tensor(a), emb.expand(len(rows), -1)).numpy()
    mc = []
    for i, (s_i, a_i) in enumerate(zip(s, a)):
        env = FromState(suite.family.make(task.param, max_episode_steps=horizon), s_i, algo.config.gamma)
        mc.append(run_episode(env, FirstAction(a_i, teacher), episode_seed(seed, task.index, 500 + i), observe=False))
        env.close()
    return {"states": len(rows), "teacher_q": float(q_teacher.mean()), "teacher_mc_return": float(np.mean(mc)),
            "teacher_mc_stderr": float(np.std(mc) / math.sqrt(len(mc))), "time_q_s": float(q_student.mean())}


def behaviour_data(suite: Suite, task: TaskInfo, batch: Batch) -> dict[str, float]:
    """The task's own offline data: its mean |a| and the normalized mean return of its last 10 episodes."""
    last10 = read_episodes(task.dataset_id, suite.root).episode_returns()[-10:].mean()
    return {"mean_abs_action": float(np.abs(batch.actions).mean()),
            "last_10_episodes_normalized": float(normalize(last10, task.ref_min, task.ref_max))}


def fidelity_report(suite: Suite, algo: TiMe, learner: Any, episodes: int, q_states: int,
                    horizon: int) -> dict[str, Any]:
    """The whole report as a JSON-ready dict (see the module docstring for every number)."""
    seed, sac = algo.seed, algo.config.phase1 == "sac"
    act_dim = int(suite.train.actions.shape[1])
    params = np.array([t.param for t in suite.train_tasks])
    rows = []
    for task in suite.train_tasks + suite.test_tasks:
        train = task.split == "train"
        member = suite.train_tasks.index(task) if train else int(np.abs(params - task.param).argmin())
        batch = suite.train.task(task.index) if train else suite.load_test_batch(task.index)
        teacher = Teacher(learner, member, sac)
        makers: dict[str, tuple[Callable[[], Agent], str]] = {
            "teacher": (lambda t=teacher: t, "zero-shot"),
            "time_offline_context": (algo.make_agent, "offline-context"),
            "time_zero_shot": (algo.make_agent, "zero-shot"),
            "standing_still": (lambda: StandStill(act_dim), "zero-shot"),
        }
        row: dict[str, Any] = {"split": task.split, "index": task.index, "param": task.param,
                               "teacher_member": member, "teacher_param": float(params[member]),
                               "data": behaviour_data(suite, task, batch)}
        row["policies"] = {name: play(suite, task, make, protocol, episodes, seed, lambda b=batch: b)
                           for name, (make, protocol) in makers.items()}
        still = row["policies"]["standing_still"]["return"]
        for name, p in row["policies"].items():
            p["return_minus_standing_still"] = p["return"] - still
            if name.startswith("time"):
                p["within_5pct_of_standing_still"] = bool(abs(p["return"] - still) <= 0.05 * abs(still))
        teacher_score = row["policies"]["teacher"]["normalized"]
        row["time_offline_over_teacher"] = row["policies"]["time_offline_context"]["normalized"] / teacher_score
        if train:
            row["q"] = q_against_monte_carlo(suite, task, algo, teacher, batch, q_states, horizon, seed)
        rows.append(row)
        print(f"{task.split} task {task.index} ({task.param:g}) done", flush=True)
    summary = {split: {name: float(np.mean([r["policies"][name]["normalized"] for r in rows if r["split"] == split]))
                       for name in POLICIES} for split in ("train", "test")}
    pointgoal = suite.family.name == "pointgoal"
    return {"suite": suite.name, "seed": seed, "episodes": episodes, "phase1": algo.config.phase1,
            "gamma": algo.config.gamma, "mc_horizon": horizon,
            "tracking_error": "final distance to the goal" if pointgoal else "mean over steps of |v_x - v_target|",
            "summary_normalized": summary, "tasks": rows}


# ----------------------------------------------------------------------------- output
def print_tables(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"tiMe distillation fidelity: {report['suite']} seed {report['seed']} "
                        f"({report['episodes']} episodes; tracking = {report['tracking_error']})")
    for col in ("task", "policy", "return", "- still", "normalized", "mean |a|", "tracking"):
        table.add_column(col, justify="left" if col in ("task", "policy") else "right")
    for row in report["tasks"]:
        teacher = f"teacher = train {row['teacher_param']:.3g}" if row["split"] == "test" else ""
        for i, name in enumerate(POLICIES):
            p = row["policies"][name]
            label = f"{row['split']} {row['param']:.3g}" if i == 0 else (teacher if i == 1 else "")
            flag = " (still)" if p.get("within_5pct_of_standing_still") else ""
            table.add_row(label, LABELS[name], f"{p['return']:.1f}{flag}", f"{p['return_minus_standing_still']:+.1f}",
                          f"{p['normalized']:.3f}",
                          f"{p['mean_abs_action']:.3f}", f"{p['tracking_error']:.3f}",
                          end_section=i == len(POLICIES) - 1)
    q = Table(title=f"Q at data actions against Monte Carlo (gamma {report['gamma']}, {report['mc_horizon']} steps)")
    for col in ("train task", "states", "teacher Q", "MC return (+-se)", "tiMe Q_S", "data |a|",
                "tiMe offline / teacher score"):
        q.add_column(col, justify="right")
    for row in report["tasks"]:
        if "q" in row:
            v = row["q"]
            q.add_row(f"{row['param']:.3g}", str(v["states"]), f"{v['teacher_q']:.2f}",
                      f"{v['teacher_mc_return']:.2f} +- {v['teacher_mc_stderr']:.2f}", f"{v['time_q_s']:.2f}",
                      f"{row['data']['mean_abs_action']:.3f}", f"{row['time_offline_over_teacher']:.2f}")
    console = Console(width=140)
    console.print(table)
    console.print(q)
    console.print({split: {LABELS[k]: round(v, 3) for k, v in s.items()}
                   for split, s in report["summary_normalized"].items()})


def draw(report: dict[str, Any]) -> bytes:
    """Score, |a| and Q-vs-MC panels as PNG bytes; a collapse shows as tiMe's bars at the standing-still ones."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["tasks"]
    x = np.arange(len(rows))
    names = [f"{'train' if r['split'] == 'train' else 'TEST'}\n{r['param']:.3g}" for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(max(10.0, 0.9 * len(rows) + 4), 11), constrained_layout=True)
    width = 0.8 / len(POLICIES)
    for ax, key, title in ((axes[0], "normalized", "normalized score"), (axes[1], "mean_abs_action", "mean |a|")):
        for j, name in enumerate(POLICIES):
            ax.bar(x + (j - 1.5) * width, [r["policies"][name][key] for r in rows], width, label=LABELS[name],
                   color=COLORS[name])
        ax.set_title(title)
        ax.set_xticks(x, names)
        ax.axhline(0.0, color="black", lw=0.6)
    data_key = {0: "last_10_episodes_normalized", 1: "mean_abs_action"}
    for i, label in ((0, "behaviour data, last 10 episodes"), (1, "behaviour data")):
        axes[i].scatter(x, [r["data"][data_key[i]] for r in rows], marker="_", s=600, color="black", zorder=3,
                        label=label)
        axes[i].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    train = [r for r in rows if "q" in r]
    tx = np.arange(len(train))
    ax = axes[2]
    for j, (key, label, color) in enumerate((("teacher_q", "teacher Q at data (s, a)", "tab:green"),
                                             ("teacher_mc_return", "Monte-Carlo return, teacher's policy", "tab:red"),
                                             ("time_q_s", "tiMe Q_S (offline context)", "tab:blue"))):
        ax.bar(tx + (j - 1) * 0.27, [r["q"][key] for r in train], 0.27, label=label, color=color,
               yerr=[r["q"]["teacher_mc_stderr"] for r in train] if key == "teacher_mc_return" else None)
    ax.set_xticks(tx, [f"train\n{r['param']:.3g}" for r in train])
    ax.set_title(f"Q against Monte Carlo (discounted, gamma {report['gamma']}, {report['mc_horizon']} steps)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"tiMe distillation fidelity: {report['suite']}, seed {report['seed']}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", required=True)
    ap.add_argument("--checkpoints", type=Path, required=True, help="the --checkpoints folder of `eval --algo time`")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=3, help="episodes per task and policy")
    ap.add_argument("--q-states", type=int, default=32, help="data (s, a) pairs per train task for Q against MC")
    ap.add_argument("--mc-horizon", type=int, default=None, help="steps per MC rollout (default: gamma^H <= 0.01)")
    ap.add_argument("--teachers", type=Path, default=None, help="phase-1 weights file (default: the phase-1 cache)")
    ap.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = ap.parse_args()

    torch.set_num_threads(int(os.environ.get("BMRL_BENCH_THREADS", "1")))
    suite = load_suite(args.suite)
    try:
        run = checkpoint_of(args.checkpoints, TiMe.name, suite.name, args.seed)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    algo = TiMe.load(run)
    data = meta_train_data(suite)
    learner = algo.load_phase1(data, args.teachers)
    if learner is None:
        raise SystemExit(f"error: no phase-1 teachers at {args.teachers or algo.phase1_cache_path(data)}; set "
                         "BMRL_BENCH_CACHE as at training (a changed phase-1 learner changes the key) "
                         "or pass --teachers")
    horizon = args.mc_horizon or math.ceil(math.log(0.01) / math.log(algo.config.gamma))
    report = fidelity_report(suite, algo, learner, args.episodes, args.q_states, horizon)
    report["checkpoint"] = str(run)
    print_tables(report)
    stem = args.out / f"time-fidelity-{suite.name}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(report, indent=1))
    atomic_write_bytes(stem.with_suffix(".png"), draw(report))
    print(f"wrote {stem}.json and {stem}.png")


if __name__ == "__main__":
    main()
