"""When do two returns agree? The verified tier's rule, set from a measurement.

The board re-runs a submission from its checkpoints (`verify`) and compares every
episode: |submitted - re-run| <= abs + rel * |re-run| with the family's `TOLERANCE`.

`benchmarks/verify_drift.py` measured how far honest re-runs drift: every algorithm's
checkpoints scored again with 1 and 2 torch threads, in this process and in a worker
process, against the returns `eval` wrote. On pointgoal-3 and on a HalfCheetah-Vel suite
the drift was exactly zero in every episode (the scoring is seeded end to end and the
agents' kernels at batch 1 do not depend on the thread count), so every family is
exact; a family measured to drift gets its (abs, rel) here with the numbers behind it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from bmrl_bench.results import ResultsFile, RunReturns

# family -> (abs, rel). Families not listed: exact.
TOLERANCE: dict[str, tuple[float, float]] = {
    "pointgoal": (0.0, 0.0),
    "halfcheetah-vel": (0.0, 0.0),
    "hopper-vel": (0.0, 0.0),
}


def tolerance(family: str | None) -> tuple[float, float]:
    return TOLERANCE.get(family or "", (0.0, 0.0))


def agrees(submitted: float, rerun: float, tol: tuple[float, float]) -> bool:
    return abs(submitted - rerun) <= tol[0] + tol[1] * abs(rerun)


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
