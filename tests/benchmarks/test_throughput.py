"""Training throughput with pytest-benchmark (not part of the default test run).

    python -m pytest tests/benchmarks --benchmark-only

`test_bench_table` runs `bmrl_bench.bench.run_bench` once: every case interleaved in one run, the
numbers the README's Performance section quotes (the table is printed with `-s` and stored in the
benchmark's `extra_info`, e.g. with `--benchmark-json out.json`); `BMRL_BENCH_ONLY=time,pearl` runs
some row groups only (`bmrl_bench.bench.GROUPS`). The per-update tests time each learner alone with
pytest-benchmark's own statistics, grouped so that ours and d3rlpy's sit side by side, and
`test_training_loop` each training loop the repo runs (tiMe phase 1 and 2, PEARL: their
`bench_steps`) the same way; they are sequential, so on a busy machine trust the interleaved table
for ratios.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

DEVICE = os.environ.get("BMRL_BENCH_DEVICE", "cpu")


@pytest.fixture(scope="module")
def threads() -> int:
    import torch

    from bmrl_bench.bench.timing import available_cores

    n = int(os.environ.get("BMRL_BENCH_THREADS", "0")) or available_cores()
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    yield n
    torch.set_num_threads(old)


def _ours(kind: str, k: int) -> Callable[[], object]:
    from bmrl_bench.bench.cases import ACT_DIM, OBS_DIM, torch_batch
    from bmrl_bench.bench.timing import cycle
    from bmrl_bench.learners.bcq import BatchedBCQ, BCQConfig
    from bmrl_bench.learners.sac import BatchedSAC, SACConfig

    rng = np.random.default_rng(0)
    if kind == "bcq":
        learner = BatchedBCQ(k, OBS_DIM, ACT_DIM, BCQConfig(device=DEVICE))
        return cycle(learner.update, [torch_batch(rng, k, 100, DEVICE) for _ in range(4)])
    learner = BatchedSAC(k, OBS_DIM, ACT_DIM, SACConfig(device=DEVICE), device=DEVICE)
    return cycle(learner.update, [torch_batch(rng, k, 256, DEVICE) for _ in range(4)])


def _d3rlpy(kind: str) -> Callable[[], object]:
    from bmrl_bench.bench.cases import d3rlpy_cases
    from bmrl_bench.learners.bcq import BCQConfig
    from bmrl_bench.learners.sac import SACConfig
    from bmrl_bench.suites import get_card

    cases = d3rlpy_cases(np.random.default_rng(0), DEVICE, 1, BCQConfig(device=DEVICE), SACConfig(device=DEVICE), 4,
                          get_card("halfcheetah-vel-lite"))
    return {c.key: c.step for c in cases}["d3bcq" if kind == "bcq" else "d3sac"]


@pytest.mark.parametrize("impl,k", [("ours", 1), ("ours", 8), ("d3rlpy", 1)])
def test_bcq_update(benchmark, threads: int, impl: str, k: int) -> None:
    step = _ours("bcq", k) if impl == "ours" else _d3rlpy("bcq")
    benchmark.group = "BCQ official sizes, 10 action samples, batch 100 (one call = K agent-updates)"
    benchmark.extra_info.update(agents_per_call=k, threads=threads)
    benchmark.pedantic(step, rounds=10, warmup_rounds=2)


@pytest.mark.parametrize("impl,k", [("ours", 1), ("ours", 16), ("d3rlpy", 1)])
def test_sac_update(benchmark, threads: int, impl: str, k: int) -> None:
    step = _ours("sac", k) if impl == "ours" else _d3rlpy("sac")
    benchmark.group = "SAC 256-256, batch 256 (one call = K agent-updates)"
    benchmark.extra_info.update(agents_per_call=k, threads=threads)
    benchmark.pedantic(step, rounds=20 if k > 1 else 100, warmup_rounds=3)


@pytest.mark.parametrize("suite", ["pointgoal-3", "halfcheetah-vel-lite"])
@pytest.mark.parametrize("algo,loop", [("time", "phase 1"), ("time", "phase 2"), ("pearl", "update")])
def test_training_loop(benchmark, threads: int, suite: str, algo: str, loop: str) -> None:
    from bmrl_bench.algorithms import get_algorithm, resolve_config
    from bmrl_bench.bench.flops import counted_flops
    from bmrl_bench.bench.loops import random_meta_train
    from bmrl_bench.suites import get_card

    card = get_card(suite)
    cls = get_algorithm(algo)
    _, config = resolve_config(cls, card.name, card.family, None, None)
    data = random_meta_train(card, np.random.default_rng(0))
    step = cls(config, data.spec, 0, DEVICE).bench_steps(data)[loop]
    step()
    benchmark.group = f"training loops on {suite} (one call = one update of the loop)"
    benchmark.extra_info.update(threads=threads, gflop_per_update=counted_flops(step) / 1e9)
    benchmark.pedantic(step, rounds=10, warmup_rounds=2)


def test_bench_table(benchmark, threads: int, capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    from bmrl_bench.bench import bench_info, row_notes, rows_table, run_bench

    benchmark.group = "interleaved table (bmrl-bench bench)"
    only = [g for g in os.environ.get("BMRL_BENCH_ONLY", "").split(",") if g] or None
    rows = benchmark.pedantic(run_bench, kwargs={"device": DEVICE, "threads": threads, "only": only}, rounds=1,
                              iterations=1)
    info = bench_info(threads, DEVICE)
    benchmark.extra_info.update(info=info, rows=[r.as_dict() for r in rows])
    with capsys.disabled():
        out = Console(width=120)
        out.print(rows_table(rows, info))
        for line in row_notes(rows):
            out.print(f"  {line}")
    by = {r.name: r for r in rows}
    if only is None or "learners" in only:
        assert by["BCQ ours K=1"].vs_d3rlpy > 0 and by["SAC ours K=16"].vs_d3rlpy > 0
    assert all(0 < r.bound_fraction < 1.5 for r in rows if r.section == "training")
