"""The verified tier: the board re-runs a submission from its checkpoints and scores its own returns.

`bmrl-bench eval --checkpoints DIR` saves each seed's fitted algorithm in
`DIR/<algorithm>-<suite>-seed<N>/` (config.json + weights.safetensors, weights only).
`verify()` checks that those checkpoints belong to the results file (algorithm, config,
seed), re-runs the file's protocol with each of them on the same episode seeds through
the harness's own scoring code (`harness.reevaluate`), and compares every episode:
|submitted - re-run| <= abs + rel * |re-run| with the family's `TOLERANCE`.

The tolerance comes from a measurement, `benchmarks/verify_drift.py`: the same checkpoints
re-scored with 1 and 2 torch threads, in-process and in a worker process, against the
returns `eval` wrote.
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from bmrl_bench.board.model import Verification
from bmrl_bench.board.store import ARCHIVE, CHECKPOINTS, RECORD, make_public
from bmrl_bench.errors import BmrlError, SubmissionError
from bmrl_bench.results import CodeInfo, ResultsFile, RunReturns

# family -> (abs, rel): |submitted - re-run| <= abs + rel * |re-run|, per episode. Families not listed: exact.
TOLERANCE: dict[str, tuple[float, float]] = {
    "pointgoal": (0.0, 0.0),
    "halfcheetah-vel": (0.0, 0.0),
    "hopper-vel": (0.0, 0.0),
}
STORE_LIMIT_BYTES = 6 * 1024 * 1024  # an entry's checkpoints up to this go into git (checkpoints/), larger to archive/
MAX_CHECKPOINT_BYTES = 512 * 1024 * 1024  # per seed folder: more is not a checkpoint of these algorithms
RECORD_FORMAT = 1


def tolerance(family: str | None) -> tuple[float, float]:
    return TOLERANCE.get(family or "", (0.0, 0.0))


def agrees(submitted: float, rerun: float, tol: tuple[float, float]) -> bool:
    return abs(submitted - rerun) <= tol[0] + tol[1] * abs(rerun)


# ---------------------------------------------------------------------------- the record


class CheckpointFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    # "<seed folder>/<file>", relative to the record's folder; never "..", never absolute
    path: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,127}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}){1,4}$")]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: Annotated[int, Field(ge=0)]


class VerificationRecord(BaseModel):
    """`checkpoints/<entry id>/verification.json`: what the board ran and got."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    format: Literal[1]
    entry: Annotated[str, Field(max_length=300)]
    content_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    family: str | None
    tolerance_abs: float
    tolerance_rel: float
    max_abs_diff: float
    returns: Annotated[list[RunReturns], Field(min_length=1, max_length=1000)]
    checkpoints: Annotated[list[CheckpointFile], Field(min_length=1, max_length=2000)]
    checkpoints_stored: bool
    wall_time_s: float
    code: CodeInfo
    platform: Annotated[str, Field(max_length=256)]
    verified_at: Annotated[datetime, Strict(False)]


@dataclass(frozen=True)
class Verified:
    """A passed verification, not yet on the board."""

    record: VerificationRecord
    files: dict[str, bytes]  # "<seed folder>/<file>" -> bytes, as hashed in the record


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------- verifying a submission


def _checkpoint_files(results: ResultsFile, checkpoints: Path, source: str) -> dict[str, bytes]:
    """Each seed's checkpoint folder, checked against the results file: algorithm, config and seed."""
    from bmrl_bench.harness import checkpoint_name

    files: dict[str, bytes] = {}
    for seed in results.seeds:
        name = checkpoint_name(results.algorithm.name, results.suite.name, seed)
        folder = checkpoints / name
        where = f"{source}: checkpoint {folder}"
        if not folder.is_dir():
            raise SubmissionError(
                f"{where} is missing; pass the folder `bmrl-bench eval --checkpoints DIR` wrote for these results"
            )
        try:
            meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            algorithm, config, ckpt_seed = meta["algorithm"], meta["config"], meta["seed"]
        except (OSError, ValueError, KeyError, TypeError):
            raise SubmissionError(f"{where} has no readable config.json; it is not a bmrl-bench checkpoint") from None
        if algorithm != results.algorithm.name:
            raise SubmissionError(f"{where} is of algorithm '{algorithm}', the results of '{results.algorithm.name}'")
        if ckpt_seed != seed:
            raise SubmissionError(f"{where} was trained with seed {ckpt_seed}, not {seed}; pass the checkpoints of "
                                  "these results")
        if config != results.algorithm.config:
            differ = sorted(k for k in set(config) | set(results.algorithm.config)
                            if config.get(k) != results.algorithm.config.get(k))
            raise SubmissionError(
                f"{where} was trained with a different config than the results record ({', '.join(differ[:5])} differ);"
                " pass the checkpoints of these results"
            )
        paths = sorted(f for f in folder.rglob("*") if f.is_file())
        if sum(f.stat().st_size for f in paths) > MAX_CHECKPOINT_BYTES:
            raise SubmissionError(f"{where} is larger than {MAX_CHECKPOINT_BYTES >> 20} MB; it is not a checkpoint of "
                                  "this algorithm")
        for f in paths:
            files[f"{name}/{f.relative_to(folder).as_posix()}"] = f.read_bytes()
    return files


