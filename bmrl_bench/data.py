"""Loading a suite's Minari datasets as flat numpy arrays, and their status (built, missing, damaged).

This module only reads: writing datasets is `bmrl_bench.builder`'s job (`ensure_built`
builds what `missing_tasks` names).

Minari's own loader iterates episodes one by one (about 1.8 ms each for short
episodes); reading the HDF5 file with h5py directly is an order of magnitude faster,
and the arrays are the same ones `minari.load_dataset` returns (a test checks it).
Every load recomputes the content checksum, so damaged or tampered data is caught.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bmrl_bench.errors import BmrlError, ChecksumMismatchError, DatasetCorruptError, DatasetMissingError
from bmrl_bench.families import Family, get_family
from bmrl_bench.suites import DATASET_ID_RE, SuiteCard, get_card, list_suites
from bmrl_bench.tiers import DEFAULT_TIER, build_command, check_tier, not_built


def datasets_root() -> Path:
    """Minari's root folder: $MINARI_DATASETS_PATH, else ~/.minari/datasets."""
    from minari.storage.datasets_root_dir import get_dataset_path

    return Path(get_dataset_path())


def dataset_dir(dataset_id: str, root: Path | None = None) -> Path:
    return (root or datasets_root()) / dataset_id


def behaviour_policy_path(dataset_id: str, root: Path) -> Path:
    """The behaviour SAC's final actor, saved beside its dataset."""
    return dataset_dir(dataset_id, root) / "policies" / "behaviour.safetensors"


def _build_command(dataset_id: str) -> str:
    m = DATASET_ID_RE.match(dataset_id)
    tier = (m["tier"] if m is not None else None) or DEFAULT_TIER
    return build_command(dataset_id.split("/")[1], tier)


def _not_built(dataset_id: str, path: Path) -> DatasetMissingError:
    return DatasetMissingError(f"dataset {dataset_id} is not built ({path} missing); run {_build_command(dataset_id)}")


@dataclass
class Episodes:
    """A dataset's episodes concatenated; `starts[e]` indexes episode e's first step."""

    observations: np.ndarray  # (T_total + E, o): each episode keeps its T+1 observations
    actions: np.ndarray  # (T_total, a)
    rewards: np.ndarray  # (T_total,)
    terminations: np.ndarray  # (T_total,) bool
    truncations: np.ndarray  # (T_total,) bool
    lengths: np.ndarray  # (E,)

    def episode_returns(self) -> np.ndarray:
        return np.add.reduceat(self.rewards, np.concatenate([[0], np.cumsum(self.lengths)[:-1]]))

    def episode_slices(self) -> Iterator[tuple[slice, slice]]:
        """(observation slice, step slice) of each episode."""
        o = t = 0
        for n in self.lengths.tolist():
            yield slice(o, o + n + 1), slice(t, t + n)
            o, t = o + n + 1, t + n


def read_episodes(dataset_id: str, root: Path | None = None) -> Episodes:
    """Read one dataset's HDF5 file; DatasetMissingError / DatasetCorruptError on failure."""
    import h5py

    path = dataset_dir(dataset_id, root) / "data" / "main_data.hdf5"
    if not path.exists():
        raise _not_built(dataset_id, path)
    try:
        with h5py.File(path, "r") as f:
            names = sorted((k for k in f if k.startswith("episode_")), key=lambda k: int(k.split("_")[1]))
            if not names:
                raise ValueError("no episodes")
            keys = ("observations", "actions", "rewards", "terminations", "truncations")
            parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
            for name in names:
                g = f[name]
                for key in parts:
                    parts[key].append(g[key][()])
    except Exception as e:  # h5py raises OSError, KeyError, ValueError for damaged files
        raise DatasetCorruptError(
            f"dataset {dataset_id} is damaged: {path} cannot be read "
            f"({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
            f"rebuild it with {_build_command(dataset_id)}"
        ) from None
    lengths = np.array([len(a) for a in parts["actions"]], dtype=np.int64)
    return Episodes(
        observations=np.concatenate(parts["observations"]).astype(np.float32, copy=False),
        actions=np.concatenate(parts["actions"]).astype(np.float32, copy=False),
        rewards=np.concatenate(parts["rewards"]).astype(np.float64, copy=False),
        terminations=np.concatenate(parts["terminations"]).astype(bool, copy=False),
        truncations=np.concatenate(parts["truncations"]).astype(bool, copy=False),
        lengths=lengths,
    )


