"""The verified tier: the board re-runs a submission from its checkpoints and scores its own returns.

`bmrl-bench eval --checkpoints DIR` saves each seed's fitted algorithm in
`DIR/<algorithm>-<suite>-seed<N>/` (config.json + weights.safetensors, weights only).
`verify()` checks that those checkpoints belong to the results file (algorithm, config,
seed) and that this machine has the datasets the results used, re-runs the file's
protocol with each of them on the same episode seeds through the harness's own scoring
code (`harness.reevaluate`, on any executor), and compares every episode
(`agreement`). What it returns becomes the entry's record (`record`).
"""
from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bmrl_bench.board import record as rec
from bmrl_bench.board.agreement import compare, tolerance
from bmrl_bench.errors import BmrlError, SubmissionError
from bmrl_bench.results import CodeInfo, ResultsFile, RunReturns

MAX_CHECKPOINT_BYTES = 512 * 1024 * 1024  # per seed folder: more is not a checkpoint of these algorithms


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
) -> rec.Verified:
    """Re-run `results` from the checkpoints in `checkpoints`; refuses (one line) unless every episode agrees."""
    from bmrl_bench.harness import git_commit, reevaluate
    from bmrl_bench.suites import get_card

    checkpoints = Path(checkpoints)  # a folder: submit() checked
    card = get_card(results.suite.name)
    if card.version != results.suite.version:
        raise SubmissionError(
            f"{source}: suite {card.name} is v{card.version} on this machine, the results are of"
            f" v{results.suite.version}; verify with the bmrl-bench the results were made with"
        )
    _check_installed(results.algorithm.name, source)
    files = _checkpoint_files(results, checkpoints, source)
    _check_local_build(results, local_checksums, source)
    try:
        run = reevaluate(results, checkpoints, executor=executor, progress=progress, unit_cpus=unit_cpus)
    except BmrlError as e:
        raise SubmissionError(f"{source}: the checkpoints could not be re-run: {' '.join(str(e).split())}") from None
    for rel, data in files.items():  # what was re-run is what gets stored
        if rec.sha256((checkpoints / rel).read_bytes()) != rec.sha256(data):
            raise SubmissionError(f"{source}: checkpoint file {checkpoints / rel} changed during the re-run;"
                                  " submit again")
    board = [RunReturns(**r) for r in run.returns]
    tol = tolerance(card.family)
    worst, differs = compare(results, board, tol)
    if differs is not None:
        raise SubmissionError(
            f"{source}: the board's re-run from the checkpoints disagrees at {differs} on {card.family};"
            " submit the returns these checkpoints produce"
        )
    commit, dirty = git_commit()
    from bmrl_bench.version import __version__

    record = rec.VerificationRecord(
        format=rec.RECORD_FORMAT,
        entry=entry,
        content_hash=digest,
        family=card.family,
        tolerance_abs=tol[0],
        tolerance_rel=tol[1],
        max_abs_diff=worst,
        returns=board,
        checkpoints=[rec.CheckpointFile(path=rel, sha256=rec.sha256(data), bytes=len(data))
                     for rel, data in sorted(files.items())],
        checkpoints_stored=sum(len(d) for d in files.values()) <= rec.STORE_LIMIT_BYTES,
        wall_time_s=round(run.wall_time_s, 3),
        code=CodeInfo(package_version=__version__, git_commit=commit, dirty=dirty),
        platform=platform.platform()[:256],
        verified_at=datetime.now(UTC).replace(microsecond=0),
    )
    return rec.Verified(record, files)
