from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bmrl_bench.bench import (
    GROUPS,
    BenchRow,
    bcq_update_flops,
    counted_flops,
    mlp_flops,
    row_notes,
    rows_table,
    run_bench,
    sac_update_flops,
)
from bmrl_bench.bench.loops import LOOP_SUITES, random_meta_train


def test_mlp_flops_counts_a_hand_computed_network() -> None:
    # 3 -> 4 -> 2 on 5 rows. Forward: 2 * (3*4 + 4*2) * 5 = 200.
    assert mlp_flops([3, 4, 2], 5) == 200
    # dW = x^T g for both layers: +200.
    assert mlp_flops([3, 4, 2], 5, weight_grad=True) == 400
    # back through the net: dx of layer 2 only (2*4*2*5 = 80); the first layer's input needs none.
    assert mlp_flops([3, 4, 2], 5, weight_grad=True, input_grad=True) == 480
    # an input that needs a gradient (an action fed to a critic): + 2*3*4*5 = 120 as well.
    assert mlp_flops([3, 4, 2], 5, first_input_grad=True) == 200 + 80 + 120


def test_bcq_flops_at_the_official_sizes_are_the_issues_3_06_gflop() -> None:
    got = bcq_update_flops(17, 6, 100, 10, (400, 300), (400, 300), (750, 750))
    # Hand sum per agent update, HalfCheetah (obs 17, act 6, latent 12), batch 100, 10 samples:
    enc, dec = 2 * (23 * 750 + 750 * 750 + 750 * 24), 2 * (29 * 750 + 750 * 750 + 750 * 6)
    actor, critic = 2 * (23 * 400 + 400 * 300 + 300 * 6), 2 * (23 * 400 + 400 * 300 + 300 * 1)
    first_a, first_c, first_e = 2 * 23 * 400, 2 * 23 * 400, 2 * 23 * 750
    vae = 100 * ((3 * enc - first_e) + 3 * dec)
    target = 1000 * (dec + actor + 2 * critic)
    critics = 100 * 2 * (3 * critic - first_c)
    actor_step = 100 * (dec + (3 * actor - first_a) + 2 * critic)
    assert got == vae + target + critics + actor_step
    assert math.isclose(got / 1e9, 3.06, rel_tol=0.01)


def test_sac_flops_hand_sum() -> None:
    actor, critic = 2 * (17 * 256 + 256 * 256 + 256 * 12), 2 * (23 * 256 + 256 * 256 + 256 * 1)
    first_a, first_c = 2 * 17 * 256, 2 * 23 * 256
    per_sample = (actor + 2 * critic) + 2 * (3 * critic - first_c) + (3 * actor - first_a) + 2 * (2 * critic)
    assert sac_update_flops(17, 6, 256, (256, 256)) == 256 * per_sample