def content_checksum(ep: Episodes) -> str:
    """sha256 over the episode arrays in a fixed dtype and order (independent of HDF5 layout)."""
    h = hashlib.sha256()
    for arr in (ep.lengths.astype("<i8"), ep.observations.astype("<f4"), ep.actions.astype("<f4"),
                ep.rewards.astype("<f8"), ep.terminations.astype("u1"), ep.truncations.astype("u1")):
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def read_metadata(dataset_id: str, root: Path | None = None) -> dict:
    path = dataset_dir(dataset_id, root) / "data" / "metadata.json"
    if not path.exists():
        raise _not_built(dataset_id, path)
    try:
        meta = json.loads(path.read_text())
        for key in ("bmrl_checksum", "bmrl_task_param", "bmrl_split", "ref_min_score", "ref_max_score"):
            meta[key]  # noqa: B018 - presence check
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
        raise DatasetCorruptError(
            f"dataset {dataset_id} is damaged: {path} is not valid bmrl-bench metadata ({type(e).__name__}); "
            f"rebuild it with {_build_command(dataset_id)}"
        ) from None
    return meta


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset as `bmrl-bench datasets info` shows it: its metadata and its episodes' returns."""

    dataset_id: str
    metadata: dict[str, Any]
    returns_min: float
    returns_mean: float
    returns_max: float


def dataset_info(dataset_id: str, root: Path | None = None) -> DatasetInfo:
    """The metadata of one dataset and the spread of its episode returns (the data is read and checked)."""
    meta = read_metadata(dataset_id, root)
    returns = read_episodes(dataset_id, root).episode_returns()
    return DatasetInfo(dataset_id, meta, float(returns.min()), float(returns.mean()), float(returns.max()))


# ---------------------------------------------------------------------------- status

# The data is intact but its reference scores came from another expert recipe: a build
# recomputes them (and rewrites the metadata) without collecting the data again.
STALE_REFERENCES = ("stale reference scores: the card's expert recipe changed since this dataset was built; "
                    "run the build again")

# The data is intact but its ref_max was chosen under another rule (`Family.ref_max_rule`; datasets
# from before the rule was recorded were "learned"): a build recomputes the references as above.
STALE_REFERENCE_RULE = ("stale reference scores: the family's ref_max rule changed since this dataset was built; "
                        "run the build again")
# The data is intact but its references came from another expert than the one saved beside it (for
# instance data from a mirror beside a newer expert): a build recomputes them with the saved one.
STALE_EXPERT = ("stale reference scores: they came from another expert than the one saved in this suite's "
                "policies folder; run the build again")
# The statuses a build fixes without collecting data.
REFERENCES_ONLY = (STALE_REFERENCES, STALE_REFERENCE_RULE, STALE_EXPERT)


def expert_dir(card: SuiteCard, root: Path) -> Path:
    """Where a build saves the suite's family-wide expert (`weights.safetensors`, `config.json`)."""
    # Not hidden and without a `data/` folder, so Minari's listing walks past it.
    return root / card.namespace() / f"policies-v{card.version}" / "expert"


def saved_expert_config(card: SuiteCard, root: Path) -> dict[str, Any] | None:
    """The saved expert's `config.json` (dimensions, recipe, how its training ended), or None if no expert
    trained from the card's recipe is saved (one from another recipe is retrained, never loaded)."""
    d = expert_dir(card, root)
    if not (d / "weights.safetensors").exists():
        return None
    config = json.loads((d / "config.json").read_text())
    return config if config.get("recipe") == card.expert.model_dump() else None


# A tier dataset whose references are no longer its task's replay references: a tier build rewrites it.
STALE_TIER_REFERENCES = ("stale reference scores: the replay tier's references changed since this dataset was "
                         "built; build its tier again")


def dataset_status(card: SuiteCard, index: int, root: Path, tier: str = DEFAULT_TIER) -> str:
    """'ok', 'missing', or a one-line description of the damage (of the task's dataset in `tier`).

    Every tier records the expert recipe its references (and its expert policies) came from, so
    a changed recipe makes every tier stale."""
    dataset_id = card.dataset_id(index, tier)
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
    if tier == DEFAULT_TIER and meta.get("bmrl_ref_max_rule", "learned") != get_family(card.family).ref_max_rule:
        return STALE_REFERENCE_RULE
    saved = saved_expert_config(card, root) if tier == DEFAULT_TIER else None
    if saved is not None and {k: meta["bmrl_expert"].get(k) for k in saved["training"]} != saved["training"]:
        return STALE_EXPERT
    if tier != DEFAULT_TIER and _replay_references_moved(card, index, root, meta):
        return STALE_TIER_REFERENCES
    return "ok"


def _replay_references_moved(card: SuiteCard, index: int, root: Path, meta: dict) -> bool:
    """A tier dataset carries its task's replay references: have those changed since (a rebuilt replay tier)?"""
    try:
        replay = read_metadata(card.dataset_id(index), root)
    except (DatasetMissingError, DatasetCorruptError):
        return False  # nothing to compare with: the tier's own data is intact
    keys = ("ref_min_score", "ref_max_score", "bmrl_ref_max_source")
    return tuple(meta.get(k) for k in keys) != tuple(replay.get(k) for k in keys)


