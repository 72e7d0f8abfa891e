"""Writing one task's Minari dataset so that no one ever sees half of it.

Each dataset is written with Minari into a hidden staging root
(`<root>/.staging/<pid>-<uuid>`, which `minari list` skips), its metadata completed
and checked there, and only then moved into place. An interrupted build leaves only
staging folders behind, removed by the next build (`clean_staging`) unless the
process that owns one still runs. One build of a suite at a time (`suite_lock`).

`write_task_dataset` is the one writer of a task's dataset, whatever its tier: the Minari
call, the `bmrl_*` fields every tier shares, the checksum and the atomic move. Its callers say
only what their tier adds: `write_dataset` (replay: the references computed here, the behaviour
actor) and `tiers.write_tier_dataset` (the reset seeds, the policy, the replay tier's references).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bmrl_bench.builder.reference_scores import reference_range
from bmrl_bench.builder.task_data import TaskData
from bmrl_bench.data import (
    Episodes,
    behaviour_policy_path,
    content_checksum,
    dataset_dir,
    read_episodes,
    read_metadata,
)
from bmrl_bench.families import Family
from bmrl_bench.fsutil import atomic_write_text, replace_dir, temp_dir
from bmrl_bench.suites import SuiteCard
from bmrl_bench.tiers import DEFAULT_TIER, TIERS
from bmrl_bench.version import __version__

CODE_PERMALINK = "https://github.com/bmrl-bench/bmrl-bench"
LOCKS = "locks"  # `<root>/.staging/locks/<suite>.lock`: see `suite_lock`


# ---------------------------------------------------------------------------- staging and locks


def _staging_prefix(kind: str = "") -> str:
    """`<pid>-<kind>`, then a random suffix: the owner's pid tells a live build's folder from a dead one's."""
    return f"{os.getpid()}-{kind}"


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


def clean_staging(root: Path) -> None:
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


