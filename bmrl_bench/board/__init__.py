"""The leaderboard: `submit()` checks a results file and files it; `render()` draws the board.

The board trusts only what the injected `published(suite, version) -> SuiteReference`
callable says about a suite (test tasks, reference scores, dataset checksums, protocol
constants, task family and episode length). From a results file it takes the raw
episode returns and nothing derived: normalization and every aggregate (IQM, mean,
median, optimality gap, their stratified-bootstrap 95% CIs, per-task scores, probability
of improvement) are recomputed, and the file's own `aggregates` block is ignored.
Returns outside the family's feasible range are refused. An entry is `verified` when
the board re-ran it from its checkpoints and got the same returns (`verify`), else
`self-reported`. A refused submission leaves the board folder exactly as it was.

Modules, in the order a submission meets them: `validate` (checks), `verify` (the
re-run) with `agreement` (the rule) and `record` (what the board keeps of it), `store`
(the folder layout), `scoring` (numbers and ranks), `submit` (`submit`, `load_board`),
`render` (`render`, `markdown`) with `render_md`, `render_html`, `plots` and `cells`
(the shared columns).
"""
from __future__ import annotations

from bmrl_bench.board.model import (
    BOOTSTRAP_REPS,
    BOOTSTRAP_SEED,
    DataSource,
    Entry,
    Published,
    ReferenceTask,
    SuiteReference,
    Verification,
)
from bmrl_bench.board.render import markdown, render, submit_and_render
from bmrl_bench.board.submit import load_board, submit
from bmrl_bench.board.validate import content_hash

__all__ = [
    "BOOTSTRAP_REPS",
    "BOOTSTRAP_SEED",
    "DataSource",
    "Entry",
    "Published",
    "ReferenceTask",
    "SuiteReference",
    "Verification",
    "content_hash",
    "load_board",
    "markdown",
    "render",
    "submit",
    "submit_and_render",
]