def _check_installed(name: str, source: str) -> None:
    from bmrl_bench.algorithms import available_algorithms, get_algorithm

    try:
        get_algorithm(name)
    except BmrlError:
        known = ", ".join(available_algorithms()) or "none"
        raise SubmissionError(
            f"{source}: algorithm '{name}' is not installed on this board's machine (installed: {known}); install its"
            " package to verify it, or submit without --checkpoints as self-reported"
        ) from None
    except ImportError as e:  # registered, but its package or a dependency is missing
        raise SubmissionError(
            f"{source}: algorithm '{name}' cannot be loaded on this board's machine ({e}); install what it needs to "
            "verify it, or submit without --checkpoints as self-reported"
        ) from None


def _check_local_build(results: ResultsFile, local_checksums: dict[str, str], source: str) -> None:
    """The re-run reads this machine's datasets (references, offline context): they must be those the results used."""
    name = results.suite.name
    for d in results.suite.datasets:
        local = local_checksums.get(d.dataset_id)
        if local is None:
            raise SubmissionError(
                f"{source}: suite {name} is not built on this machine ({d.dataset_id} is missing), so the checkpoints"
                f" cannot be re-run; run `bmrl-bench datasets build {name}` first"
            )
        if local != d.checksum:
            raise SubmissionError(
                f"{source}: this machine's build of {d.dataset_id} (checksum {local[:12]}...) is not the one the "
                f"results used ({d.checksum[:12]}...); verify on a machine with that build"
            )


class Disagreement(NamedTuple):
    seed: int
    task_index: int
    episode: int
    submitted: float
    rerun: float  # NaN where the re-run has no such episode
    allowed: float

    def __str__(self) -> str:
        return (
            f"seed {self.seed}, task {self.task_index:02d}, episode {self.episode}: submitted {self.submitted!r},"
            f" re-run {self.rerun!r} (difference {abs(self.submitted - self.rerun):.3g}, allowed {self.allowed:.3g})"
        )


def compare(
    results: ResultsFile, board: Sequence[RunReturns], tol: tuple[float, float]
) -> tuple[float, Disagreement | None]:
    """(max |submitted - re-run| over every episode, the first episode outside the tolerance or None)."""
    mine = {(r.seed, r.task_index): r.episode_returns for r in board}
    worst = 0.0
    for run in sorted(results.returns, key=lambda r: (r.seed, r.task_index)):
        rerun = mine.get((run.seed, run.task_index), [])
        for e, a in enumerate(run.episode_returns):
            b = rerun[e] if e < len(rerun) else math.nan
            if not agrees(a, b, tol):
                return worst, Disagreement(run.seed, run.task_index, e, a, b, tol[0] + tol[1] * abs(b))
            worst = max(worst, abs(a - b))
    return worst, None


