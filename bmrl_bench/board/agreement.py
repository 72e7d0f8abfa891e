"""When do two returns agree? The verified tier's rule, set from a measurement.

The board re-runs a submission from its checkpoints (`verify`) and compares every
episode: |submitted - re-run| <= abs + rel * |re-run|, with the family's `TOLERANCE`.

Measured with `benchmarks/verify_drift.py` (2-core x86 machine, torch 2.13 CPU): every
algorithm's checkpoints (batch-sac, pearl, time, d3rlpy bcq, random, oracle; each
suite config's network sizes) re-scored with 1 and 2 torch threads, in-process and in a
worker process, against the returns `eval` wrote. Re-runs at the thread count of the
run are bit-identical; another thread count changes float32 reductions in some kernels:

    family            largest |difference|   largest relative   from               episodes
    pointgoal         2.8e-5                 1.8e-7             bcq, 2 threads     2160 (pointgoal-3)
    halfcheetah-vel   8.9e-8                 2.4e-10            time, 2 threads     432 (200-step card)
    hopper-vel        5.4e-6                 1.1e-7             time/bcq, worker    432 (1000-step card)

The rule is at least 30 times the largest drift measured in the family, and small enough
that no normalized score on the board moves by 1e-3: a return off by abs + rel * |R| moves
a task's score by that over (ref_max - ref_min), at most 3.5e-5 on the PointGoal suites,
2.6e-4 on halfcheetah-vel-lite and 9.4e-4 on hopper-vel-lite with the returns on the board
today. MuJoCo gets more room (rel 1e-4, 900x the measured 1.1e-7): trained
gaits are chaotic, so a rounding difference in one action can grow over an episode, which
the briefly trained policies measured here do not show. Re-measure before tightening.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from bmrl_bench.results import ResultsFile, RunReturns

# family -> (abs, rel). Families not listed: exact (nothing measured).
TOLERANCE: dict[str, tuple[float, float]] = {
    "pointgoal": (1e-3, 1e-5),  # 35x the 2.8e-5 and 57x the 1.8e-7 measured
    "halfcheetah-vel": (1e-3, 1e-4),
    "hopper-vel": (1e-3, 1e-4),
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