def missing_tasks(card: SuiteCard, root: Path, tier: str = DEFAULT_TIER) -> list[int]:
    """Task indices whose dataset (in `tier`) is missing, damaged or stale: what a build would (re)write."""
    return [i for i in range(card.num_tasks) if dataset_status(card, i, root, tier) != "ok"]


def require_tier_built(card: SuiteCard, root: Path, tier: str) -> None:
    """TierNotBuiltError (naming the build command) unless every dataset of `tier` is on disk; a presence check
    of the metadata files only, so it answers before anything loads. `replay` is checked as it loads."""
    check_tier(tier)
    if tier == DEFAULT_TIER:
        return
    missing = [i for i in range(card.num_tasks)
               if not (dataset_dir(card.dataset_id(i, tier), root) / "data" / "metadata.json").exists()]
    if missing:
        raise not_built(card.name, tier, len(missing), card.num_tasks)


def suite_bytes(card: SuiteCard, root: Path) -> int:
    d = root / card.namespace()
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) if d.exists() else 0


@dataclass(frozen=True)
class SuiteStatus:
    """One suite: its card's splits and how many of its datasets are built and intact."""

    name: str
    train_tasks: tuple[float, ...]
    test_tasks: tuple[float, ...]
    episode_length: int
    num_tasks: int
    built: int
    """Datasets that verify (the others are missing, damaged or stale: `missing_tasks`)."""
    bytes: int
    """On disk under the suite's folder of the Minari root."""


@dataclass(frozen=True)
class DatasetsStatus:
    """Every suite (by name) and the Minari root its datasets were looked for in."""

    root: Path
    suites: tuple[SuiteStatus, ...]


def datasets_status(root: Path | None = None, tier: str = DEFAULT_TIER) -> DatasetsStatus:
    """What `bmrl-bench datasets list` shows: every suite's splits and its built datasets of `tier` (each is
    checked); the bytes are the suite's, all tiers together."""
    check_tier(tier)
    root = root or datasets_root()
    suites = []
    for name in list_suites():
        card = get_card(name)
        suites.append(SuiteStatus(
            name, tuple(card.train_tasks), tuple(card.test_tasks), card.episode_length, card.num_tasks,
            built=card.num_tasks - len(missing_tasks(card, root, tier)), bytes=suite_bytes(card, root)))
    return DatasetsStatus(root, tuple(suites))


@dataclass
class VerifyRow:
    dataset_id: str
    status: str  # "ok", "missing", or what is damaged


def verify_suite(name: str, tier: str = DEFAULT_TIER) -> list[VerifyRow]:
    card = get_card(name)
    check_tier(tier)
    root = datasets_root()
    return [VerifyRow(card.dataset_id(i, tier), dataset_status(card, i, root, tier)) for i in range(card.num_tasks)]


# ---------------------------------------------------------------------------- loading


class NotATestTaskError(BmrlError):
    pass


@dataclass
class TaskInfo:
    index: int
    dataset_id: str
    split: Literal["train", "test"]
    param: float
    ref_min: float
    ref_max: float
    checksum: str


# What an RL update reads from a Batch (not the timeouts or the task labels).
TRANSITION_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals")