@contextlib.contextmanager
def suite_lock(name: str, root: Path) -> Iterator[None]:
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
            print(f"bmrl-bench: another process is building {name} in {root}; waiting for it to finish",
                  file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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


# ---------------------------------------------------------------------------- writing

REPLAY_ALGORITHM = "SAC (online, one learner per task; the replay buffer is the dataset)"


@dataclass(frozen=True)
class References:
    """A dataset's normalizer: Minari's ref_min / ref_max scores, and the `bmrl_*` metadata that says where
    they came from (the reference returns, ref_max's source and rule, the better learned policy, the expert)."""

    ref_min: float
    ref_max: float
    metadata: dict[str, Any]

    @classmethod
    def recorded(cls, meta: dict[str, Any]) -> References:
        """The references a written dataset's metadata records (a tier copies its task's replay ones)."""
        return cls(float(meta["ref_min_score"]), float(meta["ref_max_score"]), {
            "bmrl_reference_returns": meta.get("bmrl_reference_returns", {}),
            "bmrl_ref_max_source": meta.get("bmrl_ref_max_source", ""),
            **{k: meta[k] for k in ("bmrl_ref_max_rule", "bmrl_ref_max_learned") if k in meta},
            "bmrl_expert": meta.get("bmrl_expert", {}),
        })


def write_task_dataset(
    card: SuiteCard,
    family: Family,
    index: int,
    tier: str,
    episodes: Episodes,
    references: References,
    tier_metadata: dict[str, Any],
    root: Path,
    *,
    seeds: list[int] | None = None,
    actor: dict[str, Any] | None = None,
) -> Path:
    """Publish task `index` of data tier `tier` as a Minari dataset: its episodes (episode e reset with
    `seeds[e]`, recorded by Minari, where given), its references, the `bmrl_*` task fields every tier
    shares and `tier_metadata` (the tier's own fields), and the behaviour `actor` (torch tensors) beside it."""
    import minari
    from minari.data_collector import EpisodeBuffer

    dataset_id = card.dataset_id(index, tier)
    staging = temp_dir(root / ".staging", prefix=_staging_prefix())
    try:
        slices = list(episodes.episode_slices())
        buffers = [
            EpisodeBuffer(
                id=e,
                seed=None if seeds is None else seeds[e],
                observations=episodes.observations[os_],
                actions=episodes.actions[ts],
                rewards=episodes.rewards[ts],
                terminations=episodes.terminations[ts],
                truncations=episodes.truncations[ts],
            )
            for e, (os_, ts) in enumerate(slices)
        ]
        tier_text = "" if tier == DEFAULT_TIER else f"; {tier} tier ({TIERS[tier]})"
        env = family.make(card.task_param(index), max_episode_steps=card.episode_length)
        with _minari_root(staging):
            ds = minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=buffers,
                env=env,
                algorithm_name=REPLAY_ALGORITHM if tier == DEFAULT_TIER else f"{tier} tier: {TIERS[tier]}",
                author="bmrl-bench",
                author_email="bmrl-bench@users.noreply.github.com",
                code_permalink=CODE_PERMALINK,
                description=f"{card.description} Task {index:02d} ({card.task_split(index)}): "
                f"{family.param_name}={card.task_param(index)}{tier_text}.",
                eval_env=env,
                ref_min_score=references.ref_min,
                ref_max_score=references.ref_max,
                data_format="hdf5",
                requirements=[f"bmrl-bench>={__version__}"],
            )
            env.close()
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
                **tier_metadata,
                # np.sum per episode (pairwise summation), not Episodes.episode_returns (reduceat): these
                # numbers are published, and the two may differ in the last bit.
                "bmrl_behaviour_episode_returns": [float(np.sum(episodes.rewards[ts])) for _, ts in slices],
                **references.metadata,
                "bmrl_checksum": checksum,
                "bmrl_version": __version__,
            }))
        read_metadata(dataset_id, staging)  # the metadata we just wrote parses
        if actor is not None:
            from safetensors.torch import save_file

            policy_path = behaviour_policy_path(dataset_id, staging)
            policy_path.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in actor.items()}, str(policy_path))
        # A damaged dataset in the way is moved aside only now that its replacement is complete.
        final = dataset_dir(dataset_id, root)
        replace_dir(staging / dataset_id, final,
                    trash=root / ".staging" / f"{_staging_prefix('damaged-')}{uuid.uuid4().hex}")
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_dataset(
    card: SuiteCard,
    family: Family,
    index: int,
    data: TaskData,
    refs: dict[str, list[float]],
    expert: dict[str, Any],
    root: Path,
) -> Path:
    """Publish task `index` of the replay tier: its data, reference scores and metadata, and its behaviour actor."""
    dataset_id = card.dataset_id(index)
    optimum = None if family.optimal_return is None else family.optimal_return(card.task_param(index),
                                                                              card.episode_length)
    ref_min, ref_max, ref_max_source, learned_source, learned_max = reference_range(dataset_id, refs, optimum)
    references = References(ref_min, ref_max, {
        "bmrl_reference_returns": refs,
        "bmrl_ref_max_source": ref_max_source,
        "bmrl_ref_max_rule": family.ref_max_rule,  # a dataset built under another rule is stale
        # the better learned policy, whatever ref_max is (the oracle replays it)
        "bmrl_ref_max_learned": {"source": learned_source, "return": learned_max},
        "bmrl_expert": expert,  # its recipe, and how its training ended (steps, converged, check curve)
    })
    # exclude_none: a card without tasks_per_shard records exactly what it did before shards existed
    behaviour = {"bmrl_behaviour": {"algorithm": "sac", **card.behaviour.model_dump(exclude_none=True)}}
    return write_task_dataset(card, family, index, DEFAULT_TIER, data.episodes, references, behaviour, root,
                              actor=data.actor_tensors())


def write_namespace(card: SuiteCard, family: Family, root: Path) -> None:
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
