"""The results-file schema: what `bmrl-bench eval` writes and `bmrl-bench submit` reads.

A results file records enough to recompute every number on the leaderboard: the
algorithm and its config, the suite with the id and checksum of every dataset, the
protocol with its constants, the seeds, and every scored episode return
(`returns[k] = (seed, task_index, episode_returns)`). Anything derived (the
`aggregates` block `eval` adds for convenience) is ignored by `submit`, which
recomputes it.

Files may come from anyone, so the schema is strict (no extra fields, no type
coercion, finite numbers only) and bounded (list lengths, string lengths, file size).
`load_results` turns every problem into a one-line `SubmissionError`.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from bmrl_bench.errors import SubmissionError
from bmrl_bench.fsutil import atomic_write_text
from bmrl_bench.tiers import DEFAULT_TIER, TIER_ALTERNATIVES, TIERS

__all__ = [
    "AlgorithmInfo",
    "CodeInfo",
    "DEFAULT_TIER",
    "DatasetRef",
    "HardwareInfo",
    "MAX_FILE_BYTES",
    "ProtocolInfo",
    "ResultsFile",
    "RunReturns",
    "SCHEMA_VERSION",
    "SuiteInfo",
    "canonical_json",
    "data_tier",
    "load_results",
    "meta_test_indices",
    "normalized_scores",
    "parse_results",
    "returns_array",
    "write_results",
]

SCHEMA_VERSION = 1

# Bounds against hostile files.
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_STR = 256
MAX_EPISODES = 10_000  # episode returns per RunReturns
MAX_RUN_RETURNS = 1_000
MAX_SEEDS = 200
MAX_DATASETS = 1_000
MAX_MAP_ITEMS = 256  # keys of config / constants / wall_time_s / aggregates
MAX_LIST_ITEMS = 1_000  # items of a list-valued config entry

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
# A tier other than replay is part of the id: bmrl/<suite>/task-<ii>-<tier>-v<N> (`bmrl_bench.tiers`).
DATASET_ID_PATTERN = rf"^bmrl/[a-z0-9-]+/task-\d{{2}}(?:-(?:{TIER_ALTERNATIVES}))?-v\d+$"
_DATASET_ID_RE = re.compile(
    rf"^bmrl/(?P<suite>[a-z0-9-]+)/task-(?P<task>\d{{2}})(?:-(?P<tier>{TIER_ALTERNATIVES}))?-v(?P<version>\d+)$")
_INT64 = 2**63


def _check_name(value: str) -> str:
    # The pattern already excludes '/' and '\\'; '..' would still match it ("a..b").
    if ".." in value:
        raise ValueError(f"'{value}' must not contain '..'")
    return value


# A name that can become part of a path: the pattern, and no "..".
Name = Annotated[str, Field(pattern=NAME_PATTERN), AfterValidator(_check_name)]
Str = Annotated[str, Field(max_length=MAX_STR)]
Int = Annotated[int, Field(ge=-_INT64, lt=_INT64)]
NonNegInt = Annotated[int, Field(ge=0, lt=_INT64)]


class _Model(BaseModel):
    # strict: no "1.0" -> 1.0 or true -> 1 coercion; the file must carry the right JSON types.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, str_max_length=MAX_STR)


def _check_each(field: str, value: dict[str, Any], check: Callable[[str, Any], Any]) -> dict[str, Any]:
    """Run `check(field.key, item)` on every item of a mapping; return the mapping."""
    for key, item in value.items():
        check(f"{field}.{key}", item)
    return value


def _check_finite(field: str, value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {value}")
    return value


def _check_json_value(field: str, value: Any, depth: int = 0, max_depth: int = 2, dicts: bool = False) -> None:
    """A JSON scalar (bool, int, finite float, short str, null) or a list (or, if `dicts`, an object) of them,
    nested at most `max_depth` levels."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise ValueError(f"{field} holds an integer out of the 64-bit range")
        return
    if isinstance(value, float):
        _check_finite(field, value)
        return
    if isinstance(value, str):
        if len(value) > MAX_STR:
            raise ValueError(f"{field} holds a string longer than {MAX_STR} characters")
        return
    if isinstance(value, list) and depth < max_depth:
        if len(value) > MAX_LIST_ITEMS:
            raise ValueError(f"{field} holds a list longer than {MAX_LIST_ITEMS} items")
        for item in value:
            _check_json_value(field, item, depth + 1, max_depth, dicts)
        return
    if isinstance(value, dict) and dicts and depth < max_depth:
        if len(value) > MAX_MAP_ITEMS:
            raise ValueError(f"{field} holds an object with more than {MAX_MAP_ITEMS} keys")
        for key, item in value.items():
            if len(key) > MAX_STR:
                raise ValueError(f"{field} holds a key longer than {MAX_STR} characters")
            _check_json_value(f"{field}.{key}", item, depth + 1, max_depth, dicts)
        return
    kinds = "JSON scalars, lists or objects" if dicts else "JSON scalars or lists of them"
    raise ValueError(f"{field} values must be {kinds} nested at most {max_depth} deep, got {type(value).__name__}")


