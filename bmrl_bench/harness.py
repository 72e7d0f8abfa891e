"""The one evaluation harness: fit on meta-train data only, score on unseen test tasks.

`evaluate()` is what `bmrl-bench eval` calls. For each seed (a run) it builds the
algorithm, fits it on the suite's meta-train batches (never a test dataset, never an
environment), then runs the protocol on every test task and keeps every episode's
return. The results file records enough to recompute every number.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bmrl_bench import __version__
from bmrl_bench.algorithms import EnvSpec, LogFn, MetaTrainData, config_to_dict, get_algorithm, resolve_config
from bmrl_bench.data import Suite, load_suite
from bmrl_bench.protocols import DEFAULT_PROTOCOL, episode_seed, get_protocol

ProgressFn = Callable[[str, int, int, str], None]  # (phase, done, total, message)
DEFAULT_SUITE = "pointgoal-3"
DEFAULT_SEEDS = (0, 1, 2)


@dataclass
class EvalRun:
    """What one `evaluate` call produced."""

    results: dict[str, Any]  # validated against bmrl_bench.results.ResultsFile when written
    path: Path | None
    wall_time_s: dict[str, float] = field(default_factory=dict)


def spec_of(suite: Suite) -> EnvSpec:
    return EnvSpec(
        family=suite.family.name,
        obs_dim=int(suite.train.observations.shape[1]),
        act_dim=int(suite.train.actions.shape[1]),
        episode_length=suite.card.episode_length,
    )


def meta_train_data(suite: Suite) -> MetaTrainData:
    return MetaTrainData(spec=spec_of(suite), batch=suite.train, num_tasks=len(suite.train_tasks), suite=suite.name)


def git_commit() -> tuple[str | None, bool]:
    """(commit, dirty) of the source tree this package runs from, if it is a git checkout."""
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None, False
        status = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=5)
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


def hardware(device: str) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count() or 1,
        "device": device if device == "cpu" else f"{device} ({torch.cuda.get_device_name(0)})",
    }


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(
    algorithm: str,
    suite_name: str = DEFAULT_SUITE,
    protocol_name: str = DEFAULT_PROTOCOL,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    episodes: int | None = None,
    config_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    out_dir: Path | None = Path("results"),
    device: str = "cpu",
    progress: ProgressFn | None = None,
    checkpoint_dir: Path | None = None,
) -> EvalRun:
    """Fit `algorithm` on the meta-train tasks of `suite_name` once per seed; score its test tasks."""
    from bmrl_bench.build import build_suite, missing_tasks
    from bmrl_bench.data import datasets_root
    from bmrl_bench.results import parse_results, write_results
    from bmrl_bench.suites import get_card

    say: ProgressFn = progress or (lambda *a: None)
    cls = get_algorithm(algorithm)
    protocol = get_protocol(protocol_name)
    card = get_card(suite_name)
    wall: dict[str, float] = {}

    t0 = time.perf_counter()
    if missing_tasks(card, datasets_root()):
        build_suite(suite_name, progress=say)
        wall["build"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    suite = load_suite(suite_name)
    wall["load"] = time.perf_counter() - t0
    cfg_name, config = resolve_config(cls, suite.name, suite.family.name, config_name, overrides)
    spec = spec_of(suite)
    data = meta_train_data(suite)
    n_episodes = episodes or card.eval_episodes

    returns: list[dict[str, Any]] = []
    wall["fit"], wall["evaluate"] = 0.0, 0.0
    for seed in seeds:
        seed_everything(seed)
        algo = cls(config, spec, seed, device)
        if getattr(algo, "privileged", False):
            algo.bind_suite(suite)  # references only: the oracle loads the experts it replays
        t0 = time.perf_counter()

        def log(phase: str, step: int, total: int, metrics: dict[str, float], seed: int = seed) -> None:
            shown = " ".join(f"{k} {v:.3g}" for k, v in list(metrics.items())[:4])
            say(f"seed {seed}: {phase}", step, total, shown)

        algo.fit(data, log)
        wall["fit"] += time.perf_counter() - t0
        if checkpoint_dir is not None:
            algo.save(Path(checkpoint_dir) / f"{algorithm}-{suite.name}-seed{seed}")

        t0 = time.perf_counter()
        rng = np.random.default_rng(episode_seed(seed, 99, 999))
        for n, task in enumerate(suite.test_tasks):
            agent = algo.make_agent()
            if getattr(algo, "privileged", False):
                agent.set_task(task.index, task.param)
            env = suite.family.make(task.param, max_episode_steps=card.episode_length)
            task_returns = protocol.run_task(
                agent, env, n_episodes,
                seed_of=lambda e, s=seed, i=task.index: episode_seed(s, i, e),
                test_batch=lambda i=task.index: suite.load_test_batch(i),
                rng=rng,
            )
            env.close()
            returns.append({"seed": seed, "task_index": task.index, "episode_returns": [float(r) for r in task_returns]})
            say(f"seed {seed}: evaluate", n + 1, len(suite.test_tasks), f"task {task.index:02d} return {np.mean(task_returns):.1f}")
        wall["evaluate"] += time.perf_counter() - t0

    commit, dirty = git_commit()
    results = {
        "schema_version": 1,
        "algorithm": {"name": algorithm, "config_name": cfg_name, "config": config_to_dict(config)},
        "suite": {
            "name": suite.name,
            "version": card.version,
            "datasets": [
                {"task_index": t.index, "dataset_id": t.dataset_id, "split": t.split, "param": t.param, "checksum": t.checksum}
                for t in suite.tasks
            ],
        },
        "protocol": {"name": protocol.name, "version": protocol.version, "constants": dict(protocol.constants)},
        "seeds": list(seeds),
        "episodes_per_task": n_episodes,
        "returns": returns,
        "code": {"package_version": __version__, "git_commit": commit, "dirty": dirty},
        "hardware": hardware(device),
        "wall_time_s": {k: round(v, 3) for k, v in wall.items()},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    model = parse_results(results, "eval")
    path = None
    if out_dir is not None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(out_dir) / f"{algorithm}-{suite.name}-{protocol.name}-{stamp}.json"
        write_results(model, path)
    return EvalRun(results=results, path=path, wall_time_s=wall)


def per_task_table(results: dict[str, Any], suite: Suite) -> list[dict[str, Any]]:
    """Per test task: parameter, mean raw return, mean normalized score (over seeds x episodes)."""
    from bmrl_bench.metrics import normalize

    rows = []
    for task in suite.test_tasks:
        rets = np.array([r["episode_returns"] for r in results["returns"] if r["task_index"] == task.index])
        rows.append({
            "task": task.index,
            "param": task.param,
            "return": float(rets.mean()),
            "normalized": float(normalize(rets.mean(), task.ref_min, task.ref_max)),
        })
    return rows
