"""The one evaluation harness: fit on meta-train data only, score on unseen test tasks.

`evaluate()` is what `bmrl-bench eval` calls. For each seed (a run) it builds the
algorithm, fits it on the suite's meta-train batches (never a test dataset, never an
environment), then runs the protocol on every test task and keeps every episode's
return. The results file records enough to recompute every number.

Each seed (fit + score) is one unit of work for an executor (`bmrl_bench.executor`):
inline by default, or spread over local processes or a Ray cluster. A unit seeds
everything itself and gets the suite's data as one shared input (one copy per node
on Ray), so a seed's returns do not depend on where it ran.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bmrl_bench.algorithms import (
    EnvSpec,
    MetaTrainData,
    Privileged,
    config_to_dict,
    get_algorithm,
    resolve_config,
)
from bmrl_bench.builder import ensure_built
from bmrl_bench.data import Batch, Suite, load_suite
from bmrl_bench.errors import CheckpointError
from bmrl_bench.executor import Executor, LocalExecutor, ProgressFn, Resources, report
from bmrl_bench.meta_data import meta_train_data, spec_of  # noqa: F401 - re-exported: callers imported them from here
from bmrl_bench.protocols import DEFAULT_PROTOCOL, EvalProtocol, episode_seed, get_protocol
from bmrl_bench.runtime import torch_threads
from bmrl_bench.tiers import DEFAULT_TIER
from bmrl_bench.unit_progress import phase_progress
from bmrl_bench.version import __version__

DEFAULT_SUITE = "pointgoal-3"
DEFAULT_SEEDS = (0, 1, 2)


@dataclass
class EvalRun:
    """What one `evaluate` call produced."""

    results: dict[str, Any]  # validated against bmrl_bench.results.ResultsFile when written
    path: Path | None
    wall_time_s: dict[str, float] = field(default_factory=dict)
    per_task: list[dict[str, Any]] = field(default_factory=list)  # `per_task_table`: one row per test task
    aggregates: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # metrics.aggregate of the scores


def git_commit() -> tuple[str | None, bool]:
    """(commit, dirty) of the source tree this package runs from, if it is a git checkout."""
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
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


@dataclass
class RunContext:
    """What every seed's unit shares (put once in Ray's object store, passed by reference)."""

    algorithm: str
    cls: type
    config: Any
    spec: EnvSpec
    suite: Suite
    data: MetaTrainData
    protocol: EvalProtocol
    episodes: int
    device: str
    checkpoint_dir: Path | None
    ship_checkpoint: bool  # remote units send checkpoint files back instead of writing them where they ran
    test_batches: dict[int, Batch] | None = None  # preloaded for remote units when the protocol reads them
    threads: int = 1  # torch threads of a unit wherever it runs, inline too (`runtime.torch_threads`)


@dataclass
class SeedResult:
    seed: int
    returns: list[dict[str, Any]]
    fit_s: float
    evaluate_s: float
    checkpoint: dict[str, bytes] | None = None  # relative path -> bytes
    phase_s: dict[str, float] = field(default_factory=dict)  # fit's phases as the algorithm names them in its log


def run_seed(seed: int, ctx: RunContext) -> SeedResult:
    """One run: fit on the meta-train data, then score every test task. The same code under every executor,
    on `ctx.threads` torch threads."""
    with torch_threads(ctx.threads):
        return _run_seed(seed, ctx)


def _run_seed(seed: int, ctx: RunContext) -> SeedResult:
    suite = ctx.suite
    seed_everything(seed)
    algo = ctx.cls(ctx.config, ctx.spec, seed, ctx.device)
    if isinstance(algo, Privileged):
        algo.bind_suite(suite)  # references only: the oracle loads the experts it replays
    t0 = time.perf_counter()
    phase_s: dict[str, float] = {}
    last_log = t0

    def log(phase: str, step: int, total: int, metrics: dict[str, float]) -> None:
        nonlocal last_log
        shown = " ".join(f"{k} {v:.3g}" for k, v in list(metrics.items())[:4])
        report(step, total, shown, phase=phase)
        # Time since the previous log line counts to this line's phase.
        now = time.perf_counter()
        phase_s[phase] = phase_s.get(phase, 0.0) + now - last_log
        last_log = now

    algo.fit(ctx.data, log)
    fit_s = time.perf_counter() - t0
    checkpoint = None
    if ctx.checkpoint_dir is not None:
        name = checkpoint_name(ctx.algorithm, suite.name, seed)
        if ctx.ship_checkpoint:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                algo.save(Path(tmp) / name)
                checkpoint = {
                    str(f.relative_to(tmp)): f.read_bytes() for f in sorted(Path(tmp).rglob("*")) if f.is_file()
                }
        else:
            algo.save(Path(ctx.checkpoint_dir) / name)

    t0 = time.perf_counter()
    returns = score_seed(algo, seed, ctx)
    return SeedResult(seed, returns, fit_s, time.perf_counter() - t0, checkpoint, phase_s)


def _write_checkpoint(files: dict[str, bytes], root: Path) -> None:
    from bmrl_bench.fsutil import atomic_write_bytes

    for rel, data in files.items():
        atomic_write_bytes(root / rel, data)


def evaluate(
    algorithm: str,
    suite_name: str = DEFAULT_SUITE,
    *,
    protocol_name: str = DEFAULT_PROTOCOL,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    episodes: int | None = None,
    config_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    out_dir: Path | None = Path("results"),
    device: str = "cpu",
    progress: ProgressFn | None = None,
    checkpoint_dir: Path | None = None,
    executor: Executor | None = None,
    unit_cpus: int = 1,
    tier: str = DEFAULT_TIER,
) -> EvalRun:
    """Fit `algorithm` on the meta-train tasks of `suite_name` once per seed; score its test tasks.

    `tier`: the data tier fit sees (and an offline-context protocol reads); the replay tier is built
    when missing, another tier must have been built (`bmrl-bench datasets build SUITE --tier TIER`).

    Seeds run as units on `executor` (default: one after another in this process);
    `unit_cpus` is what each seed's unit reserves and its torch threads, in this process too (one by
    default: a second thread in one process is slower than a second process, `runtime.torch_threads`).
    """
    from bmrl_bench.metrics import aggregate
    from bmrl_bench.results import normalized_scores, parse_results, write_results
    from bmrl_bench.suites import get_card

    say: ProgressFn = progress or (lambda *a: None)
    cls = get_algorithm(algorithm)
    protocol = get_protocol(protocol_name)
    card = get_card(suite_name)
    wall: dict[str, float] = {}

    commit, dirty = git_commit()  # the code that runs is the code at the start, whatever changes meanwhile
    t0 = time.perf_counter()
    executor = executor or LocalExecutor(1)
    if ensure_built(card, executor=executor, progress=say) is not None:
        wall["build"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    suite = load_suite(suite_name, tier)
    wall["load"] = time.perf_counter() - t0
    cfg_name, config = resolve_config(cls, suite.name, suite.family.name, config_name, overrides)
    spec = spec_of(suite)
    data = meta_train_data(suite)
    n_episodes = episodes or card.eval_episodes

    ctx = RunContext(algorithm, cls, config, spec, suite, data, protocol, n_episodes, device, checkpoint_dir,
                     ship_checkpoint=checkpoint_dir is not None and not executor.inline, threads=max(1, unit_cpus))
    if not executor.inline and protocol.name == "offline-context":
        # Remote units may run where the datasets are not: the context data travels with them.
        ctx.test_batches = {t.index: suite.load_test_batch(t.index) for t in suite.test_tasks}
    t0 = time.perf_counter()
    runs: list[SeedResult] = executor.map(
        run_seed, list(seeds), name=f"eval {algorithm} on {suite.name}", labels=[f"seed {s}" for s in seeds],
        resources=Resources(num_cpus=max(1, unit_cpus), num_gpus=1.0 if device.startswith("cuda") else 0.0),
        shared=ctx, progress=executor.progress or phase_progress(say),
    )
    if not executor.inline:
        wall["runs"] = time.perf_counter() - t0  # wall time of all seeds together; fit/evaluate sum over seeds
    returns: list[dict[str, Any]] = []
    wall["fit"], wall["evaluate"] = 0.0, 0.0
    for run in runs:
        returns.extend(run.returns)
        wall["fit"] += run.fit_s
        wall["evaluate"] += run.evaluate_s
        for phase, seconds in run.phase_s.items():
            wall[f"fit: {phase}"] = wall.get(f"fit: {phase}", 0.0) + seconds
        if run.checkpoint is not None and checkpoint_dir is not None:
            _write_checkpoint(run.checkpoint, Path(checkpoint_dir))

    results = {
        "schema_version": 1,
        "algorithm": {"name": algorithm, "config_name": cfg_name, "config": config_to_dict(config)},
        "suite": {
            "name": suite.name,
            "version": card.version,
            "datasets": [
                {
                    "task_index": t.index, "dataset_id": t.dataset_id, "split": t.split, "param": t.param,
                    "checksum": t.checksum,
                }
                for t in suite.tasks
            ],
            # A file of the replay tier names none, so it reads (and hashes) as before tiers existed.
            **({} if suite.tier == DEFAULT_TIER else {"tier": suite.tier}),
        },
        "protocol": {"name": protocol.name, "version": protocol.version, "constants": dict(protocol.constants)},
        "seeds": list(seeds),
        "episodes_per_task": n_episodes,
        "returns": returns,
        "code": {"package_version": __version__, "git_commit": commit, "dirty": dirty},
        "hardware": hardware(device),
        "wall_time_s": {k: round(v, 3) for k, v in wall.items()},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    model = parse_results(results, "eval")
    path = None
    if out_dir is not None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        tier_part = "" if suite.tier == DEFAULT_TIER else f"-{suite.tier}"
        path = Path(out_dir) / f"{algorithm}-{suite.name}{tier_part}-{protocol.name}-{stamp}.json"
        write_results(model, path)
    scores = normalized_scores(model, {t.index: (t.ref_min, t.ref_max) for t in suite.test_tasks})
    return EvalRun(results=results, path=path, wall_time_s=wall, per_task=per_task_table(results, suite),
                   aggregates=aggregate(scores))


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


# ---------------------------------------------------------------------------- scoring and re-evaluation


def checkpoint_name(algorithm: str, suite: str, seed: int) -> str:
    """The folder `evaluate(checkpoint_dir=DIR)` saves a seed's algorithm in: DIR/<this>."""
    return f"{algorithm}-{suite}-seed{seed}"


