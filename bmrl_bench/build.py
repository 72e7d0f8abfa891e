"""Building a suite's Minari datasets from its card, and verifying them.

A build never exposes half a dataset: each dataset is written with Minari into a
hidden staging root (`<root>/.staging/<uuid>`, which `minari list` skips), its
metadata completed and checked there, and only then renamed into place. An
interrupted build leaves only staging folders behind (removed by the next build);
re-running it builds exactly the tasks that are missing or damaged.

The work is split into units that an executor runs (`bmrl_bench.executor`): the
family-wide expert, one unit per behaviour shard (the card's `tasks_per_shard`
tasks trained as one batched SAC) and one unit per task's reference scores. Which
tasks share a shard is fixed by the card, never by the executor, so every executor
writes the same bytes. A finished shard is kept in `<root>/.staging/units/` (written
atomically) until its tasks are published, so an interrupted build resumes from the
units that finished: it re-runs only shards that hold missing tasks and writes only
the missing tasks.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bmrl_bench import __version__
from bmrl_bench.collect import (
    ExpertTraining,
    TaskCollection,
    collect_behaviour,
    evaluate_policy,
    expert_policy,
    random_policy,
    train_expert,
)
from bmrl_bench.data import content_checksum, dataset_dir, datasets_root, read_episodes, read_metadata
from bmrl_bench.errors import BmrlError, DatasetCorruptError, DatasetMissingError
from bmrl_bench.executor import Executor, LocalExecutor, Resources, UnitEvent, UnitProgressFn, report
from bmrl_bench.families import Family, get_family
from bmrl_bench.fsutil import atomic_write_text
from bmrl_bench.suites import SuiteCard, get_card

CODE_PERMALINK = "https://github.com/bmrl-bench/bmrl-bench"
# Reference-score episodes use their own seed range, disjoint from training and evaluation.
REFERENCE_SEED = 50_000_000
ProgressFn = Callable[[str, int, int, str], None]  # (phase, done, total, message)
UNIT_FORMAT = 1  # bump when what a cached unit holds changes
# The data is intact but its reference scores came from another expert recipe: a build
# recomputes them (and rewrites the metadata) without collecting the data again.
STALE_REFERENCES = "stale reference scores: the card's expert recipe changed since this dataset was built; run the build again"


class BuildError(BmrlError):
    pass


@dataclass
class BuildReport:
    suite: str
    built: list[str]
    skipped: list[str]
    seconds: dict[str, float]
    bytes_on_disk: int
    units_run: list[str] = field(default_factory=list)  # labels of the units this call ran


def expert_dir(card: SuiteCard, root: Path) -> Path:
    # Not hidden and without a `data/` folder, so Minari's listing walks past it.
    return root / card.namespace() / f"policies-v{card.version}" / "expert"


def behaviour_policy_path(dataset_id: str, root: Path) -> Path:
    return dataset_dir(dataset_id, root) / "policies" / "behaviour.safetensors"


def dataset_status(card: SuiteCard, index: int, root: Path) -> str:
    """'ok', 'missing', or a one-line description of the damage."""
    dataset_id = card.dataset_id(index)
    try:
        meta = read_metadata(dataset_id, root)
        checksum = content_checksum(read_episodes(dataset_id, root))
    except DatasetMissingError:
        return "missing"
    except DatasetCorruptError as e:
        return str(e)
    if checksum != meta["bmrl_checksum"]:
        return f"checksum mismatch: {dataset_dir(dataset_id, root) / 'data' / 'main_data.hdf5'} was modified"
    if meta.get("bmrl_expert", {}).get("recipe") != card.expert.model_dump():
        return STALE_REFERENCES
    return "ok"


def missing_tasks(card: SuiteCard, root: Path) -> list[int]:
    return [i for i in range(card.num_tasks) if dataset_status(card, i, root) != "ok"]


@contextlib.contextmanager
def _minari_root(path: Path) -> Iterator[None]:
    """Point Minari at `path` for the duration (it reads the variable on every call)."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _json_plain(obj: object) -> object:
    """Minari writes metadata.json before checking it: hand it plain JSON only."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else o.tolist()))


# ---------------------------------------------------------------------------- one task's data


@dataclass
class TaskData:
    """One task's behaviour data as Minari stores it (episodes concatenated) and its final actor.

    Compact arrays, not per-step lists: shard results travel between processes and
    machines and are cached on disk.
    """

    param: float
    lengths: np.ndarray  # (E,) int64
    observations: np.ndarray  # (T + E, o) float32: each episode keeps its T+1 observations
    actions: np.ndarray  # (T, a) float32
    rewards: np.ndarray  # (T,) float64
    terminations: np.ndarray  # (T,) bool
    truncations: np.ndarray  # (T,) bool
    actor_state: dict[str, np.ndarray]  # the behaviour SAC's final actor (member weights)

    @classmethod
    def from_collection(cls, c: TaskCollection) -> TaskData:
        eps = c.episodes
        return cls(
            param=float(c.param),
            lengths=np.array([len(ep) for ep in eps], dtype=np.int64),
            observations=np.concatenate([np.stack(ep.observations).astype(np.float32) for ep in eps]),
            actions=np.concatenate([np.stack(ep.actions).astype(np.float32) for ep in eps]),
            rewards=np.concatenate([np.asarray(ep.rewards, dtype=np.float64) for ep in eps]),
            terminations=np.concatenate([np.asarray(ep.terminations, dtype=bool) for ep in eps]),
            truncations=np.concatenate([np.asarray(ep.truncations, dtype=bool) for ep in eps]),
            actor_state={k: v.numpy() for k, v in c.actor_state.items()},
        )

    def episode_slices(self) -> Iterator[tuple[slice, slice]]:
        """(observation slice, step slice) of each episode."""
        o = t = 0
        for n in self.lengths.tolist():
            yield slice(o, o + n + 1), slice(t, t + n)
            o, t = o + n + 1, t + n

    def episode_returns(self) -> list[float]:
        return [float(np.sum(self.rewards[ts])) for _, ts in self.episode_slices()]

    def actor_tensors(self) -> dict[str, Any]:
        import torch

        return {k: torch.from_numpy(np.array(v)) for k, v in self.actor_state.items()}

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}{k}": getattr(self, k) for k in ("lengths", "observations", "actions", "rewards", "terminations", "truncations")}
        out[f"{prefix}param"] = np.array(self.param, dtype=np.float64)
        out.update({f"{prefix}actor.{k}": v for k, v in self.actor_state.items()})
        return out

    @classmethod
    def from_dataset(cls, dataset_id: str, root: Path, actor_only: bool = False) -> TaskData:
        """The published data and behaviour actor of one task (to recompute its references)."""
        from safetensors.numpy import load_file

        param = float(read_metadata(dataset_id, root)["bmrl_task_param"])
        actor = load_file(str(behaviour_policy_path(dataset_id, root)))
        if actor_only:  # the reference units need only the actor: skip reading the episodes
            empty = np.zeros(0)
            return cls(param, empty, empty, empty, empty, empty, empty, actor)
        ep = read_episodes(dataset_id, root)
        return cls(param, ep.lengths, ep.observations, ep.actions, ep.rewards, ep.terminations, ep.truncations, actor)

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str, actor_only: bool = False) -> TaskData:
        actor = {k[len(prefix) + 6:]: arrays[k] for k in arrays.files if k.startswith(f"{prefix}actor.")}
        empty = np.zeros(0)
        get = (lambda k: empty) if actor_only else (lambda k: arrays[f"{prefix}{k}"])
        return cls(float(arrays[f"{prefix}param"]), get("lengths"), get("observations"), get("actions"), get("rewards"),
                   get("terminations"), get("truncations"), actor)


# ---------------------------------------------------------------------------- units of work


@dataclass(frozen=True)
class ShardUnit:
    """Train the behaviour SAC of tasks `tasks` (one shard of the card) online; return their data."""

    card: SuiteCard
    shard: int
    tasks: tuple[int, ...]

    @property
    def label(self) -> str:
        span = f"task {self.tasks[0]}" if len(self.tasks) == 1 else f"tasks {self.tasks[0]}-{self.tasks[-1]}"
        return f"behaviour shard {self.shard} ({span})"


@dataclass(frozen=True)
class ExpertUnit:
    """Train the suite's family-wide expert."""

    card: SuiteCard
    label: str = "expert"


