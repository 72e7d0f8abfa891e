"""The harness: fit sees meta-train data only; results files are complete and valid."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from bmrl_bench import data as data_mod
from bmrl_bench import harness
from bmrl_bench.algorithms import EnvSpec, MetaTrainData
from bmrl_bench.errors import UnknownAlgorithmError
from bmrl_bench.families import Family, pointgoal_optimal_return
from bmrl_bench.results import load_results

TINY = "tiny-pointgoal"


@dataclasses.dataclass(frozen=True)
class SpyConfig:
    pass


class Spy:
    """Records what fit() could reach; acts by a fixed rule so returns are predictable."""

    name: ClassVar[str] = "spy"
    config_cls: ClassVar[type] = SpyConfig
    configs: ClassVar[dict[str, Any]] = {"default": SpyConfig()}
    in_fit = False
    seen: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: SpyConfig, spec: EnvSpec, seed: int, device: str = "cpu") -> None:
        self.spec = spec

    def fit(self, data: MetaTrainData, log: Any) -> None:
        Spy.in_fit = True
        Spy.seen["fields"] = {f.name for f in dataclasses.fields(data)}
        Spy.seen["task_index"] = set(np.unique(data.batch.task_index).tolist())
        Spy.seen["num_tasks"] = data.num_tasks
        Spy.in_fit = False
        log("phase a", 1, 1, {})
        log("phase b", 1, 2, {})
        log("phase b", 2, 2, {})

    def make_agent(self) -> Any:
        class Agent:
            def reset(self) -> None: ...
            def act(self, obs: np.ndarray) -> np.ndarray:
                # Straight up to (0, 10), the 90-degree goal, then stay.
                return np.clip(np.array([0.0, 10.0], np.float32) - obs, -1.0, 1.0)
            def observe(self, *a: Any) -> None: ...
        return Agent()

    def save(self, path: Path) -> None: ...


def test_fit_gets_meta_train_data_only(tiny_suite: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    touched: list[str] = []
    real_read, real_make = data_mod.read_episodes, Family.make

    def read(dataset_id: str, root: Any = None) -> Any:
        if Spy.in_fit:
            touched.append(dataset_id)
        return real_read(dataset_id, root)

    def make(self: Family, param: float, max_episode_steps: Any = None) -> Any:
        if Spy.in_fit:
            touched.append(f"env {param}")
        return real_make(self, param, max_episode_steps)

    monkeypatch.setattr(data_mod, "read_episodes", read)
    monkeypatch.setattr(Family, "make", make)
    monkeypatch.setattr(harness, "get_algorithm", lambda name: Spy)
    run = harness.evaluate("spy", TINY, seeds=(0, 1, 2), out_dir=tmp_path)
    assert Spy.seen["fields"] == {"spec", "batch", "num_tasks", "suite"}
    assert Spy.seen["task_index"] == {0, 1} and Spy.seen["num_tasks"] == 2  # task 2 is the test task
    assert touched == []  # no dataset read and no environment made while fitting
    # Straight up at speed 1 to the goal at (0, 10), then stay: return -(9 + 8 + ... + 1 + 0) = -45.
    results = load_results(run.path)
    assert {r.task_index for r in results.returns} == {2}
    for r in results.returns:
        assert r.episode_returns == pytest.approx([-45.0] * 3)
    assert results.protocol.name == "zero-shot" and results.seeds == [0, 1, 2]
    assert [d.checksum for d in results.suite.datasets] == [t.checksum for t in data_mod.load_suite(TINY).tasks]
    assert {"fit", "evaluate"} <= set(results.wall_time_s)
    # Per-phase fit times, from the algorithm's own log lines; they add up to at most the fit.
    phases = {k: v for k, v in results.wall_time_s.items() if k.startswith("fit: ")}
    assert set(phases) == {"fit: phase a", "fit: phase b"}
    assert 0 <= sum(phases.values()) <= results.wall_time_s["fit"] + 1e-2


def test_unknown_algorithm_lists_known_ones() -> None:
    with pytest.raises(UnknownAlgorithmError, match="known algorithms: .*batch-sac.*time"):
        harness.evaluate("nope", TINY)


def test_reference_rows(tiny_suite: Path, tmp_path: Path) -> None:
    oracle = load_results(harness.evaluate("oracle", TINY, seeds=(0, 1, 2), out_dir=tmp_path).path)
    rnd = load_results(harness.evaluate("random", TINY, seeds=(0, 1, 2), out_dir=tmp_path).path)
    suite = data_mod.load_suite(TINY)
    test = suite.test_tasks[0]
    meta = json.loads((tiny_suite / test.dataset_id / "data" / "metadata.json").read_text())
    oracle_mean = np.mean([r.episode_returns for r in oracle.returns])
    # The oracle replays the best learned policy on a deterministic env: it scores exactly that policy's reference
    # return; on PointGoal ref_max is the analytic optimum above it.
    learned = meta["bmrl_ref_max_learned"]
    assert learned["source"] in {"behaviour", "expert"}
    assert learned["return"] == pytest.approx(np.mean(meta["bmrl_reference_returns"][learned["source"]]))
    assert oracle_mean == pytest.approx(learned["return"], abs=1e-6)
    assert meta["bmrl_ref_max_source"] == "optimal"
    assert test.ref_max == pointgoal_optimal_return(test.param, suite.card.episode_length) > oracle_mean
    random_mean = np.mean([r.episode_returns for r in rnd.returns])
    assert abs(random_mean - test.ref_min) < 0.25 * (learned["return"] - test.ref_min) + 20


def test_checkpoint_of_names_the_seed_folder_or_the_command_that_makes_it(tmp_path: Path) -> None:
    from bmrl_bench.errors import CheckpointError
    from bmrl_bench.harness import checkpoint_of

    with pytest.raises(CheckpointError, match="run `bmrl-bench eval --algo time --suite s --seeds 3 --checkpoints"):
        checkpoint_of(tmp_path, "time", "s", 3)
    (tmp_path / "time-s-seed3").mkdir()
    assert checkpoint_of(tmp_path, "time", "s", 3) == tmp_path / "time-s-seed3"
