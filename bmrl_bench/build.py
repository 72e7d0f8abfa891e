"""Building a suite's Minari datasets from its card, and verifying them.

A build never exposes half a dataset: each dataset is written with Minari into a
hidden staging root (`<root>/.staging/<uuid>`, which `minari list` skips), its
metadata completed and checked there, and only then renamed into place. An
interrupted build leaves only staging folders behind (removed by the next build);
re-running it builds exactly the tasks that are missing or damaged.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bmrl_bench import __version__
from bmrl_bench.collect import (
    TaskCollection,
    collect_behaviour,
    evaluate_policy,
    expert_policy,
    random_policy,
    train_expert,
)
from bmrl_bench.data import content_checksum, dataset_dir, datasets_root, read_episodes, read_metadata
from bmrl_bench.errors import BmrlError, DatasetCorruptError, DatasetMissingError
from bmrl_bench.families import Family, get_family
from bmrl_bench.fsutil import atomic_write_text
from bmrl_bench.suites import SuiteCard, get_card

CODE_PERMALINK = "https://github.com/bmrl-bench/bmrl-bench"
# Reference-score episodes use their own seed range, disjoint from training and evaluation.
REFERENCE_SEED = 50_000_000
ProgressFn = Callable[[str, int, int, str], None]  # (phase, done, total, message)


class BuildError(BmrlError):
    pass


@dataclass
class BuildReport:
    suite: str
    built: list[str]
    skipped: list[str]
    seconds: dict[str, float]
    bytes_on_disk: int


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


def _reference_returns(
    card: SuiteCard, family: Family, index: int, collection: TaskCollection, expert: object, act_dim: int
) -> dict[str, list[float]]:
    from bmrl_bench.learners.sac import load_member_actor

    param = card.task_param(index)
    n, seed = card.reference_episodes, REFERENCE_SEED + 1000 * index
    behaviour = load_member_actor(collection.actor_state, family_obs_dim(family), act_dim, card.behaviour.hidden)
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


def _write_dataset(
    card: SuiteCard,
    family: Family,
    index: int,
    collection: TaskCollection,
    refs: dict[str, list[float]],
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
            "raise behaviour.steps_per_task or expert.steps in the suite card"
        )
    staging = root / ".staging" / uuid.uuid4().hex
    staging.mkdir(parents=True)
    try:
        buffers = [
            EpisodeBuffer(
                id=e,
                observations=np.stack(ep.observations).astype(np.float32),
                actions=np.stack(ep.actions).astype(np.float32),
                rewards=np.asarray(ep.rewards, dtype=np.float64),
                terminations=np.asarray(ep.terminations, dtype=bool),
                truncations=np.asarray(ep.truncations, dtype=bool),
            )
            for e, ep in enumerate(collection.episodes)
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
                "bmrl_behaviour": {"algorithm": "sac", **card.behaviour.model_dump()},
                "bmrl_behaviour_episode_returns": [ep.episode_return for ep in collection.episodes],
                "bmrl_reference_returns": refs,
                "bmrl_ref_max_source": ref_max_source,
                "bmrl_checksum": checksum,
                "bmrl_version": __version__,
            }))
        read_metadata(dataset_id, staging)  # the metadata we just wrote parses
        policy_path = behaviour_policy_path(dataset_id, staging)
        policy_path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in collection.actor_state.items()}, str(policy_path))
        final = dataset_dir(dataset_id, root)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # damaged: move it aside only now that the replacement is complete
            trash = root / ".staging" / f"damaged-{uuid.uuid4().hex}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(staged, final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_namespace(card: SuiteCard, family: Family, root: Path) -> None:
    meta = {
        "description": card.description,
        "bmrl_suite": card.model_dump(),
        "bmrl_family": family.name,
        "bmrl_param_name": family.param_name,
        "dataset_ids": card.dataset_ids(),
    }
    atomic_write_text(root / card.namespace() / "namespace_metadata.json", json.dumps(meta, indent=2))
    top = root / "bmrl" / "namespace_metadata.json"
    if not top.exists():
        atomic_write_text(top, json.dumps({"description": "bmrl-bench: Batch Meta RL suites"}, indent=2))


def _save_expert(expert: object, card: SuiteCard, root: Path, obs_dim: int, act_dim: int) -> None:
    from safetensors.torch import save_file

    d = expert_dir(card, root)
    tmp = d.parent / f".expert-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    save_file(expert.state_dict(), str(tmp / "weights.safetensors"))
    (tmp / "config.json").write_text(json.dumps({"obs_dim": obs_dim, "act_dim": act_dim, "hidden": card.expert.hidden}))
    if d.exists():
        shutil.rmtree(d)
    os.replace(tmp, d)


def load_expert(card: SuiteCard, root: Path | None = None) -> object | None:
    """The suite's family-wide expert (a 1-member BatchedSAC), or None if not built."""
    from safetensors.torch import load_file

    from bmrl_bench.learners.sac import BatchedSAC, SACConfig

    d = expert_dir(card, root or datasets_root())
    if not (d / "weights.safetensors").exists():
        return None
    cfg = json.loads((d / "config.json").read_text())
    sac = BatchedSAC(1, cfg["obs_dim"], cfg["act_dim"], SACConfig(hidden=tuple(cfg["hidden"])), seed=0)
    sac.load_state_dict(load_file(str(d / "weights.safetensors")))
    return sac


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def build_suite(name: str, force: bool = False, progress: ProgressFn | None = None) -> BuildReport:
    """Build every missing or damaged dataset of suite `name` (all of them with `force`).

    Training runs on one torch thread: float sums depend on the thread count, and the
    same card must give the same bytes (checksums) on every machine of a kind.
    """
    with _torch_threads(1):
        return _build_suite(name, force, progress)


