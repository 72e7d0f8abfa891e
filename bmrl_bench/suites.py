"""Suite cards (`datasets/*.toml`), the suite registry and the dataset-id grammar.

One card per suite says everything needed to rebuild its datasets: the task family,
the train and test task parameters, the episode length and the behaviour recipe.
Dataset ids follow Minari's grammar: `bmrl/<suite>/task-<ii>-v<version>`, with the
train tasks numbered first, then the test tasks; a tier other than `replay` is a suffix of the
name, `bmrl/<suite>/task-<ii>-<tier>-v<version>` (`bmrl_bench.tiers` says why).
"""
from __future__ import annotations

import os
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from bmrl_bench.errors import CardError, DatasetIdError, UnknownSuiteError
from bmrl_bench.tiers import DEFAULT_TIER, TIER_ALTERNATIVES, tier_suffix

NAMESPACE = "bmrl"
_NAME = r"[a-z0-9][a-z0-9-]*"
DATASET_ID_RE = re.compile(rf"^{NAMESPACE}/(?P<suite>{_NAME})/task-(?P<task>\d{{2}})"
                           rf"(?:-(?P<tier>{TIER_ALTERNATIVES}))?-v(?P<version>\d+)$")

Split = Literal["train", "test"]


class BehaviourRecipe(BaseModel):
    """SAC trained online on one task; its whole replay buffer becomes the dataset."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    steps_per_task: int = Field(gt=0, description="environment steps = transitions per task")
    learning_starts: int = Field(ge=0, description="uniform-random steps before SAC acts")
    hidden: list[int] = Field(min_length=1)
    batch_size: int = Field(gt=0)
    updates_per_step: int = Field(default=1, gt=0)
    seed: int = 0
    tasks_per_shard: int | None = Field(
        default=None, gt=0,
        description="tasks trained together as one batched SAC (a unit of work); None: all tasks in one shard. "
        "The data depends on it: changing it needs a new card version",
    )


class ExpertRecipe(BaseModel):
    """One family-wide SAC that sees the task parameter; a candidate for ref_max_score."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_steps: int = Field(
        gt=0, description="environment steps (over all parallel envs) before convergence may stop training")
    max_steps: int = Field(
        gt=0, description="hard cap on environment steps; reaching it means the expert did not converge")
    eval_every: int = Field(default=5000, gt=0, description="environment steps between convergence checks")
    eval_tasks: int = Field(
        default=5, gt=0,
        description="task parameters, evenly over the suite's range, one deterministic episode each per check")
    patience: int = Field(
        default=4, gt=0, description="checks without a significant improvement that count as converged")
    min_improvement: float = Field(
        default=0.02, ge=0,
        description="an improvement is significant when it beats the best check by this fraction of "
                    "(best - first check)",
    )
    num_envs: int = Field(default=4, gt=0)
    hidden: list[int] = Field(min_length=1)
    batch_size: int = Field(gt=0)
    updates_per_step: int = Field(default=1, gt=0)
    seed: int = 1
    stop_rule: Literal["mean-plateau", "every-task"] = Field(
        default="mean-plateau",
        description="mean-plateau: stop once the mean check return over `eval_tasks` tasks stops improving (the "
                    "published suites' rule); every-task: stop once EVERY train task has settled (see `tolerance`)",
    )
    tolerance: float = Field(
        default=0.05, gt=0,
        description="every-task: a train task has settled when the median of its last `patience` checks is within "
                    "this fraction of (its return bound - its worst check) of the median of the `patience` checks "
                    "before them and of its best such median",
    )
    check_episodes: int = Field(
        default=1, gt=0, description="every-task: deterministic episodes per train task per check (their mean counts)")

    @model_validator(mode="after")
    def _steps_ordered(self) -> ExpertRecipe:
        if self.max_steps < self.min_steps:
            raise ValueError(f"expert.max_steps ({self.max_steps}) is below expert.min_steps ({self.min_steps})")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Under the default rule the every-task fields are left out, so the recipe recorded by the
        # published builds (which the stale-reference check compares) still reads the same.
        data = handler(self)
        if self.stop_rule == "mean-plateau":
            for name in ("stop_rule", "tolerance", "check_episodes"):
                data.pop(name, None)
        return data


