"""The board's columns and texts, shared by the Markdown and HTML renderings."""
from __future__ import annotations

from bmrl_bench.board.model import BOOTSTRAP_REPS, BOOTSTRAP_SEED, Entry, ReferenceTask
from bmrl_bench.board.scoring import Row, Table
from bmrl_bench.board.store import RECORD

METHOD = (
    "Scores are normalized per test task, `(return - ref_min) / (ref_max - ref_min)`, with the suite's reference"
    " scores; a run's score on a task is the mean over its episodes. IQM (interquartile mean), mean, median and"
    f" optimality gap are taken over all runs × tasks, with stratified-bootstrap 95% CIs ({BOOTSTRAP_REPS} reps,"
    f" seed {BOOTSTRAP_SEED}). Rank `=N`: the IQM CI overlaps that of the entry ranked directly above (a tie)."
    " P(better than next): probability of improvement over the next entry (0.5 = indistinguishable)."
    " Every number is recomputed from the episode returns."
)
STATUS = (
    "`verified`: the board re-ran every seed from the submitted checkpoints (same protocol, same episode seeds) and got"
    " the submitted returns; its own returns are scored, and its record (`checkpoints/<entry>/verification.json`) keeps"
    " them with the sha256 of every checkpoint file; the checkpoints sit beside it, or in `archive/` (not in git) when"
    " an entry's exceed 32 MB. `self-reported`: the returns are the submitter's. Every return on the board is feasible"
    " (within the task family's bounds for the episode length)."
)
LOCAL = (
    "LOCAL-BUILD data: the datasets were built on this machine and their checksums match no published build;"
    " not comparable with reference-data tables."
)
EMPTY = "No submissions yet. Add one with `bmrl-bench submit <results.json>`."

FIXED_LEFT = ("rank", "algorithm", "config", "status")  # left-aligned text columns
FIXED_RIGHT = ("IQM [95% CI]", "mean [95% CI]")
TAIL = ("#seeds", "P(better than next)", "date", "commit", "results")


def ci(stat: tuple[float, float, float]) -> str:
    return f"{stat[0]:.3f} [{stat[1]:.3f}, {stat[2]:.3f}]"


def commit(e: Entry) -> str:
    if not e.git_commit:
        return "—"
    return e.git_commit[:7] + ("+dirty" if e.dirty else "")


def status(e: Entry) -> str:
    return "verified" if e.verified else "self-reported"


def task_header(t: ReferenceTask) -> str:
    return f"task {t.task_index:02d} ({t.param:g})"


def header(table: Table) -> list[str]:
    return [*FIXED_LEFT, *FIXED_RIGHT, *(task_header(t) for t in table.tasks), *TAIL]


def cells(row: Row) -> list[str]:
    """The text of each column (the last, `results`, is a link in both renderings)."""
    e = row.entry
    return [
        row.rank, e.algorithm, e.config_name, status(e), ci(e.iqm), ci(e.aggregates["mean"]),
        *(f"{x:.3f}" for x in e.per_task),
        str(len(e.seeds)), "—" if row.p_next is None else f"{row.p_next:.3f}", e.created.date().isoformat(), commit(e),
        "json",
    ]


def results_href(e: Entry) -> str:
    """The stored results file, relative to the board folder."""
    return f"submissions/{e.entry_id}.json"


def record_href(e: Entry) -> str:
    return f"checkpoints/{e.entry_id}/{RECORD}"
