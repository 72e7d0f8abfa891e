"""The leaderboard's public names; the code lives in `bmrl_bench.board` (one module per concern)."""
from __future__ import annotations

from bmrl_bench.board import (
    BOOTSTRAP_REPS,
    BOOTSTRAP_SEED,
    DataSource,
    Entry,
    Published,
    ReferenceTask,
    SuiteReference,
    Verification,
    content_hash,
    load_board,
    markdown,
    render,
    submit,
)

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
]