class SuiteCard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=rf"^{_NAME}$")
    version: int = Field(ge=0)
    family: str
    description: str
    episode_length: int = Field(gt=0)
    train_tasks: list[float] = Field(min_length=1)
    test_tasks: list[float] = Field(min_length=1)
    reference_episodes: int = Field(default=10, ge=10)
    eval_episodes: int = Field(default=10, gt=0)
    behaviour: BehaviourRecipe
    expert: ExpertRecipe

    @model_validator(mode="after")
    def _known_family(self) -> SuiteCard:
        from bmrl_bench.families import get_family

        get_family(self.family)
        if len(self.train_tasks) + len(self.test_tasks) > 100:
            raise ValueError("a suite holds at most 100 tasks (two-digit task ids)")
        return self

    @property
    def num_tasks(self) -> int:
        return len(self.train_tasks) + len(self.test_tasks)

    def task_param(self, index: int) -> float:
        return (self.train_tasks + self.test_tasks)[index]

    def task_split(self, index: int) -> Split:
        return "train" if index < len(self.train_tasks) else "test"

    def train_indices(self) -> list[int]:
        return list(range(len(self.train_tasks)))

    def test_indices(self) -> list[int]:
        return list(range(len(self.train_tasks), self.num_tasks))

    def dataset_id(self, index: int, tier: str = DEFAULT_TIER) -> str:
        if not 0 <= index < self.num_tasks:
            raise DatasetIdError(f"suite '{self.name}' has tasks 0..{self.num_tasks - 1}, not {index}")
        return f"{NAMESPACE}/{self.name}/task-{index:02d}{tier_suffix(tier)}-v{self.version}"

    def dataset_ids(self, tier: str = DEFAULT_TIER) -> list[str]:
        return [self.dataset_id(i, tier) for i in range(self.num_tasks)]

    def namespace(self) -> str:
        return f"{NAMESPACE}/{self.name}"

    def shards(self) -> list[list[int]]:
        """Task indices trained together, in order: `behaviour.tasks_per_shard` at a time."""
        size = self.behaviour.tasks_per_shard or self.num_tasks
        return [list(range(s, min(s + size, self.num_tasks))) for s in range(0, self.num_tasks, size)]


def card_dirs() -> list[Path]:
    """Folders searched for cards: $BMRL_BENCH_CARDS entries, then the packaged cards."""
    dirs = [Path(p) for p in os.environ.get("BMRL_BENCH_CARDS", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    for candidate in (here / "_cards", here.parent / "datasets"):  # wheel, then source tree
        if candidate.is_dir():
            dirs.append(candidate)
            break
    return dirs


def _card_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for d in reversed(card_dirs()):  # earlier folders win
        for f in sorted(d.glob("*.toml")):
            files[f.stem] = f
    return files


def list_suites() -> list[str]:
    return sorted(_card_files())


def get_card(name: str) -> SuiteCard:
    files = _card_files()
    if name not in files:
        known = ", ".join(sorted(files)) or "none"
        raise UnknownSuiteError(f"unknown suite '{name}'; known suites: {known} (see `bmrl-bench datasets list`)")
    return _read_card(files[name], files[name].stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _read_card(path: Path, _mtime: int) -> SuiteCard:
    try:
        raw = tomllib.loads(path.read_text())
        card = SuiteCard.model_validate(raw)
    except tomllib.TOMLDecodeError as e:
        raise CardError(f"suite card {path} is not valid TOML ({e}); fix the file") from None
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "card"
        raise CardError(f"suite card {path}: {loc}: {err['msg']}; fix the file") from None
    if card.name != path.stem:
        raise CardError(f"suite card {path} names itself '{card.name}'; the file must be {card.name}.toml")
    return card


def dataset_tier(dataset_id: str) -> str:
    """The tier a dataset id names (`replay` when it names none); DatasetIdError if it is no bmrl-bench id."""
    parse_dataset_id(dataset_id)  # raises with the reason
    m = DATASET_ID_RE.match(dataset_id)
    assert m is not None  # parse_dataset_id matched it
    return m["tier"] or DEFAULT_TIER


def parse_dataset_id(dataset_id: str) -> tuple[str, int, int]:
    """`bmrl/<suite>/task-<ii>[-<tier>]-v<N>` -> (suite, task index, version); checks the suite exists."""
    m = DATASET_ID_RE.match(dataset_id)
    if m is None:
        hint = " (it has no version suffix -vN)" if not re.search(r"-v\d+$", dataset_id) else ""
        raise DatasetIdError(
            f"'{dataset_id}' is not a bmrl-bench dataset id{hint}; ids look like bmrl/<suite>/task-00-v0 "
            f"(or bmrl/<suite>/task-00-<tier>-v0, tier one of {TIER_ALTERNATIVES.replace('|', ', ')})"
        )
    suite, task, version = m["suite"], int(m["task"]), int(m["version"])
    card = get_card(suite)
    if version != card.version:
        current = card.dataset_id(min(task, card.num_tasks - 1), m["tier"] or DEFAULT_TIER)
        raise DatasetIdError(f"'{dataset_id}': suite '{suite}' is at version v{card.version}; use {current}")
    card.dataset_id(task)  # range check
    return suite, task, version