class AlgorithmInfo(_Model):
    name: Name
    config: Annotated[dict[str, Any], Field(max_length=MAX_MAP_ITEMS)]
    config_name: Str

    @field_validator("config")
    @classmethod
    def _config_values(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_each("config", value, _check_json_value)


class DatasetRef(_Model):
    task_index: Annotated[int, Field(ge=0, le=99)]
    dataset_id: Annotated[str, Field(pattern=DATASET_ID_PATTERN, max_length=MAX_STR)]
    split: Literal["train", "test"]
    param: float
    checksum: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

    @field_validator("param")
    @classmethod
    def _finite_param(cls, value: float) -> float:
        return _check_finite("param", value)

    @model_validator(mode="after")
    def _id_matches_index(self) -> DatasetRef:
        m = _DATASET_ID_RE.match(self.dataset_id)
        if m is not None and int(m["task"]) != self.task_index:
            raise ValueError(f"dataset_id {self.dataset_id} does not belong to task_index {self.task_index}")
        return self


class SuiteInfo(_Model):
    name: Name
    version: NonNegInt
    datasets: Annotated[list[DatasetRef], Field(min_length=1, max_length=MAX_DATASETS)]
    # The data tier; files written before tiers existed have none and mean DEFAULT_TIER.
    tier: Name | None = None

    @field_validator("tier")
    @classmethod
    def _known_tier(cls, value: str | None) -> str | None:
        if value is not None and value not in TIERS:
            raise ValueError(f"unknown tier '{value}'; known tiers: {', '.join(TIERS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SuiteInfo:
        seen: set[int] = set()
        for d in self.datasets:
            if d.task_index in seen:
                raise ValueError(f"suite.datasets lists task_index {d.task_index} twice")
            seen.add(d.task_index)
            m = _DATASET_ID_RE.match(d.dataset_id)
            assert m is not None  # the field pattern checked it
            if m["suite"] != self.name or int(m["version"]) != self.version:
                raise ValueError(f"dataset_id {d.dataset_id} is not a dataset of suite {self.name} v{self.version}")
        if not any(d.split == "test" for d in self.datasets):
            raise ValueError("suite.datasets has no test task")
        return self


class ProtocolInfo(_Model):
    name: Name
    version: NonNegInt
    constants: Annotated[dict[str, int | float | str], Field(max_length=MAX_MAP_ITEMS)]

    @field_validator("constants")
    @classmethod
    def _finite_constants(cls, value: dict[str, int | float | str]) -> dict[str, int | float | str]:
        for key, item in value.items():
            if isinstance(item, float):
                _check_finite(f"constants.{key}", item)
        return value


class RunReturns(_Model):
    seed: Int
    task_index: Annotated[int, Field(ge=0, le=99)]
    episode_returns: Annotated[list[float], Field(min_length=1, max_length=MAX_EPISODES)]

    @field_validator("episode_returns")
    @classmethod
    def _finite_returns(cls, value: list[float]) -> list[float]:
        for i, r in enumerate(value):
            if not math.isfinite(r):
                raise ValueError(f"episode_returns must be finite numbers, got {r} at position {i}")
        return value


class CodeInfo(_Model):
    package_version: Str
    git_commit: Str | None
    dirty: bool


class HardwareInfo(_Model):
    platform: Str
    python: Str
    torch: Str
    cpu_count: Annotated[int, Field(ge=0, lt=2**31)]
    device: Str


class ResultsFile(_Model):
    schema_version: Literal[1]
    algorithm: AlgorithmInfo
    suite: SuiteInfo
    protocol: ProtocolInfo
    seeds: Annotated[list[Int], Field(min_length=1, max_length=MAX_SEEDS)]
    episodes_per_task: Annotated[int, Field(ge=1, le=MAX_EPISODES)]
    returns: Annotated[list[RunReturns], Field(min_length=1, max_length=MAX_RUN_RETURNS)]
    code: CodeInfo
    hardware: HardwareInfo
    wall_time_s: Annotated[dict[str, float], Field(max_length=MAX_MAP_ITEMS)]
    created: Annotated[datetime, Strict(False)]  # an ISO 8601 string in JSON
    # Written by `eval` for convenience; never trusted: `submit` recomputes every number.
    aggregates: Annotated[dict[str, Any], Field(max_length=MAX_MAP_ITEMS)] | None = None

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            dup = sorted({s for s in value if value.count(s) > 1})
            raise ValueError(f"seeds must be unique, {dup} appear more than once")
        return value

    @field_validator("wall_time_s")
    @classmethod
    def _finite_wall_time(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_each("wall_time_s", value, _check_finite)

    @field_validator("aggregates")
    @classmethod
    def _json_aggregates(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # Ignored, but still bounded and finite like everything else in the file.
        for key, item in (value or {}).items():
            _check_json_value(f"aggregates.{key}", item, max_depth=3, dicts=True)
        return value

    @model_validator(mode="after")
    def _returns_cover_seeds_and_tasks(self) -> ResultsFile:
        """Every (seed, test task) pair exactly once, each with `episodes_per_task` returns."""
        test = meta_test_indices(self)
        seeds = set(self.seeds)
        by_task: dict[int, set[int]] = {t: set() for t in test}
        for k, run in enumerate(self.returns):
            if run.task_index not in by_task:
                raise ValueError(f"returns.{k}: task_index {run.task_index} is not a test task in suite.datasets")
            if run.seed not in seeds:
                raise ValueError(f"returns.{k}: seed {run.seed} is not listed in seeds")
            if run.seed in by_task[run.task_index]:
                raise ValueError(f"returns.{k}: a second entry for seed {run.seed}, task {run.task_index}")
            if len(run.episode_returns) != self.episodes_per_task:
                raise ValueError(
                    f"returns.{k}: seed {run.seed}, task {run.task_index} has {len(run.episode_returns)} episode "
                    f"returns but episodes_per_task is {self.episodes_per_task}; every run needs the same episode count"
                )
            by_task[run.task_index].add(run.seed)
        for task, got in by_task.items():
            if got != seeds:
                raise ValueError(
                    f"returns for test task {task} cover seeds {sorted(got)} but seeds lists {sorted(seeds)};"
                    " every test task needs returns from every seed"
                )
        return self


# ---------------------------------------------------------------------------- reading and writing


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _validation_message(source: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    where = f"{loc}: " if loc else ""
    return _one_line(f"{source}: invalid results file: {where}{msg}; regenerate it with `bmrl-bench eval`")


def parse_results(data: Any, source: str = "results") -> ResultsFile:
    """Validate already-parsed JSON (`source` names it in messages); raises `SubmissionError`."""
    if not isinstance(data, dict):
        raise SubmissionError(
            f"{source}: invalid results file: the top level must be a JSON object; regenerate it with `bmrl-bench eval`"
        )
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
        raise SubmissionError(
            f"{source}: schema version {version} is not supported (this bmrl-bench reads {SCHEMA_VERSION});"
            " upgrade bmrl-bench or re-run eval"
        )
    try:
        return ResultsFile.model_validate(data)
    except ValidationError as e:
        raise SubmissionError(_validation_message(source, e)) from None
    except RecursionError:
        raise SubmissionError(
            f"{source}: invalid results file: nested too deeply; regenerate it with `bmrl-bench eval`"
        ) from None


def load_results(path: Path) -> ResultsFile:
    """Read and validate a results JSON; every problem is a one-line `SubmissionError`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # never read more than the limit, whatever stat says
    except OSError as e:
        raise SubmissionError(f"{path}: cannot read results file ({e.strerror or e}); check the path") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SubmissionError(
            f"{path}: results file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB;"
            " a results file from `bmrl-bench eval` is far smaller, regenerate it"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SubmissionError(f"{path}: results file is not UTF-8 text; regenerate it with `bmrl-bench eval`") from None
    except RecursionError:
        raise SubmissionError(
            f"{path}: results file is nested too deeply; regenerate it with `bmrl-bench eval`") from None
    except ValueError as e:  # JSONDecodeError, or an integer with too many digits
        raise SubmissionError(
            f"{path}: results file is not valid JSON ({_one_line(str(e))}); regenerate it with `bmrl-bench eval`"
        ) from None
    return parse_results(data, str(path))


def data_tier(results: ResultsFile) -> str:
    """The data tier the results were obtained on."""
    return results.suite.tier or DEFAULT_TIER


def canonical_json(results: ResultsFile, indent: int | None = 2) -> str:
    """Deterministic JSON of `results`: sorted keys, no NaN; the same model always gives the same text.

    Optional fields that are unset (`aggregates`, `suite.tier`) are left out, so files
    written before they existed keep their bytes."""
    exclude: dict[str, Any] = {}
    if results.aggregates is None:
        exclude["aggregates"] = True
    if results.suite.tier is None:
        exclude["suite"] = {"tier"}
    data = results.model_dump(mode="json", exclude=exclude or None)
    return json.dumps(data, sort_keys=True, indent=indent, allow_nan=False) + "\n"


def write_results(results: ResultsFile, path: Path) -> None:
    """Write `results` as JSON, atomically (temp file + rename)."""
    atomic_write_text(Path(path), canonical_json(results))


# ---------------------------------------------------------------------------- arrays


def meta_test_indices(results: ResultsFile) -> list[int]:
    """Task indices of the test split, in the order of `suite.datasets`."""
    return [d.task_index for d in results.suite.datasets if d.split == "test"]


def returns_array(results: ResultsFile) -> np.ndarray:
    """Episode returns as float64 `(num_seeds, num_test_tasks, episodes_per_task)`.

    Seeds in ascending order; tasks in the order of the test datasets in `suite.datasets`.
    """
    seeds = sorted(results.seeds)
    tasks = meta_test_indices(results)
    row = {s: i for i, s in enumerate(seeds)}
    col = {t: j for j, t in enumerate(tasks)}
    out = np.empty((len(seeds), len(tasks), results.episodes_per_task), dtype=np.float64)
    for run in results.returns:
        out[row[run.seed], col[run.task_index]] = run.episode_returns
    return out


def normalized_scores(results: ResultsFile, refs: Mapping[int, tuple[float, float]]) -> np.ndarray:
    """Scores `(num_seeds, num_test_tasks)`: each run's mean episode return per task, normalized.

    `refs[task_index] = (ref_min, ref_max)`; tasks as in `returns_array`.
    """
    from bmrl_bench.metrics import normalize

    tasks = meta_test_indices(results)
    missing = [t for t in tasks if t not in refs]
    if missing:
        raise SubmissionError(f"no reference scores for test task(s) {missing}; rebuild the suite's reference scores")
    lo = np.array([refs[t][0] for t in tasks], dtype=np.float64)
    hi = np.array([refs[t][1] for t in tasks], dtype=np.float64)
    return normalize(returns_array(results).mean(axis=2), lo, hi)