@dataclass(frozen=True)
class ReferenceUnit:
    """Reference returns (random, behaviour, expert) of one task; the expert comes as the shared input."""

    card: SuiteCard
    index: int
    actor_state: dict[str, np.ndarray]

    @property
    def label(self) -> str:
        return f"references task {self.index:02d}"


@dataclass
class ShardResult:
    tasks: list[TaskData]
    seconds: float


@dataclass
class ExpertResult:
    state: dict[str, np.ndarray]
    obs_dim: int  # with the task feature
    act_dim: int
    training: ExpertTraining
    seconds: float


def _unit_progress(phase: str) -> Callable[[int, int, list[float]], None]:
    def cb(step: int, total: int, recent: list[float]) -> None:
        shown = " ".join("  -  " if np.isnan(r) else f"{r:.1f}" for r in recent)
        report(step, total, f"return so far: {shown}", phase=phase)
    return cb


def run_build_unit(unit: ShardUnit | ExpertUnit | ReferenceUnit, shared: Any) -> ShardResult | ExpertResult | dict[str, list[float]]:
    """One unit of a build; the same code under every executor. One torch thread: reproducible bytes."""
    card = unit.card
    family = get_family(card.family)
    t0 = time.perf_counter()
    with _torch_threads(1):
        if isinstance(unit, ShardUnit):
            params = [card.task_param(i) for i in unit.tasks]
            collections = collect_behaviour(family, params, card.episode_length, card.behaviour, _unit_progress("behaviour SAC"))
            return ShardResult([TaskData.from_collection(c) for c in collections], time.perf_counter() - t0)
        if isinstance(unit, ExpertUnit):
            all_params = card.train_tasks + card.test_tasks
            expert, training = train_expert(family, min(all_params), max(all_params), card.episode_length, card.expert,
                                            _unit_progress("expert SAC"))
            state = {k: v.numpy() for k, v in expert.state_dict().items()}
            return ExpertResult(state, family_obs_dim(family) + 1, family_act_dim(family), training, time.perf_counter() - t0)
        expert = expert_from_state(shared["state"], shared["config"])
        report(0, 1, "", phase="reference returns")
        refs = _reference_returns(card, family, unit.index, unit.actor_state, expert, shared["config"]["act_dim"])
        report(1, 1, f"random {np.mean(refs['random']):.1f} behaviour {np.mean(refs['behaviour']):.1f} "
                     f"expert {np.mean(refs['expert']):.1f}", phase="reference returns")
        return refs


