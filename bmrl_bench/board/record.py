"""A verified entry's record on the board: `checkpoints/<entry id>/verification.json`.

It keeps the board's own returns (scored instead of the submitted ones), the agreement
rule they passed, and the sha256 of every checkpoint file. The checkpoints sit beside
it, or, when an entry's exceed `STORE_LIMIT_BYTES` (too large for git), in
`archive/<entry id>/` (gitignored; the hashes still pin them).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from bmrl_bench.board.agreement import compare, tolerance
from bmrl_bench.board.model import Verification
from bmrl_bench.board.store import ARCHIVE, CHECKPOINTS, RECORD, make_public
from bmrl_bench.errors import SubmissionError
from bmrl_bench.results import CodeInfo, ResultsFile, RunReturns

RECORD_FORMAT = 1
STORE_LIMIT_BYTES = 32 * 1024 * 1024  # an entry's checkpoints up to this go into git (checkpoints/), larger to archive/


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
            if not file.is_file() or sha256(file.read_bytes()) != f.sha256:
                raise SubmissionError(f"{path}: checkpoint file {f.path} is missing or altered; restore it from git")
    return Verification(path, record.max_abs_diff, record.wall_time_s, record.checkpoints_stored), list(record.returns)
