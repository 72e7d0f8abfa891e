"""Building a suite's Minari datasets from its card (reading and verifying them is `bmrl_bench.data`'s).

A build never exposes half a dataset, and an interrupted one resumes from the units
that finished; the same card gives the same bytes under every executor.

| module | owns |
|---|---|
| `pipeline` | `ensure_built`, `build_suite`: train, score, publish |
| `units` | the units of work, `run_build_unit`, the finished-unit cache |
| `expert` | training the family-wide expert: its stop rules, its checkpoint and resume |
| `snapshots` | the expert's actor at every check (what the `medium` tier rolls out) |
| `tiers` | building the `random`, `medium`, `expert` and `medium-expert` tiers from saved policies |
| `task_data` | `TaskData`: one task's episodes and behaviour actor between units |
| `reference_scores` | reference returns and the `ref_min`/`ref_max` they give |
| `policies` | the family-wide expert on disk |
| `writer` | writing a Minari dataset (staging, atomic move), the staging folder, the suite lock |
"""
from __future__ import annotations

from bmrl_bench.builder.pipeline import BuildReport, build_suite, ensure_built
from bmrl_bench.builder.policies import expert_dir, expert_from_state, load_expert
from bmrl_bench.builder.reference_scores import REFERENCE_SEED, BuildError
from bmrl_bench.builder.task_data import TaskData
from bmrl_bench.builder.units import UnitCache, run_build_unit
from bmrl_bench.builder.writer import LOCKS, write_dataset
from bmrl_bench.data import (
    STALE_REFERENCE_RULE,
    STALE_REFERENCES,
    VerifyRow,
    behaviour_policy_path,
    dataset_status,
    missing_tasks,
    suite_bytes,
    verify_suite,
)

__all__ = [
    "LOCKS", "REFERENCE_SEED", "STALE_REFERENCE_RULE", "STALE_REFERENCES", "BuildError", "BuildReport", "TaskData",
    "UnitCache", "VerifyRow",
    "behaviour_policy_path", "build_suite", "dataset_status", "ensure_built", "expert_dir", "expert_from_state",
    "load_expert", "missing_tasks", "run_build_unit", "suite_bytes", "verify_suite", "write_dataset",
]