def _reference_returns(
    card: SuiteCard, family: Family, index: int, actor_state: dict[str, np.ndarray], expert: object, act_dim: int
) -> dict[str, list[float]]:
    import torch

    from bmrl_bench.learners.sac import load_member_actor

    param = card.task_param(index)
    n, seed = card.reference_episodes, REFERENCE_SEED + 1000 * index
    state = {k: torch.from_numpy(np.array(v)) for k, v in actor_state.items()}
    behaviour = load_member_actor(state, family_obs_dim(family), act_dim, card.behaviour.hidden)
    return {
        "random": evaluate_policy(family, param, card.episode_length, random_policy(act_dim, seed), n, seed).tolist(),
        "behaviour": evaluate_policy(family, param, card.episode_length, behaviour, n, seed).tolist(),
        "expert": evaluate_policy(family, param, card.episode_length, expert_policy(expert, family, param), n, seed).tolist(),
    }


def family_obs_dim(family: Family) -> int:
    env = family.make(family.param_range[0])
    dim = int(env.observation_space.shape[0])
    env.close()
    return dim


def family_act_dim(family: Family) -> int:
    env = family.make(family.param_range[0])
    dim = int(env.action_space.shape[0])
    env.close()
    return dim


# ---------------------------------------------------------------------------- finished units on disk


