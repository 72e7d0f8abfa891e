"""`submit()` files a results file on the board (self-reported, or verified from its checkpoints);
`load_board()` reads every entry back, re-checked and re-scored."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from bmrl_bench.board import store, verify
from bmrl_bench.board.model import Entry, Published, SuiteReference, Verification
from bmrl_bench.board.record import read_record, stage
from bmrl_bench.board.scoring import score_entry
from bmrl_bench.board.validate import (
    check_all,
    check_return_bounds,
    check_tasks,
    content_hash,
    data_source_on_board,
    reference,
)
from bmrl_bench.errors import SubmissionError
from bmrl_bench.fsutil import replace_dir
from bmrl_bench.results import canonical_json, data_tier, load_results


def submit(
    path: Path,
    board_dir: Path,
    published: Published,
    *,
    checkpoints: Path | None = None,
    executor: Any = None,
    progress: Any = None,
    unit_cpus: int = 1,
) -> Entry:
    """Validate `path`, recompute its scores and file it under `board_dir/submissions/`.

    With `checkpoints` (the folder `bmrl-bench eval --checkpoints DIR` wrote) the board
    re-runs every seed from its checkpoint on `executor` (default: in this process) and
    files the entry as verified, scored with its own returns, if every episode agrees
    with the file; an entry already on the board as self-reported becomes verified.

    Raises `SubmissionError` (one line; `board_dir` untouched) for an invalid or tampered
    file, a suite / task / protocol / seed mismatch, an impossible return, unknown dataset
    checksums, a duplicate, or checkpoints that do not reproduce the returns. Data matching
    only this machine's build is accepted as `local-build`. Does not re-render the board.
    """
    path, board_dir = Path(path), Path(board_dir)
    source = str(path)
    if checkpoints is not None and not Path(checkpoints).is_dir():  # before anything is read: a usage error
        raise SubmissionError(
            f"{source}: --checkpoints {checkpoints} is not a folder;"
            " pass the folder `bmrl-bench eval --checkpoints DIR` wrote"
        )
    results = load_results(path)  # schema, bounds, finiteness, seeds x tasks x episodes consistency
    ref = reference(published, results, source)
    data = check_all(results, ref, source)
    digest = content_hash(results)
    entry_id = store.entry_id(results, digest)
    target = store.submission_path(board_dir, results, digest)
    final_record = store.record_dir(board_dir, entry_id)

    def duplicate(existing: Path) -> SubmissionError:
        status = "verified" if final_record.exists() else "self-reported"
        return SubmissionError(
            f"{source}: duplicate submission: the same algorithm, config and returns are already on the board"
            f" as {existing.relative_to(board_dir).as_posix()} ({status}); nothing to do"
        )

    existing = store.existing_with_hash(board_dir, digest)
    if existing is not None and (checkpoints is None or final_record.exists()):
        raise duplicate(existing)
    if existing is not None and existing != target:
        raise SubmissionError(f"{source}: {existing} holds the same returns under another name; restore the board")
    if checkpoints is None:
        entry = score_entry(results, ref, data, target, entry_id, digest)  # before writing: a failure leaves no file
        stored = results.model_copy(update={"aggregates": None})  # unverified numbers never reach the board
        store.write_new(target, canonical_json(stored), lambda: duplicate(target))
        return entry

    verified = verify.verify(results, Path(checkpoints), entry_id, digest, ref.local_checksums, source,
                             executor=executor, progress=progress, unit_cpus=unit_cpus)
    ran = verified.record
    verification = Verification(final_record / store.RECORD, ran.max_abs_diff, ran.wall_time_s, ran.checkpoints_stored)
    entry = score_entry(results, ref, data, target, entry_id, digest, verification, ran.returns)
    staged, final, archived = stage(board_dir, verified)
    try:
        if existing is None:
            stored = results.model_copy(update={"aggregates": None})
            store.write_new(target, canonical_json(stored), lambda: duplicate(target))
        # The submission first, the record last: a crash in between leaves a self-reported entry, never a
        # record without its submission.
        if archived is not None:
            replace_dir(archived, Path(board_dir) / store.ARCHIVE / entry_id)
        os.replace(staged, final)  # fails (nothing replaced) if a record appeared meanwhile
    finally:
        for folder in (staged, archived):
            if folder is not None and folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
    return entry


def load_board(board_dir: Path, published: Published) -> list[Entry]:
    """Every submission on the board, re-validated and re-scored, in file-name order.

    Raises `SubmissionError` naming a submission or verification record that was altered."""
    board_dir = Path(board_dir)
    root = board_dir / store.SUBMISSIONS
    if not root.is_dir():
        return []
    refs: dict[tuple[str, int, str], SuiteReference] = {}
    entries = []
    for path in sorted(root.glob("*/*/*.json")):
        results = load_results(path)
        digest = content_hash(results)
        expected = store.submission_path(board_dir, results, digest)
        if path.relative_to(board_dir) != expected.relative_to(board_dir):
            raise SubmissionError(
                f"{path}: the file does not match its content (it should be"
                f" {expected.relative_to(board_dir).as_posix()}); restore it or remove it and submit the results again"
            )
        key = (results.suite.name, results.suite.version, data_tier(results))  # one reference per data tier
        if key not in refs:
            refs[key] = reference(published, results, str(path))
        ref = refs[key]
        check_tasks(results, ref, str(path))
        check_return_bounds(results, ref, str(path))
        entry_id = store.entry_id(results, digest)
        verified = read_record(board_dir, entry_id, results, digest, ref.family)
        verification, board_returns = verified if verified is not None else (None, None)
        entries.append(score_entry(results, ref, data_source_on_board(results, ref), path, entry_id, digest,
                                   verification, board_returns))
    return entries