def checkpoint_of(checkpoints_dir: Path, algorithm: str, suite: str, seed: int) -> Path:
    """A seed's folder under `eval --checkpoints checkpoints_dir`; when missing, `CheckpointError` says how
    to make it."""
    path = Path(checkpoints_dir) / checkpoint_name(algorithm, suite, seed)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint {path}; run `bmrl-bench eval --algo {algorithm} --suite {suite} "
                              f"--seeds {seed} --checkpoints {checkpoints_dir}` first")
    return path


def score_seed(algo: Any, seed: int, ctx: RunContext) -> list[dict[str, Any]]:
    """Run the protocol on every test task with a fitted (or loaded) algorithm: one run's returns.

    The episode seeds and the protocol's sampler depend on the run seed only, so the
    same weights give the same episodes wherever and whenever they are scored.
    """
    suite = ctx.suite
    returns: list[dict[str, Any]] = []
    rng = np.random.default_rng(episode_seed(seed, 99, 999))
    for n, task in enumerate(suite.test_tasks):
        agent = algo.make_agent()
        if isinstance(algo, Privileged):
            agent.set_task(task.index, task.param)
        env = suite.family.make(task.param, max_episode_steps=suite.card.episode_length)
        task_returns = ctx.protocol.run_task(
            agent, env, ctx.episodes,
            seed_of=lambda e, i=task.index: episode_seed(seed, i, e),
            test_batch=lambda i=task.index: (ctx.test_batches[i] if ctx.test_batches is not None
                                             else suite.load_test_batch(i)),
            rng=rng,
        )
        env.close()
        returns.append({"seed": seed, "task_index": task.index, "episode_returns": [float(r) for r in task_returns]})
        report(n + 1, len(suite.test_tasks), f"task {task.index:02d} return {np.mean(task_returns):.1f}",
               phase="evaluate")
    return returns


