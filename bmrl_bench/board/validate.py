"""Checks of a results file against what the board trusts; each refusal is one line naming the fix.

Every check runs before anything is written or computed, so a refused file leaves the
board as it was.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from bmrl_bench.board.model import DataSource, Published, SuiteReference
from bmrl_bench.errors import BmrlError, SubmissionError
from bmrl_bench.results import DEFAULT_TIER, DatasetRef, ResultsFile, data_tier
from bmrl_bench.tiers import build_command


def content_hash(results: ResultsFile) -> str:
    """sha256 of the canonical JSON of the algorithm name, its config and every episode return.

    Independent of the order of `returns` and of everything else in the file (dates,
    hardware, the ignored `aggregates`): the same experiment submitted twice has one hash.
    A data tier other than the default is part of it (files without one keep their hash).
    """
    runs = sorted((r.seed, r.task_index, list(r.episode_returns)) for r in results.returns)
    payload = {"algorithm": results.algorithm.name, "config": results.algorithm.config, "returns": runs}
    if results.suite.tier is not None:
        payload["tier"] = results.suite.tier
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def reference(published: Published, results: ResultsFile, source: str) -> SuiteReference:
    """What the board trusts about the file's suite, version and data tier (asked with a tier only when not replay)."""
    name, version, tier = results.suite.name, results.suite.version, data_tier(results)
    try:
        ref = published(name, version) if tier == DEFAULT_TIER else published(name, version, tier)
    except (BmrlError, LookupError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise SubmissionError(
            f"{source}: suite {name} v{version} is not on the leaderboard ({reason}); evaluate on a published suite"
        ) from None
    if ref.name != name or ref.version != version:
        raise SubmissionError(
            f"{source}: the leaderboard answered for suite {ref.name} v{ref.version} when asked for {name} v{version};"
            " fix the suite reference"
        )
    return ref


def check_protocol(results: ResultsFile, ref: SuiteReference, source: str) -> None:
    p = results.protocol
    if p.name not in ref.protocol_constants:
        known = ", ".join(sorted(ref.protocol_constants)) or "none"
        raise SubmissionError(
            f"{source}: protocol '{p.name}' is not a protocol of suite {ref.name} v{ref.version} (known: {known});"
            " re-run eval with --protocol set to one of them"
        )
    version, constants = ref.protocol_constants[p.name]
    if p.version != version:
        raise SubmissionError(
            f"{source}: protocol '{p.name}' is v{p.version} in the file but v{version} on the leaderboard;"
            " re-run eval with the current bmrl-bench"
        )
    for key in sorted(set(constants) | set(p.constants)):
        if key not in constants:
            problem = f"is {p.constants[key]!r} but the suite's protocol has no such constant"
        elif key not in p.constants:
            problem = f"is missing but the suite's is {constants[key]!r}"
        elif p.constants[key] != constants[key] or isinstance(p.constants[key], str) != isinstance(constants[key], str):
            problem = f"is {p.constants[key]!r} but the suite's is {constants[key]!r}"
        else:
            continue
        raise SubmissionError(
            f"{source}: protocol '{p.name}' v{p.version} constant '{key}' {problem}; re-run eval without changing the "
            "protocol"
        )


def check_tasks(results: ResultsFile, ref: SuiteReference, source: str) -> None:
    mine = {d.task_index: d for d in results.suite.datasets if d.split == "test"}
    theirs = {t.task_index: t for t in ref.test_tasks}
    for index, d in sorted(mine.items()):
        t = theirs.get(index)
        if t is None or t.dataset_id != d.dataset_id:
            known = ", ".join(f"{i:02d}" for i in sorted(theirs))
            raise SubmissionError(
                f"{source}: task {index:02d} ({d.dataset_id}) is not a test task of suite {ref.name} v{ref.version}"
                f" (test tasks: {known}); re-run eval on the published suite"
            )
        if not np.isclose(d.param, t.param, rtol=1e-9, atol=1e-9):
            raise SubmissionError(
                f"{source}: test task {index:02d} has param {d.param:g} but the suite's is {t.param:g};"
                " re-run eval on the published suite"
            )
    for index, t in sorted(theirs.items()):
        if index not in mine:
            raise SubmissionError(
                f"{source}: test task {index:02d} ({t.dataset_id}) is missing; the leaderboard needs returns on every"
                f" test task of suite {ref.name} v{ref.version}: re-run eval on the whole suite"
            )


def check_seeds(results: ResultsFile, ref: SuiteReference, source: str) -> None:
    n = len(results.seeds)
    if n < ref.min_seeds:
        raise SubmissionError(
            f"{source}: {n} seed(s) {sorted(results.seeds)}, but the leaderboard needs at least {ref.min_seeds};"
            f" re-run eval with --seeds 0-{ref.min_seeds - 1} or more"
        )


def check_return_bounds(results: ResultsFile, ref: SuiteReference, source: str) -> None:
    """Every episode return must be one some policy can get: within the family's bounds for the task."""
    if ref.family is None or ref.episode_length is None:
        return
    from bmrl_bench.families import get_family

    family = get_family(ref.family)
    bounds = {t.task_index: family.return_bounds(ref.episode_length, t.param) for t in ref.test_tasks}
    for run in sorted(results.returns, key=lambda r: (r.seed, r.task_index)):
        low, high = bounds[run.task_index]
        for e, r in enumerate(run.episode_returns):
            if not low <= r <= high:
                raise SubmissionError(
                    f"{source}: seed {run.seed}, task {run.task_index:02d}, episode {e}: return {r:.6g} is impossible "
                    f"on {ref.family} with {ref.episode_length} steps (every return lies in [{low:.6g}, {high:.6g}]);"
                    " submit the returns `bmrl-bench eval` wrote"
                )


def _is_published(d: DatasetRef, ref: SuiteReference) -> bool:
    return d.checksum in ref.published_checksums.get(d.dataset_id, set())


def check_checksums(results: ResultsFile, ref: SuiteReference, source: str) -> DataSource:
    """Every dataset must be a published build or this machine's build; which decides the data source."""
    listed = {d.dataset_id for d in results.suite.datasets}
    for dataset_id in sorted((set(ref.published_checksums) | set(ref.local_checksums)) - listed):
        raise SubmissionError(
            f"{source}: suite.datasets lacks {dataset_id}; the leaderboard checks every dataset of suite"
            f" {ref.name} v{ref.version}: re-run eval"
        )
    data: DataSource = "reference"
    for d in results.suite.datasets:
        if _is_published(d, ref):
            continue
        if ref.local_checksums.get(d.dataset_id) == d.checksum:
            data = "local-build"
            continue
        raise SubmissionError(
            f"{source}: dataset {d.dataset_id} has checksum {d.checksum[:12]}..., which matches neither a published"
            f" build nor the local build of suite {ref.name} v{ref.version}; rebuild it with"
            f" {build_command(ref.name, data_tier(results))} (or get the published datasets) and re-run eval"
        )
    return data


def data_source_on_board(results: ResultsFile, ref: SuiteReference) -> DataSource:
    """At render time: reference data iff every checksum is published; anything else was a local build
    when it was accepted (submit refuses all other files)."""
    return "reference" if all(_is_published(d, ref) for d in results.suite.datasets) else "local-build"


def check_all(results: ResultsFile, ref: SuiteReference, source: str) -> DataSource:
    """Every check of a new submission, in the order the user would fix them; returns the data source."""
    check_protocol(results, ref, source)
    check_tasks(results, ref, source)
    check_seeds(results, ref, source)
    data = check_checksums(results, ref, source)
    check_return_bounds(results, ref, source)
    return data