def _build_suite(name: str, force: bool, progress: ProgressFn | None) -> BuildReport:
    card = get_card(name)
    family = get_family(card.family)
    root = datasets_root()
    shutil.rmtree(root / ".staging", ignore_errors=True)  # leftovers of an interrupted build
    todo = list(range(card.num_tasks)) if force else missing_tasks(card, root)
    skipped = [card.dataset_id(i) for i in range(card.num_tasks) if i not in todo]
    seconds: dict[str, float] = {}
    report = BuildReport(card.name, [], skipped, seconds, 0)
    if not todo:
        report.bytes_on_disk = suite_bytes(card, root)
        return report

    def phase_progress(phase: str) -> Callable[[int, int, list[float]], None]:
        def cb(step: int, total: int, recent: list[float]) -> None:
            if progress is not None:
                shown = " ".join("  -  " if np.isnan(r) else f"{r:.1f}" for r in recent)
                progress(phase, step, total, f"return so far: {shown}")
        return cb

    t0 = time.perf_counter()
    params = [card.task_param(i) for i in todo]
    collections = collect_behaviour(family, params, card.episode_length, card.behaviour, phase_progress("behaviour SAC"))
    seconds["behaviour"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    expert = None if force else load_expert(card, root)
    if expert is None:
        all_params = card.train_tasks + card.test_tasks
        expert = train_expert(family, min(all_params), max(all_params), card.episode_length, card.expert, phase_progress("expert SAC"))
        obs_dim = family_obs_dim(family)
        _save_expert(expert, card, root, obs_dim + 1, len(collections[0].episodes[0].actions[0]))
    seconds["expert"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    act_dim = len(collections[0].episodes[0].actions[0])
    for n, (index, collection) in enumerate(zip(todo, collections)):
        refs = _reference_returns(card, family, index, collection, expert, act_dim)
        _write_dataset(card, family, index, collection, refs, root)
        report.built.append(card.dataset_id(index))
        if progress is not None:
            progress("write datasets", n + 1, len(todo), f"{card.dataset_id(index)} ref_min {np.mean(refs['random']):.1f} "
                     f"behaviour {np.mean(refs['behaviour']):.1f} expert {np.mean(refs['expert']):.1f}")
    _write_namespace(card, family, root)
    seconds["write"] = time.perf_counter() - t0
    report.bytes_on_disk = suite_bytes(card, root)
    return report


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
