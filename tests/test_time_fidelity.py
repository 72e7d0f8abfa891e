"""benchmarks/time_fidelity.py on the tiny PointGoal suite: hand-computed returns, the harness's episodes."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from bmrl_bench.data import load_suite
from bmrl_bench.families import POINTGOAL_RADIUS, get_family
from bmrl_bench.harness import evaluate
from bmrl_bench.protocols import run_episode

from .conftest import TINY
from .test_benchmark_scripts import _script

SMALL = {"phase1_steps": 20, "phase2_steps": 20, "phase1_hidden": (16, 16), "q_hidden": (16, 16)}


def test_a_rollout_from_a_data_state_sums_discounted_rewards() -> None:
    fidelity = _script("time_fidelity")
    gamma, steps = 0.9, 7
    env = fidelity.FromState(get_family("pointgoal").make(90.0, max_episode_steps=steps), np.array([3.0, 4.0]), gamma)
    agent = fidelity.FirstAction(np.array([0.0, 1.0], np.float32), fidelity.StandStill(2))
    got = run_episode(env, agent, seed=0, observe=False)
    # One step to (3, 5), 10 from the goal (0, 10) by sqrt(34), then standing there: -sqrt(34) * sum gamma^t.
    assert got == pytest.approx(-math.sqrt(34.0) * (1 - gamma**steps) / (1 - gamma), rel=1e-6)


def test_report_on_a_tiny_time(tiny_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = evaluate("time", TINY, seeds=[0], overrides=SMALL, out_dir=None, checkpoint_dir=tmp_path / "ckpt")
    suite = load_suite(TINY)
    monkeypatch.setattr(sys, "argv", ["time_fidelity", "--suite", TINY, "--checkpoints", str(tmp_path / "ckpt"),
                                      "--seed", "0", "--episodes", "2", "--q-states", "3", "--mc-horizon", "30",
                                      "--out", str(tmp_path / "fig")])
    _script("time_fidelity").main()
    report = json.loads((tmp_path / "fig" / f"time-fidelity-{TINY}.json").read_text())
    assert (tmp_path / "fig" / f"time-fidelity-{TINY}.png").read_bytes()[:4] == b"\x89PNG"
    assert [(t["split"], t["param"]) for t in report["tasks"]] == [("train", 0.0), ("train", 180.0), ("test", 90.0)]
    assert report["mc_horizon"] == 30 and report["tracking_error"] == "final distance to the goal"
    steps = suite.card.episode_length
    for row, task in zip(report["tasks"], suite.train_tasks + suite.test_tasks):
        still = row["policies"]["standing_still"]
        # At the start (0, 0) for every step: 10 from the goal each step.
        assert still["returns"] == [-POINTGOAL_RADIUS * steps] * 2
        assert still["tracking_error"] == pytest.approx(POINTGOAL_RADIUS) and still["mean_abs_action"] == 0.0
        assert still["return_minus_standing_still"] == 0.0
        teacher = row["policies"]["teacher"]
        assert teacher["return_minus_standing_still"] == pytest.approx(teacher["return"] + POINTGOAL_RADIUS * steps)
        assert row["time_offline_over_teacher"] == pytest.approx(row["policies"]["time_offline_context"]["normalized"]
                                                                 / teacher["normalized"])
        assert still["normalized"] == pytest.approx((-POINTGOAL_RADIUS * steps - task.ref_min)
                                                    / (task.ref_max - task.ref_min))
        for name in ("teacher", "time_offline_context", "time_zero_shot"):
            p = row["policies"][name]
            assert len(p["returns"]) == 2 and np.isfinite([p["normalized"], p["tracking_error"]]).all()
            assert 0.0 <= p["mean_abs_action"] <= 1.0
        if row["split"] == "train":
            assert set(row["q"]) == {"states", "teacher_q", "teacher_mc_return", "teacher_mc_stderr", "time_q_s"}
            assert row["q"]["states"] == 3 and np.isfinite(list(row["q"].values())).all()
        else:
            assert "q" not in row
    test_row = report["tasks"][2]
    assert test_row["teacher_member"] == 0  # 90 is as near 0 as 180: the first train task wins
    # Zero-shot on a test task plays the harness's episodes: the first two of its three.
    harness = run.results["returns"][0]["episode_returns"]
    np.testing.assert_allclose(test_row["policies"]["time_zero_shot"]["returns"], harness[:2], atol=1e-3)
    teacher_on_test = test_row["policies"]["teacher"]["normalized"]
    assert report["summary_normalized"]["test"]["teacher"] == pytest.approx(teacher_on_test)