def verify(
    results: ResultsFile,
    checkpoints: Path,
    entry: str,
    digest: str,
    local_checksums: dict[str, str],
    source: str,
    executor: Any = None,
    progress: Any = None,
    unit_cpus: int = 1,
) -> Verified:
    """Re-run `results` from the checkpoints in `checkpoints`; refuses (one line) unless every episode agrees."""
    from bmrl_bench.harness import git_commit, reevaluate
    from bmrl_bench.suites import get_card

    checkpoints = Path(checkpoints)
    if not checkpoints.is_dir():
        raise SubmissionError(
            f"{source}: --checkpoints {checkpoints} is not a folder; pass the folder `bmrl-bench eval --checkpoints "
            "DIR` wrote"
        )
    card = get_card(results.suite.name)
    if card.version != results.suite.version:
        raise SubmissionError(
            f"{source}: suite {card.name} is v{card.version} on this machine, the results are of "
            f"v{results.suite.version};"
            " verify with the bmrl-bench the results were made with"
        )
    _check_installed(results.algorithm.name, source)
    files = _checkpoint_files(results, checkpoints, source)
    _check_local_build(results, local_checksums, source)
    try:
        run = reevaluate(results, checkpoints, executor=executor, progress=progress, unit_cpus=unit_cpus)
    except BmrlError as e:
        raise SubmissionError(f"{source}: the checkpoints could not be re-run: {' '.join(str(e).split())}") from None
    for rel, data in files.items():  # what was re-run is what gets stored
        if _sha((checkpoints / rel).read_bytes()) != _sha(data):
            raise SubmissionError(f"{source}: checkpoint file {checkpoints / rel} changed during the re-run; submit "
                                  "again")
    board = [RunReturns(**r) for r in run.returns]
    tol = tolerance(card.family)
    worst, differs = compare(results, board, tol)
    if differs is not None:
        raise SubmissionError(
            f"{source}: the board's re-run from the checkpoints disagrees at {differs} on {card.family};"
            " submit the returns these checkpoints produce"
        )
    commit, dirty = git_commit()
    from bmrl_bench import __version__

    record = VerificationRecord(
        format=RECORD_FORMAT,
        entry=entry,
        content_hash=digest,
        family=card.family,
        tolerance_abs=tol[0],
        tolerance_rel=tol[1],
        max_abs_diff=worst,
        returns=board,
        checkpoints=[{"path": rel, "sha256": _sha(data), "bytes": len(data)} for rel, data in sorted(files.items())],
        checkpoints_stored=sum(len(d) for d in files.values()) <= STORE_LIMIT_BYTES,
        wall_time_s=round(run.wall_time_s, 3),
        code=CodeInfo(package_version=__version__, git_commit=commit, dirty=dirty),
        platform=platform.platform()[:256],
        verified_at=datetime.now(timezone.utc).replace(microsecond=0),
    )
    return Verified(record, files)


def stage(board_dir: Path, verified: Verified) -> tuple[Path, Path, Path | None]:
    """Write the record (and the checkpoints) into a hidden folder on the board.

    Returns (staged, final, archived): `os.replace(staged, final)` files it; checkpoints too
    large for git are staged for archive/ instead (`archived`, or None)."""
    from bmrl_bench.fsutil import temp_dir

    record = verified.record
    final = Path(board_dir) / CHECKPOINTS / record.entry
    staged = temp_dir(final.parent, prefix=f".{final.name}.")
    for_files = staged
    archived = None
    if not record.checkpoints_stored:
        archived = temp_dir(Path(board_dir) / ARCHIVE / Path(record.entry).parent, prefix=f".{final.name}.")
        for_files = archived
    for rel, data in verified.files.items():
        (for_files / rel).parent.mkdir(parents=True, exist_ok=True)
        (for_files / rel).write_bytes(data)
    (staged / RECORD).write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
    for folder in (staged, archived):
        if folder is not None:
            make_public(folder)
    return staged, final, archived


# ---------------------------------------------------------------------------- reading a verified entry back


def read_record(
    board_dir: Path, entry: str, results: ResultsFile, digest: str, family: str | None
) -> tuple[Verification, list[RunReturns]] | None:
    """The verification of an entry on the board (None: self-reported), re-checked against the submission."""
    folder = Path(board_dir) / CHECKPOINTS / entry
    path = folder / RECORD
    if not path.exists():
        return None
    try:
        record = VerificationRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as e:
        reason = " ".join(str(e).split())[:200]
        raise SubmissionError(
            f"{path}: unreadable verification record ({reason}); restore it or remove its folder") from None
    if record.entry != entry or record.content_hash != digest:
        raise SubmissionError(f"{path}: the record is of another entry ({record.entry}); restore it or remove its "
                              "folder")
    _, differs = compare(results, record.returns, tolerance(family))
    if differs is not None or len(record.returns) != len(results.returns):
        where = f" at {differs}" if differs is not None else ""
        raise SubmissionError(f"{path}: the record's returns disagree with the submission{where}; restore it or remove "
                              "its folder")
    if record.checkpoints_stored:
        for f in record.checkpoints:
            file = folder / f.path
            if not file.is_file() or _sha(file.read_bytes()) != f.sha256:
                raise SubmissionError(f"{path}: checkpoint file {f.path} is missing or altered; restore it from git")
    return Verification(path, record.max_abs_diff, record.wall_time_s, record.checkpoints_stored), list(record.returns)