def test_quick_bench_returns_positive_rows_and_writes_no_d3rlpy_logs(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # One thread: the test process has OpenMP spinning on (see `bmrl-bench bench`), and two spinning
    # threads crawl when another process holds a core.
    rows = run_bench(quick=True, threads=1, repeats=1, min_time=0.0, only=["learners"])
    assert all(isinstance(r, BenchRow) and r.value > 0 and math.isfinite(r.value) for r in rows)
    names = {r.name for r in rows}
    for want in ("BCQ ours K=1", "BCQ ours K=8", "BCQ d3rlpy", "SAC ours K=16", "SAC d3rlpy",
                 "collection + phase 1 ours", "collection + phase 1 d3rlpy"):
        assert want in names
    by = {r.name: r for r in rows}
    for name in ("BCQ ours K=1", "BCQ ours K=8", "SAC ours K=16"):
        r = by[name]
        assert r.vs_d3rlpy is not None and r.vs_d3rlpy > 0 and r.bound_fraction > 0
        assert r.gflop_per_update > 0
    assert by["collection + phase 1 ours"].vs_d3rlpy > 0 and "COMPUTED" in by["collection + phase 1 ours"].note
    assert not (tmp_path / "d3rlpy_logs").exists()
    assert rows_table(rows).row_count == len(rows) and row_notes(rows)


def test_torch_counts_the_hand_summed_sac_flops() -> None:
    from bmrl_bench.bench.cases import torch_batch
    from bmrl_bench.learners.sac import BatchedSAC, SACConfig

    sac = BatchedSAC(2, 17, 6, SACConfig(), seed=0)
    batch = torch_batch(np.random.default_rng(0), 2, 256, "cpu")
    counted = counted_flops(lambda: sac.update(batch))
    # K=2 members: twice one agent's update, every matmul forward and backward that the hand sum names
    assert counted == 2 * sac_update_flops(17, 6, 256, (256, 256))


def test_quick_training_rows_cover_every_loop_with_counted_flops_and_a_bound() -> None:
    loop_groups = [g for g in GROUPS if g != "learners"]
    rows = run_bench(quick=True, threads=1, repeats=1, min_time=0.0, only=loop_groups)
    training = {r.name: r for r in rows if r.section == "training"}
    per_suite = ("tiMe phase 1", "tiMe phase 2", "PEARL", "Batch SAC", "expert SAC", "behaviour collection")
    assert sorted(training) == sorted(f"{loop} {suite}" for suite in LOOP_SUITES for loop in per_suite)
    for r in training.values():
        assert r.value > 0 and r.gflop_per_update > 0 and 0 < r.bound_fraction < 1.5, r
        assert math.isclose(r.gflop_s, r.value * r.gflop_per_update)
    # the loops' sizes as their configs and cards say: tiMe's phase 1 trains every meta-train task at once
    assert training["tiMe phase 1 pointgoal-3"].members == 3
    assert training["tiMe phase 1 halfcheetah-vel-lite"].members == 8
    assert training["behaviour collection halfcheetah-vel-lite"].members == 11  # 8 train + 3 test tasks, one shard
    # K=1 SAC 256-256, batch 256, obs 17 + 1 (the task parameter): one update is the hand sum, plus a quarter
    # of the act of 4 envs (an actor forward of 4 rows)
    expert = training["expert SAC halfcheetah-vel-lite"].gflop_per_update * 1e9
    act = mlp_flops([18, 256, 256, 12], 4) / 4
    assert expert == pytest.approx(sac_update_flops(18, 6, 256) + act, rel=1e-9)
    assert {r.name for r in rows if r.section == "matmul"} and not {r.section for r in rows} & {"bcq", "sac"}


def test_bench_steps_run_fits_arithmetic() -> None:
    """The bench's PEARL update and tiMe phase-1 update are fit's: same seed, same numbers."""
    from bmrl_bench.algorithms import BenchSteps, get_algorithm, resolve_config
    from bmrl_bench.suites import get_card

    data = random_meta_train(get_card("pointgoal-3"), np.random.default_rng(1))
    pearl_cls = get_algorithm("pearl")
    _, cfg = resolve_config(pearl_cls, "pointgoal-3", "pointgoal", None, {"steps": 3, "batch_size": 16})
    fitted, benched = pearl_cls(cfg, data.spec, 0), pearl_cls(cfg, data.spec, 0)
    assert isinstance(benched, BenchSteps)
    fitted.fit(data)
    step = benched.bench_steps(data)["update"]
    for _ in range(3):
        step()
    for name, value in fitted.state_dict().items():
        assert torch.equal(value, benched.state_dict()[name]), name

    time_cls = get_algorithm("time")
    _, cfg = resolve_config(time_cls, "pointgoal-3", "pointgoal", None,
                            {"phase1_steps": 3, "phase2_steps": 1, "phase1_batch_size": 16, "log_every": 1})
    logged: list[dict[str, float]] = []
    time_cls(cfg, data.spec, 0).fit(data, log=lambda phase, _s, _t, m: logged.append(m) if "phase 1" in phase else None)
    steps = time_cls(cfg, data.spec, 0).bench_steps(data)
    assert list(steps) == ["phase 1", "phase 2"]
    assert [steps["phase 1"]() for _ in range(3)] == logged


def test_bench_only_rejects_an_unknown_group_in_one_line() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "from bmrl_bench.cli import main; main()", "bench", "--only", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unknown row group 'nope'" in out.stderr and "learners" in out.stderr
    assert "Traceback" not in out.stderr


# ----------------------------------------------------------------------------- threads (issue 15)
def test_a_seed_runs_unit_cpus_torch_threads_inline_too(tiny_suite, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--workers 1` with the default `--threads 0` trained on all cores in one process, slower than one thread
    per process (runtime.torch_threads); an inline unit now runs `unit_cpus` threads, as a worker does."""
    from bmrl_bench import harness
    from bmrl_bench.executor import LocalExecutor

    seen: list[int] = []
    score = harness.score_seed

    def spy(algo, seed, ctx):
        seen.append(torch.get_num_threads())
        return score(algo, seed, ctx)

    monkeypatch.setattr(harness, "score_seed", spy)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for cpus in (1, 2):
            harness.evaluate("random", "tiny-pointgoal", seeds=[0], episodes=1, out_dir=None,
                             executor=LocalExecutor(1), unit_cpus=cpus)
            assert torch.get_num_threads() == 2  # the caller's count is back
    finally:
        torch.set_num_threads(old)
    assert seen == [1, 2]