class UnitCache:
    """Finished behaviour shards of one suite, kept until their tasks are published.

    `<root>/.staging/units/<suite>-v<version>/shard-<i>-<key>.npz`; the key hashes what
    the shard's data depends on, so a changed card never reuses a stale shard. Files
    appear by rename only: a reader never sees half of one.
    """

    def __init__(self, card: SuiteCard, root: Path) -> None:
        self.card = card
        self.dir = root / ".staging" / "units" / f"{card.name}-v{card.version}"

    def path(self, shard: int) -> Path:
        card = self.card
        tasks = card.shards()[shard]
        key = {"family": card.family, "episode_length": card.episode_length, "behaviour": card.behaviour.model_dump(),
               "params": [card.task_param(i) for i in tasks], "format": UNIT_FORMAT}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return self.dir / f"shard-{shard:03d}-{digest}.npz"

    def has(self, shard: int) -> bool:
        return self.path(shard).exists()

    def save(self, shard: int, tasks: list[TaskData]) -> None:
        path = self.path(shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for j, t in enumerate(tasks):
            arrays.update(t.to_arrays(f"t{j}."))
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def load(self, shard: int, task: int, actor_only: bool = False) -> TaskData:
        """Task `task` (a suite task index) of shard `shard`."""
        j = self.card.shards()[shard].index(task)
        with np.load(self.path(shard)) as arrays:
            return TaskData.from_arrays(arrays, f"t{j}.", actor_only)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.dir.parent.rmdir()  # `units/` itself, once no suite has finished units


LOCKS = "locks"  # `<root>/.staging/locks/<suite>.lock`: see `_suite_lock`


def _staging_name(kind: str = "") -> str:
    """`<pid>-<kind><uuid>`: the owner's pid tells a live build's folder from a dead one's."""
    return f"{os.getpid()}-{kind}{uuid.uuid4().hex}"


def _owner_alive(name: str) -> bool:
    pid = name.split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _clean_staging(root: Path) -> None:
    """Leftovers of interrupted builds: not finished units (the resume point), nor the
    folders of builds still running (of other suites, or of other processes)."""
    staging = root / ".staging"
    if not staging.is_dir():
        return
    for child in staging.iterdir():
        if child.name in ("units", LOCKS) or _owner_alive(child.name):
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- writing


def _write_dataset(
    card: SuiteCard,
    family: Family,
    index: int,
    data: TaskData,
    refs: dict[str, list[float]],
    expert: dict[str, Any],
    root: Path,
) -> Path:
    import minari
    from minari.data_collector import EpisodeBuffer
    from safetensors.torch import save_file

    dataset_id = card.dataset_id(index)
    ref_min = float(np.mean(refs["random"]))
    ref_max_source = max(("behaviour", "expert"), key=lambda k: float(np.mean(refs[k])))
    ref_max = float(np.mean(refs[ref_max_source]))
    if not ref_max > ref_min:
        raise BuildError(
            f"{dataset_id}: no policy beat the random one (ref_max {ref_max:.2f} <= ref_min {ref_min:.2f}); "
            "raise behaviour.steps_per_task or expert.max_steps in the suite card"
        )
    staging = root / ".staging" / _staging_name()
    staging.mkdir(parents=True)
    try:
        buffers = [
            EpisodeBuffer(
                id=e,
                observations=data.observations[os_],
                actions=data.actions[ts],
                rewards=data.rewards[ts],
                terminations=data.terminations[ts],
                truncations=data.truncations[ts],
            )
            for e, (os_, ts) in enumerate(data.episode_slices())
        ]
        env = family.make(card.task_param(index), max_episode_steps=card.episode_length)
        with _minari_root(staging):
            ds = minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=buffers,
                env=env,
                algorithm_name="SAC (online, one learner per task; the replay buffer is the dataset)",
                author="bmrl-bench",
                author_email="bmrl-bench@users.noreply.github.com",
                code_permalink=CODE_PERMALINK,
                description=f"{card.description} Task {index:02d} ({card.task_split(index)}): "
                f"{family.param_name}={card.task_param(index)}.",
                eval_env=env,
                ref_min_score=ref_min,
                ref_max_score=ref_max,
                data_format="hdf5",
                requirements=[f"bmrl-bench>={__version__}"],
            )
            env.close()
            staged = staging / dataset_id
            checksum = content_checksum(read_episodes(dataset_id, staging))
            ds.storage.update_metadata(_json_plain({
                "bmrl_suite": card.name,
                "bmrl_suite_version": card.version,
                "bmrl_family": family.name,
                "bmrl_task_index": index,
                "bmrl_split": card.task_split(index),
                "bmrl_param_name": family.param_name,
                "bmrl_task_param": card.task_param(index),
                "bmrl_episode_length": card.episode_length,
                # exclude_none: a card without tasks_per_shard records exactly what it did before shards existed
                "bmrl_behaviour": {"algorithm": "sac", **card.behaviour.model_dump(exclude_none=True)},
                "bmrl_behaviour_episode_returns": data.episode_returns(),
                "bmrl_reference_returns": refs,
                "bmrl_ref_max_source": ref_max_source,
                "bmrl_expert": expert,  # its recipe, and how its training ended (steps, converged, check curve)
                "bmrl_checksum": checksum,
                "bmrl_version": __version__,
            }))
        read_metadata(dataset_id, staging)  # the metadata we just wrote parses
        policy_path = behaviour_policy_path(dataset_id, staging)
        policy_path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in data.actor_tensors().items()}, str(policy_path))
        final = dataset_dir(dataset_id, root)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # damaged: move it aside only now that the replacement is complete
            trash = root / ".staging" / _staging_name("damaged-")
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(staged, final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_namespace(card: SuiteCard, family: Family, root: Path) -> None:
    meta = {
        "description": card.description,
        "bmrl_suite": card.model_dump(exclude_none=True),
        "bmrl_family": family.name,
        "bmrl_param_name": family.param_name,
        "dataset_ids": card.dataset_ids(),
    }
    atomic_write_text(root / card.namespace() / "namespace_metadata.json", json.dumps(meta, indent=2))
    top = root / "bmrl" / "namespace_metadata.json"
    if not top.exists():
        atomic_write_text(top, json.dumps({"description": "bmrl-bench: Batch Meta RL suites"}, indent=2))


def _save_expert(state: dict[str, np.ndarray], card: SuiteCard, root: Path, obs_dim: int, act_dim: int,
                 training: ExpertTraining) -> None:
    import torch
    from safetensors.torch import save_file

    d = expert_dir(card, root)
    tmp = d.parent / f".expert-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    save_file({k: torch.from_numpy(np.array(v)).contiguous() for k, v in state.items()}, str(tmp / "weights.safetensors"))
    (tmp / "config.json").write_text(json.dumps({
        "obs_dim": obs_dim, "act_dim": act_dim, "hidden": card.expert.hidden,
        "recipe": card.expert.model_dump(), "training": asdict(training),
    }))
    if d.exists():
        shutil.rmtree(d)
    os.replace(tmp, d)


def expert_from_state(state: dict[str, Any], config: dict[str, Any]) -> object:
    """A 1-member BatchedSAC from saved expert weights (numpy arrays or tensors) and its config.json."""
    import torch

    from bmrl_bench.learners.sac import BatchedSAC, SACConfig

    sac = BatchedSAC(1, config["obs_dim"], config["act_dim"], SACConfig(hidden=tuple(config["hidden"])), seed=0)
    sac.load_state_dict({k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v)) for k, v in state.items()})
    return sac


