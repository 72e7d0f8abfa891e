"""The tiMe diagnosis scripts in benchmarks/ agree with the harness they stand beside."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from baselines.time_distill import CONFIGS, TiMe
from bmrl_bench.data import load_suite
from bmrl_bench.harness import evaluate, meta_train_data, spec_of
from bmrl_bench.results import normalized_scores, parse_results

from .conftest import TINY

SCRIPTS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(name: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [name, *args])
    _script(name).main()


def test_time_context_at_the_configs_context_reproduces_the_harness(tiny_suite: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    small = {"phase1_steps": 20, "phase2_steps": 20, "phase1_hidden": (16, 16), "q_hidden": (16, 16), "test_context": 1}
    run = evaluate("time", TINY, seeds=[0, 1], overrides=small, out_dir=None, checkpoint_dir=tmp_path / "ckpt")
    suite = load_suite(TINY)
    refs = {t.index: (t.ref_min, t.ref_max) for t in suite.test_tasks}
    want = normalized_scores(parse_results(run.results, "eval"), refs).mean(axis=0)  # (tasks,)

    _run("time_context", ["--suite", TINY, "--checkpoints", str(tmp_path / "ckpt"), "--contexts", "1,0",
                          "--out", str(tmp_path / "ctx.json")], monkeypatch)
    report = json.loads((tmp_path / "ctx.json").read_text())
    assert report["runs"] == [f"time-{TINY}-seed0", f"time-{TINY}-seed1"]
    np.testing.assert_allclose(report["contexts"]["1"]["per_task"], want, atol=1e-3)  # rounded to 3 decimals
    angles = report["contexts"]["0"]["final_angle_median"]
    assert set(angles) == {str(t.param) for t in suite.test_tasks}


def test_time_teachers_writes_the_phase1_cache_entry_eval_would_train(tiny_suite: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMRL_BENCH_CACHE", str(tmp_path / "script-cache"))
    _run("time_teachers", ["--suite", TINY, "--config", "pointgoal", "--steps", "3,6", "--episodes", "1",
                           "--out", str(tmp_path / "teachers.json")], monkeypatch)
    report = json.loads((tmp_path / "teachers.json").read_text())
    assert [row["phase1_steps"] for row in report["rows"]] == [3, 6]
    num_train = len(load_suite(TINY).train_tasks)
    for row in report["rows"]:
        assert len(row["own_task (actor)"]["normalized"]) == num_train
        num_test = len(load_suite(TINY).test_tasks)
        assert len(row["nearest_teacher_on_test (shooting)"]["normalized"]) == len(row["nearest_teacher"]) == num_test
    scripted = sorted((tmp_path / "script-cache" / "phase1").glob("*/weights.safetensors"))
    assert len(scripted) == 2

    # What TiMe.fit trains for phase1_steps=6 in an empty cache is, byte for byte, the script's entry.
    monkeypatch.setenv("BMRL_BENCH_CACHE", str(tmp_path / "eval-cache"))
    suite = load_suite(TINY)
    algo = TiMe(dataclasses.replace(CONFIGS["pointgoal"], phase1_steps=6, phase2_steps=1), spec_of(suite), 0)
    algo.fit(meta_train_data(suite))
    (trained,) = (tmp_path / "eval-cache" / "phase1").glob("*/weights.safetensors")
    same = [p for p in scripted if p.parent.name == trained.parent.name]
    assert len(same) == 1 and same[0].read_bytes() == trained.read_bytes()


def test_time_identification_plays_the_harness_first_zero_shot_episode(tiny_suite: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    small = {"phase1_steps": 20, "phase2_steps": 20, "phase1_hidden": (16, 16), "q_hidden": (16, 16)}
    run = evaluate("time", TINY, seeds=[0], overrides=small, out_dir=None, checkpoint_dir=tmp_path / "ckpt",
                   episodes=1)
    first = {row.task_index: row.episode_returns[0] for row in parse_results(run.results, "eval").returns}
    _run("time_identification", ["--suite", TINY, "--checkpoints", str(tmp_path / "ckpt"),
                                 "--out", str(tmp_path / "ident.json")], monkeypatch)
    report = json.loads((tmp_path / "ident.json").read_text())
    suite = load_suite(TINY)
    assert [row["param"] for row in report["tasks"]] == [t.param for t in suite.test_tasks]
    for task, row in zip(suite.test_tasks, report["tasks"]):
        assert row["zero_shot"]["return"] == pytest.approx(first[task.index], abs=0.01)  # the harness's episode
        assert all(np.isfinite(w["read_out"]) for w in row["zero_shot"]["windows"])
    assert report["read_out_fit_rmse"] >= 0


def test_time_candidates_scores_every_proposer_and_ranker(tiny_suite: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    small = {"phase1": "bcq", "phase1_steps": 10, "phase2_steps": 10, "phase1_hidden": (16, 16),
             "phase1_vae_hidden": (16, 16), "q_hidden": (16, 16), "g_hidden": (16,), "xi_hidden": (16,)}
    evaluate("time", TINY, seeds=[0], overrides=small, out_dir=None, checkpoint_dir=tmp_path / "ckpt", episodes=1)
    args = ["--suite", TINY, "--checkpoints", str(tmp_path / "ckpt"), "--tasks", "0", "--episodes", "1"]
    _run("time_candidates", [*args, "--out", str(tmp_path / "a.json")], monkeypatch)
    _run("time_candidates", [*args, "--out", str(tmp_path / "b.json")], monkeypatch)
    report = json.loads((tmp_path / "a.json").read_text())
    (row,) = report["tasks"]
    assert row["param"] == load_suite(TINY).train_tasks[0].param
    pure = {f"{p} proposes, {r} ranks" for p in ("time", "teacher") for r in ("time", "teacher")}
    assert set(row["scores"]) == pure | {"time G + teacher xi, time ranks", "teacher G + time xi, time ranks"}
    assert all(np.isfinite(v) for v in row["scores"].values())
    assert report == json.loads((tmp_path / "b.json").read_text())  # episode seeds and draws are fixed
    (errors,) = report["candidate_errors"]
    assert errors["param"] == row["param"]
    assert all(np.isfinite(v) and v >= 0 for v in errors.values())
    assert errors["candidate_error"] > 0 and errors["teacher_spread"] > 0  # 10 phase-2 steps distill nothing exactly


def test_time_candidates_refuses_a_sac_phase1(tiny_suite: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    small = {"phase1_steps": 5, "phase2_steps": 5, "phase1_hidden": (16, 16), "q_hidden": (16, 16)}
    evaluate("time", TINY, seeds=[0], overrides=small, out_dir=None, checkpoint_dir=tmp_path / "ckpt", episodes=1)
    with pytest.raises(SystemExit, match="candidates exist for bcq only"):
        _run("time_candidates", ["--suite", TINY, "--checkpoints", str(tmp_path / "ckpt")], monkeypatch)


def _fidelity_report(seed: int, teacher: list[float], zero: list[float], offline: list[float]) -> dict:
    """A `time_fidelity.py` report with two train tasks (0, 1) and one test task (0.5), normalized scores only."""
    def task(split: str, param: float, i: int) -> dict:
        policies = {"teacher": teacher[i], "time_zero_shot": zero[i], "time_offline_context": offline[i]}
        return {"split": split, "param": param, "policies": {k: {"normalized": v} for k, v in policies.items()}}
    return {"suite": "s", "seed": seed, "tasks": [task("train", 0.0, 0), task("train", 1.0, 1), task("test", 0.5, 2)]}


def test_time_targets_holds_each_seed_against_its_own_teachers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = []
    for seed, report in enumerate([_fidelity_report(0, [1.0, 0.8, 0.6], [0.0, 0.0, 0.7], [0.95, 0.4, 0.5]),
                                   _fidelity_report(1, [0.5, 0.8, 0.9], [0.0, 0.0, 0.8], [0.40, 0.8, 0.9])]):
        paths.append(tmp_path / f"s{seed}.json")
        paths[-1].write_text(json.dumps(report))
    _run("time_targets", [*map(str, paths), "--json", str(tmp_path / "t.json")], monkeypatch)
    out = json.loads((tmp_path / "t.json").read_text())
    (test,) = out["test"]
    assert test["teacher"] == pytest.approx(0.75) and test["zero_shot"] == pytest.approx(0.75)
    assert test["seeds_below_teacher"] == [1]  # 0.8 < 0.9; seed 0's 0.7 beats its own teacher's 0.6
    assert [t["share"] for t in out["train"]] == [pytest.approx([0.95, 0.8]), pytest.approx([0.5, 1.0])]
    assert [t["seeds_under"] for t in out["train"]] == [[1], [0]]


def test_time_targets_refuses_a_missing_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="no fidelity report at .*nope.json; run benchmarks/time_fidelity.py"):
        _run("time_targets", [str(tmp_path / "nope.json")], monkeypatch)
