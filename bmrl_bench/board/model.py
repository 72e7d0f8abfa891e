"""The leaderboard's records: what it trusts about a suite, and one accepted entry."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from bmrl_bench.results import DEFAULT_TIER

BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0
HASH_CHARS = 16  # of the content hash in a submission's file name

DataSource = Literal["reference", "local-build"]


class ReferenceTask(NamedTuple):
    """One test task as the board knows it; plain 5-tuples in this order are accepted too."""

    task_index: int
    dataset_id: str
    param: float
    ref_min: float
    ref_max: float


@dataclass(frozen=True)
class SuiteReference:
    """What the board trusts about one version of a suite."""

    name: str
    version: int
    test_tasks: list[ReferenceTask]
    published_checksums: dict[str, set[str]]  # dataset id -> checksums of published / reference builds
    local_checksums: dict[str, str]  # dataset id -> checksum of this machine's build (empty if none)
    protocol_constants: dict[str, tuple[int, dict[str, int | float | str]]]  # name -> (version, constants)
    min_seeds: int = 3
    # The task family and episode length give every test task its feasible returns
    # (`Family.return_bounds`); without a family (test-only suites) returns are not bounded.
    family: str | None = None
    episode_length: int | None = None
    card_page: Path | None = None  # the suite's dataset card page; the board links to it where it exists

    def __post_init__(self) -> None:
        object.__setattr__(self, "test_tasks", [ReferenceTask(*t) for t in self.test_tasks])


# published(suite, version) for the replay tier; published(suite, version, tier) for another data tier.
Published = Callable[..., SuiteReference]


@dataclass(frozen=True)
class Verification:
    """The board's own re-run of an entry from its checkpoints (`checkpoints/<entry id>/verification.json`)."""

    record: Path  # the verification record on the board
    max_abs_diff: float  # largest |submitted - re-run| over every episode
    wall_time_s: float  # of the re-evaluation
    checkpoints_stored: bool  # False: only their sha256 is on the board (too large for git)


@dataclass(frozen=True)
class Entry:
    """One accepted submission with every number recomputed."""

    path: Path  # the submission file on the board
    entry_id: str  # "<suite>/<protocol>/<algorithm>-<content hash[:16]>": names its files on the board
    algorithm: str
    config_name: str
    suite: str
    suite_version: int
    tier: str  # the data tier
    protocol: str
    protocol_version: int
    data: DataSource
    content_hash: str  # sha256 hex of the canonical algorithm, config and submitted returns
    seeds: tuple[int, ...]
    episodes_per_task: int
    tasks: tuple[ReferenceTask, ...]  # the suite's test tasks, in the order of the score columns
    scores: np.ndarray = field(compare=False, repr=False)  # normalized, (num_seeds, num_tasks)
    aggregates: dict[str, tuple[float, float, float]] = field(compare=False)  # name -> (point, lo, hi)
    per_task: tuple[float, ...]  # mean normalized score per test task
    created: datetime
    git_commit: str | None
    dirty: bool
    verification: Verification | None = None  # None: self-reported

    @property
    def verified(self) -> bool:
        return self.verification is not None

    @property
    def iqm(self) -> tuple[float, float, float]:
        return self.aggregates["iqm"]

    def __str__(self) -> str:
        point, lo, hi = self.iqm
        marker = ", local-build data" if self.data == "local-build" else ""
        tier = "" if self.tier == DEFAULT_TIER else f", {self.tier} data"
        status = "verified" if self.verified else "self-reported"
        return (
            f"{self.algorithm} ({self.config_name}) on {self.suite} v{self.suite_version}{tier}, "
            f"{self.protocol}{marker}:"
            f" IQM {point:.3f} [{lo:.3f}, {hi:.3f}] over {len(self.seeds)} seeds, {status} -> {self.path}"
        )
