"""Every number on the board, recomputed from episode returns: one entry's scores, then ranked tables."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from bmrl_bench.board.model import (
    BOOTSTRAP_REPS,
    BOOTSTRAP_SEED,
    DEFAULT_TIER,
    DataSource,
    Entry,
    ReferenceTask,
    SuiteReference,
    Verification,
)
from bmrl_bench.results import ResultsFile, RunReturns, data_tier, meta_test_indices, normalized_scores


def score_entry(
    results: ResultsFile,
    ref: SuiteReference,
    data: DataSource,
    path: Path,
    entry_id: str,
    digest: str,
    verification: Verification | None = None,
    board_returns: Sequence[RunReturns] | None = None,
) -> Entry:
    """The entry of `results`: normalized with the board's references, aggregated with bootstrap CIs.

    A verified entry is scored from `board_returns`, the board's own re-run."""
    from bmrl_bench.metrics import aggregate

    scored = results if board_returns is None else results.model_copy(update={"returns": list(board_returns)})
    refs = {t.task_index: (t.ref_min, t.ref_max) for t in ref.test_tasks}
    file_order = meta_test_indices(results)
    scores = normalized_scores(scored, refs)  # (seeds, tasks) in the file's task order
    scores = scores[:, [file_order.index(t.task_index) for t in ref.test_tasks]]  # -> the suite's order
    agg = aggregate(scores, reps=BOOTSTRAP_REPS, seed=BOOTSTRAP_SEED)
    return Entry(
        path=path,
        entry_id=entry_id,
        algorithm=results.algorithm.name,
        config_name=results.algorithm.config_name,
        suite=ref.name,
        suite_version=ref.version,
        tier=data_tier(results),
        protocol=results.protocol.name,
        protocol_version=results.protocol.version,
        data=data,
        content_hash=digest,
        seeds=tuple(sorted(results.seeds)),
        episodes_per_task=results.episodes_per_task,
        tasks=tuple(ref.test_tasks),
        scores=scores,
        aggregates={k: (float(p), float(lo), float(hi)) for k, (p, lo, hi) in agg.items()},
        per_task=tuple(float(x) for x in scores.mean(axis=0)),
        created=results.created,
        git_commit=results.code.git_commit,
        dirty=results.code.dirty,
        verification=verification,
    )


class Row(NamedTuple):
    rank: str  # "1", "=1" (CI overlaps the entry above), ...
    entry: Entry
    p_next: float | None  # probability of improvement over the next entry


@dataclass(frozen=True)
class Table:
    """The entries comparable with each other: one suite version, data tier, protocol version and data source."""

    suite: str
    suite_version: int
    tier: str
    protocol: str
    protocol_version: int
    data: DataSource
    table_id: str
    rows: list[Row]

    @property
    def tasks(self) -> tuple[ReferenceTask, ...]:
        return self.rows[0].entry.tasks

    @property
    def title(self) -> str:
        data = "reference data" if self.data == "reference" else "LOCAL-BUILD data"
        protocol = f"{self.protocol} v{self.protocol_version}"
        return f"{self.suite} v{self.suite_version} · {self.tier} tier · {protocol} · {data}"


def _overlap(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
    return a[1] <= b[2] and b[1] <= a[2]


def ranked(entries: Sequence[Entry]) -> list[Row]:
    """By IQM (then mean, name, hash); `=N` where the IQM CI overlaps the entry directly above."""
    from bmrl_bench.metrics import probability_of_improvement

    order = sorted(entries, key=lambda e: (-e.iqm[0], -e.aggregates["mean"][0], e.algorithm, e.content_hash))
    rows: list[Row] = []
    rank = 0
    for i, e in enumerate(order):
        tie = i > 0 and _overlap(e.iqm, order[i - 1].iqm)
        if not tie:
            rank = i + 1
        p = probability_of_improvement(e.scores, order[i + 1].scores) if i + 1 < len(order) else None
        rows.append(Row(f"={rank}" if tie else str(rank), e, p))
    return rows


def tables(entries: Iterable[Entry], verified_only: bool = False) -> list[Table]:
    """One ranked table per suite version x tier x protocol version x data source, in a stable order.

    Table ids name the suite and protocol, plus whatever is not the latest / default."""
    groups: dict[tuple[str, int, str, str, int, DataSource], list[Entry]] = {}
    for e in entries:
        if verified_only and not e.verified:
            continue
        groups.setdefault((e.suite, e.suite_version, e.tier, e.protocol, e.protocol_version, e.data), []).append(e)
    latest_suite: dict[str, int] = {}
    latest_protocol: dict[tuple[str, int, str], int] = {}
    for s, sv, _, p, pv, _ in groups:
        latest_suite[s] = max(latest_suite.get(s, sv), sv)
        latest_protocol[(s, sv, p)] = max(latest_protocol.get((s, sv, p), pv), pv)
    out = []
    order = sorted(groups, key=lambda k: (k[0], -k[1], k[2] != DEFAULT_TIER, k[2], k[3], -k[4], k[5] != "reference"))
    for s, sv, tier, p, pv, data in order:
        table_id = f"table-{s}-{p}"
        if sv != latest_suite[s]:
            table_id += f"-v{sv}"
        if tier != DEFAULT_TIER:
            table_id += f"-{tier}"
        if pv != latest_protocol[(s, sv, p)]:
            table_id += f"-protocol-v{pv}"
        if data != "reference":
            table_id += f"-{data}"
        out.append(Table(s, sv, tier, p, pv, data, table_id, ranked(groups[(s, sv, tier, p, pv, data)])))
    return out