def _expert_files(card: SuiteCard, root: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    from safetensors.numpy import load_file

    d = expert_dir(card, root)
    if not (d / "weights.safetensors").exists():
        return None
    config = json.loads((d / "config.json").read_text())
    if config.get("recipe") != card.expert.model_dump():  # trained from another recipe: retrain it
        return None
    return load_file(str(d / "weights.safetensors")), config


def load_expert(card: SuiteCard, root: Path | None = None) -> object | None:
    """The suite's family-wide expert (a 1-member BatchedSAC), or None if not built."""
    files = _expert_files(card, root or datasets_root())
    return None if files is None else expert_from_state(*files)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------------------- the build


def phase_progress(progress: ProgressFn) -> UnitProgressFn:
    """Unit events as the (phase, done, total, message) calls of a plain progress display."""
    def on_event(event: UnitEvent) -> None:
        if event.state == "running" and event.total > 0:
            progress(f"{event.label}: {event.phase}" if event.phase else event.label, event.done, event.total, event.message)
    return on_event


def build_suite(name: str, force: bool = False, progress: ProgressFn | None = None, executor: Executor | None = None) -> BuildReport:
    """Build every missing or damaged dataset of suite `name` (all of them with `force`).

    Units run on `executor` (default: inline in this process). Training runs on one
    torch thread: float sums depend on the thread count, and the same card must give
    the same bytes (checksums) on every machine of a kind. `force` also discards
    finished units of an earlier, interrupted build.
    """
    with _torch_threads(1), _suite_lock(name, datasets_root()):
        return _build_suite(name, force, progress, executor or LocalExecutor(1))


@contextlib.contextmanager
def _suite_lock(name: str, root: Path) -> Iterator[None]:
    """One build of a suite at a time per datasets root. A second one (say two evals started
    together on a fresh machine) waits, then finds the datasets built instead of training the
    same expert and shards again."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): concurrent builds of one suite are the user's to avoid
        yield
        return
    path = root / ".staging" / LOCKS / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"bmrl-bench: another process is building {name} in {root}; waiting for it to finish", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build_suite(name: str, force: bool, progress: ProgressFn | None, executor: Executor) -> BuildReport:
    card = get_card(name)
    family = get_family(card.family)
    root = datasets_root()
    _clean_staging(root)
    cache = UnitCache(card, root)
    if force:
        cache.clear()
    status = {i: "missing" if force else dataset_status(card, i, root) for i in range(card.num_tasks)}
    todo = [i for i in range(card.num_tasks) if status[i] != "ok"]
    refresh = {i for i in todo if status[i] == STALE_REFERENCES}  # data intact: only its references are redone
    skipped = [card.dataset_id(i) for i in range(card.num_tasks) if i not in todo]
    seconds: dict[str, float] = {}
    report_ = BuildReport(card.name, [], skipped, seconds, 0)
    if not todo:
        cache.clear()
        report_.bytes_on_disk = suite_bytes(card, root)
        return report_
    unit_progress = executor.progress or (phase_progress(progress) if progress is not None else None)
    hint = f"finished units are kept: re-run `bmrl-bench datasets build {card.name}` to resume"

    # 1. Expert and behaviour shards: the long units, all independent.
    t0 = time.perf_counter()
    shards = card.shards()
    shard_of = {i: s for s, tasks in enumerate(shards) for i in tasks}
    needed = sorted({shard_of[i] for i in todo if i not in refresh})
    units: list[ShardUnit | ExpertUnit] = []
    if force or _expert_files(card, root) is None:
        units.append(ExpertUnit(card))  # first: usually the longest unit
    units += [ShardUnit(card, s, tuple(shards[s])) for s in needed if not cache.has(s)]

    def keep(i: int, result: Any) -> None:  # persist each unit as soon as it finishes
        unit = units[i]
        if isinstance(unit, ExpertUnit):
            _save_expert(result.state, card, root, result.obs_dim, result.act_dim, result.training)
            seconds["expert"] = result.seconds
        else:
            cache.save(unit.shard, result.tasks)
            seconds["behaviour"] = seconds.get("behaviour", 0.0) + result.seconds
        report_.units_run.append(unit.label)
        return None

    executor.map(run_build_unit, units, name=f"build {card.name}: train", labels=[u.label for u in units],
                 resources=Resources(num_cpus=1), on_result=keep, progress=unit_progress, hint=hint)
    seconds["units"] = time.perf_counter() - t0

    # 2. Reference returns per missing task (needs the expert and the task's behaviour actor).
    t0 = time.perf_counter()
    state, config = _expert_files(card, root)  # type: ignore[misc]  # saved by step 1 or an earlier build
    expert_record = {"recipe": config["recipe"], **config["training"]}

    def task_data(i: int, actor_only: bool = False) -> TaskData:
        if i in refresh:
            return TaskData.from_dataset(card.dataset_id(i), root, actor_only)
        return cache.load(shard_of[i], i, actor_only)

    ref_units = [ReferenceUnit(card, i, task_data(i, actor_only=True).actor_state) for i in todo]
    refs = executor.map(run_build_unit, ref_units, name=f"build {card.name}: references", labels=[u.label for u in ref_units],
                        resources=Resources(num_cpus=1), shared={"state": state, "config": config},
                        progress=unit_progress, hint=hint)
    seconds["references"] = time.perf_counter() - t0

    # 3. Publish each task (here: the datasets root is this machine's).
    t0 = time.perf_counter()
    for n, (index, task_refs) in enumerate(zip(todo, refs)):
        _write_dataset(card, family, index, task_data(index), task_refs, expert_record, root)
        report_.built.append(card.dataset_id(index))
        if progress is not None:
            progress("write datasets", n + 1, len(todo), f"{card.dataset_id(index)} ref_min {np.mean(task_refs['random']):.1f} "
                     f"behaviour {np.mean(task_refs['behaviour']):.1f} expert {np.mean(task_refs['expert']):.1f}")
    _write_namespace(card, family, root)
    seconds["write"] = time.perf_counter() - t0
    cache.clear()  # every missing task is published: the finished units are no longer needed
    report_.bytes_on_disk = suite_bytes(card, root)
    return report_


def suite_bytes(card: SuiteCard, root: Path) -> int:
    d = root / card.namespace()
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) if d.exists() else 0


@dataclass
class VerifyRow:
    dataset_id: str
    status: str  # "ok", "missing", or what is damaged


def verify_suite(name: str) -> list[VerifyRow]:
    card = get_card(name)
    root = datasets_root()
    return [VerifyRow(card.dataset_id(i), dataset_status(card, i, root)) for i in range(card.num_tasks)]