@dataclass
class Batch:
    """Flat transitions; all float32 except task_index (int64)."""

    observations: np.ndarray  # (N, o)
    actions: np.ndarray  # (N, a)
    rewards: np.ndarray  # (N,)
    next_observations: np.ndarray  # (N, o)
    terminals: np.ndarray  # (N,) 1.0 = true termination (no bootstrap)
    timeouts: np.ndarray  # (N,) 1.0 = the episode was cut here (time limit or buffer end)
    task_index: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.rewards)

    def select(self, mask: np.ndarray) -> Batch:
        return Batch(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    def task(self, index: int) -> Batch:
        return self.select(self.task_index == index)

    def tensors(self, device: str = "cpu", order: np.ndarray | None = None) -> dict[str, Any]:
        """The RL fields as torch tensors on `device` (rows permuted by `order` if given)."""
        import torch

        pick = (lambda a: a) if order is None else (lambda a: a[order])
        return {name: torch.as_tensor(pick(getattr(self, name)), device=device) for name in TRANSITION_FIELDS}

    @staticmethod
    def concatenate(batches: list[Batch]) -> Batch:
        return Batch(**{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(Batch)})


def episodes_to_batch(ep: Episodes, task_index: int) -> Batch:
    # Each episode has T+1 observations: drop the last of each for s, the first for s'.
    n_eps = len(ep.lengths)
    obs_starts = np.concatenate([[0], np.cumsum(ep.lengths + 1)[:-1]])
    idx = np.concatenate([np.arange(s, s + n) for s, n in zip(obs_starts, ep.lengths)]) if n_eps else np.zeros(0, int)
    return Batch(
        observations=ep.observations[idx],
        actions=ep.actions,
        rewards=ep.rewards.astype(np.float32),
        next_observations=ep.observations[idx + 1],
        terminals=ep.terminations.astype(np.float32),
        timeouts=ep.truncations.astype(np.float32),
        task_index=np.full(len(ep.rewards), task_index, dtype=np.int64),
    )


def load_task(card: SuiteCard, index: int, root: Path | None = None,
              tier: str = DEFAULT_TIER) -> tuple[TaskInfo, Batch]:
    """Read, checksum-verify and flatten one task's dataset (of `tier`)."""
    dataset_id = card.dataset_id(index, tier)
    meta = read_metadata(dataset_id, root)
    ep = read_episodes(dataset_id, root)
    checksum = content_checksum(ep)
    if checksum != meta["bmrl_checksum"]:
        raise ChecksumMismatchError(
            f"dataset {dataset_id} does not match its checksum "
            f"({dataset_dir(dataset_id, root) / 'data' / 'main_data.hdf5'} was modified); "
            f"rebuild it with {build_command(card.name, tier)}"
        )
    info = TaskInfo(
        index=index,
        dataset_id=dataset_id,
        split=meta["bmrl_split"],
        param=float(meta["bmrl_task_param"]),
        ref_min=float(meta["ref_min_score"]),
        ref_max=float(meta["ref_max_score"]),
        checksum=checksum,
    )
    return info, episodes_to_batch(ep, index)


@dataclass
class Suite:
    """A suite's meta-train data as arrays, with every task's parameter, split and refs."""

    card: SuiteCard
    family: Family
    tasks: list[TaskInfo]
    train: Batch
    root: Path
    tier: str = DEFAULT_TIER  # the data tier every task's dataset comes from (`bmrl_bench.tiers`)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def train_tasks(self) -> list[TaskInfo]:
        return [t for t in self.tasks if t.split == "train"]

    @property
    def test_tasks(self) -> list[TaskInfo]:
        return [t for t in self.tasks if t.split == "test"]

    def load_test_batch(self, index: int) -> Batch:
        """A test task's offline data: for reference scores and offline-context protocols only."""
        if self.card.task_split(index) != "test":
            first, last = self.card.test_indices()[0], self.card.test_indices()[-1]
            raise NotATestTaskError(f"task {index} of {self.name} is not a test task; only a test task's data loads "
                                    f"this way (test tasks: {first if first == last else f'{first}-{last}'})")
        return load_task(self.card, index, self.root, self.tier)[1]

    def __repr__(self) -> str:
        tier = "" if self.tier == DEFAULT_TIER else f", tier={self.tier!r}"
        return (
            f"Suite({self.name!r}{tier}, family={self.family.name!r}, train_tasks={len(self.train_tasks)}, "
            f"test_tasks={len(self.test_tasks)}, transitions={len(self.train)}, "
            f"obs_dim={self.train.observations.shape[1]}, act_dim={self.train.actions.shape[1]})"
        )


def _test_task_info(card: SuiteCard, index: int, root: Path, tier: str = DEFAULT_TIER) -> TaskInfo:
    """Test tasks' facts come from metadata plus a checksum of the (unloaded) data."""
    dataset_id = card.dataset_id(index, tier)
    meta = read_metadata(dataset_id, root)
    return TaskInfo(index, dataset_id, meta["bmrl_split"], float(meta["bmrl_task_param"]),
                    float(meta["ref_min_score"]), float(meta["ref_max_score"]), meta["bmrl_checksum"])


def load_suite(name: str, tier: str = DEFAULT_TIER) -> Suite:
    """The meta-train batches of suite `name` (of data tier `tier`) as arrays, plus task parameters and splits.

    The datasets must be built (`bmrl_bench.builder.ensure_built` builds the missing ones). An
    unknown tier, or a tier the suite has not built, is one line before anything loads.
    """
    card = get_card(name)
    root = datasets_root()
    require_tier_built(card, root, tier)
    tasks: list[TaskInfo] = []
    batches: list[Batch] = []
    for i in card.train_indices():
        info, batch = load_task(card, i, root, tier)
        tasks.append(info)
        batches.append(batch)
    for i in card.test_indices():
        tasks.append(_test_task_info(card, i, root, tier))
    return Suite(card=card, family=get_family(card.family), tasks=tasks, train=Batch.concatenate(batches), root=root,
                 tier=tier)