@dataclass
class Reevaluation:
    """What `reevaluate` produced: the board's own returns for every seed of a results file."""

    returns: list[dict[str, Any]]  # {"seed", "task_index", "episode_returns"}, seeds in the file's order
    wall_time_s: float


def _rescore_seed(item: tuple[int, dict[str, bytes]], ctx: RunContext) -> list[dict[str, Any]]:
    """One unit of `reevaluate`: load a seed's checkpoint (shipped as bytes: any executor can run it), score it."""
    import tempfile

    from bmrl_bench.algorithms import load_algorithm

    seed, files = item
    seed_everything(seed)  # as run_seed does before building the algorithm
    with tempfile.TemporaryDirectory() as tmp:
        for rel, data in files.items():
            (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / rel).write_bytes(data)
        algo = load_algorithm(Path(tmp), device=ctx.device)
    if isinstance(algo, Privileged):
        algo.bind_suite(ctx.suite)
    with torch_threads(ctx.threads):
        return score_seed(algo, seed, ctx)


def reevaluate(
    results: Any,
    checkpoints_dir: Path,
    executor: Executor | None = None,
    progress: ProgressFn | None = None,
    device: str = "cpu",
    unit_cpus: int = 1,
) -> Reevaluation:
    """Score each seed's saved algorithm (`checkpoints_dir/<checkpoint_name>`, as `evaluate` saved it)
    under the protocol, episode count and episode seeds of `results` (a `ResultsFile`).

    The same scoring code as `evaluate`, one unit per seed on `executor`; it does not fit
    anything. The suite must be built here (the protocol and references may read it).
    Checking that the checkpoints belong to the file is the caller's job.
    """
    say: ProgressFn = progress or (lambda *a: None)
    executor = executor or LocalExecutor(1)
    suite = load_suite(results.suite.name, results.suite.tier or DEFAULT_TIER)
    protocol = get_protocol(results.protocol.name)
    seeds = list(results.seeds)
    items = []
    for seed in seeds:
        folder = Path(checkpoints_dir) / checkpoint_name(results.algorithm.name, suite.name, seed)
        files = {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}
        items.append((seed, files))
    # Nothing is built or fitted here (no class, no config): each unit loads its checkpoint.
    ctx = RunContext(results.algorithm.name, object, None, spec_of(suite), suite, meta_train_data(suite), protocol,
                     results.episodes_per_task, device, None, ship_checkpoint=False, threads=max(1, unit_cpus))
    if not executor.inline and protocol.name == "offline-context":
        ctx.test_batches = {t.index: suite.load_test_batch(t.index) for t in suite.test_tasks}
    t0 = time.perf_counter()
    runs: list[list[dict[str, Any]]] = executor.map(
        _rescore_seed, items, name=f"re-evaluate {results.algorithm.name} on {suite.name}",
        labels=[f"seed {s}" for s in seeds],
        resources=Resources(num_cpus=max(1, unit_cpus), num_gpus=1.0 if device.startswith("cuda") else 0.0),
        shared=ctx, progress=executor.progress or phase_progress(say),
    )
    return Reevaluation([r for run in runs for r in run], time.perf_counter() - t0)
