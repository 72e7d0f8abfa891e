from __future__ import annotations

import math

import pytest

from bmrl_bench.bench import BenchRow, bcq_update_flops, mlp_flops, row_notes, rows_table, run_bench, sac_update_flops


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
    rows = run_bench(quick=True, threads=1, repeats=1, min_time=0.0)
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
