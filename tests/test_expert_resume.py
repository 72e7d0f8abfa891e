"""The family-wide expert: its stopping rules on hand-made checks, and a killed training that
resumes from its checkpoint and ends bit-identical to one never interrupted (in this process,
in a killed local worker, on Ray, and through an interrupted build)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bmrl_bench.builder import UnitCache, build_suite, expert_dir, run_build_unit
from bmrl_bench.builder.expert import (
    ExpertCheckpoint,
    ExpertTraining,
    every_task_converged,
    mean_converged,
    stop_reason,
    train_expert,
    unsettled_tasks,
)
from bmrl_bench.builder.units import ExpertResult, ExpertUnit
from bmrl_bench.data import read_metadata
from bmrl_bench.executor import LocalExecutor, RayExecutor, UnitEvent
from bmrl_bench.families import get_family
from bmrl_bench.learners.sac import BatchedSAC
from bmrl_bench.runtime import torch_threads
from bmrl_bench.suites import ExpertRecipe, SuiteCard, get_card
from tests.executor_units import KillOnce, Wrapping

TINY = "tiny-pointgoal"  # expert: 1000 env steps on 2 envs, a check (and a checkpoint) every 250


# ---------------------------------------------------------------------------- the stop rules (pure)


def test_every_task_rule_on_hand_made_checks() -> None:
    bounds = [-30.0, -30.0]
    # patience 2: medians (= means) of 2 checks in a row. Task 0: worst check -50, slack 0.1 x (-30 - -50) = 2; means
    # -45, -39.5, -39.25, -39.35, -39.3: the last (-39.3) is 0.05 below the one 2 checks earlier and 0.05
    # below the best: settled. Task 1: worst -80, slack 5; means -70, -55, -47, -42, -39: the last rose by
    # 8 over the one 2 checks earlier (-47): still learning.
    history = [(100, [-50.0, -80.0]), (200, [-40.0, -60.0]), (300, [-39.0, -50.0]), (400, [-39.5, -44.0]),
               (500, [-39.2, -40.0]), (600, [-39.4, -38.0])]
    assert unsettled_tasks(history, bounds, patience=2, tolerance=0.1) == [1]
    assert not every_task_converged(history, bounds, min_steps=0, patience=2, tolerance=0.1)
    # A looser tolerance: task 1's slack is 0.2 x 50 = 10 > 8, so both have settled.
    assert unsettled_tasks(history, bounds, patience=2, tolerance=0.2) == []
    assert every_task_converged(history, bounds, min_steps=600, patience=2, tolerance=0.2)
    assert not every_task_converged(history, bounds, min_steps=601, patience=2, tolerance=0.2)  # too early
    # Fewer than 2 x patience checks: nothing can have settled yet.
    assert unsettled_tasks(history[:3], bounds, patience=2, tolerance=0.2) == [0, 1]
    assert not every_task_converged([], bounds, min_steps=0, patience=1, tolerance=0.1)
    # A task that collapsed from its best has not settled, even if it is flat now: means -42.5, -35.5,
    # -40.5, -45.5, -45.5; the last is 10 below the best -35.5, more than the slack 0.1 x 20 = 2.
    collapsed = [(1, [-50.0]), (2, [-35.0]), (3, [-36.0]), (4, [-45.0]), (5, [-46.0]), (6, [-45.0])]
    assert unsettled_tasks(collapsed, [-30.0], patience=2, tolerance=0.1) == [0]
    # One bad check among good ones (a Hopper that fell once) does not move a median of 5 checks: medians
    # 950, 955, 955, 955, 955, 960, 958, 960; the last rose 5 over the one 5 checks earlier, within 35.
    hopper = [300.0, 700.0, 950.0, 960.0, 955.0, 970.0, 950.0, 400.0, 965.0, 960.0, 958.0, 962.0]
    history = [(20_000 * (i + 1), [r]) for i, r in enumerate(hopper)]
    assert unsettled_tasks(history, [1000.0], patience=5, tolerance=0.05) == []  # slack 0.05 x 700 = 35
    # A task still rising by 50 a check has not: its last median (850) is 250 above the one before (600).
    rising = [(20_000 * (i + 1), [500.0 + 50.0 * i]) for i in range(10)]
    assert unsettled_tasks(rising, [1000.0], patience=5, tolerance=0.05) == [0]


def test_a_mean_plateau_is_not_every_task_settled() -> None:
    # One task falls while the other rises: the mean is flat at -60, so the mean rule stops.
    per_task = [(1, [-100.0, -100.0]), (2, [-40.0, -80.0]), (3, [-50.0, -70.0]), (4, [-60.0, -60.0]),
                (5, [-70.0, -50.0])]
    mean = [(s, float(np.mean(r))) for s, r in per_task]
    assert [r for _, r in mean] == [-100.0, -60.0, -60.0, -60.0, -60.0]
    assert mean_converged(mean, patience=3, min_improvement=0.02)
    assert unsettled_tasks(per_task, [0.0, 0.0], patience=3, tolerance=0.05) == [0, 1]
    # The hopper-vel-lite expert's checks (issue 13): its mean rule stopped here, far below the bound 1000.
    hopper = [122.0, 286.0, 300.0, 291.0, 336.0, 278.0, 115.0, 197.0, 308.0]
    assert mean_converged(list(enumerate(hopper)), patience=4, min_improvement=0.02)
    history = [(10_000 * (i + 1), [r]) for i, r in enumerate(hopper)]
    assert not every_task_converged(history, [1000.0], min_steps=0, patience=4, tolerance=0.05)


def test_stop_reasons_say_which_rule_ended_the_training() -> None:
    mean = ExpertRecipe(min_steps=100, max_steps=500, eval_every=100, hidden=[8], batch_size=8)
    assert stop_reason(mean, 300, True) == ("converged at step 300: the mean check return over 5 tasks did not beat "
                                            "its best before the last 4 checks by 0.02 x (best - first check)")
    assert stop_reason(mean, 500, False) == "hit max_steps (500) before the mean check return over 5 tasks settled"
    capped = mean.model_copy(update={"min_steps": 500})
    assert stop_reason(capped, 500, False) == \
        "hit max_steps (500); min_steps = max_steps, so convergence was never judged"
    every = mean.model_copy(update={"stop_rule": "every-task", "tolerance": 0.1, "patience": 3})
    settled = ("settled (its median over the last 3 checks within 0.1 x (return bound - worst check) of the 3 "
               "before and of its best)")
    assert stop_reason(every, 400, True) == f"converged at step 400: every train task {settled}"
    assert stop_reason(every, 500, False, [0.5, 1.5]) == (
        f"hit max_steps (500): not every train task {settled} (still moving: 0.5, 1.5)")


def test_the_default_rule_leaves_the_recorded_recipe_as_published() -> None:
    """The published suites' recipes (and so their stale-reference check) read the same as before."""
    card = get_card("halfcheetah-vel-lite")
    assert set(card.expert.model_dump()) == {"min_steps", "max_steps", "eval_every", "eval_tasks", "patience",
                                             "min_improvement", "num_envs", "hidden", "batch_size",
                                             "updates_per_step", "seed"}
    every = card.expert.model_copy(update={"stop_rule": "every-task"})
    assert every.model_dump()["stop_rule"] == "every-task" and every.model_dump()["tolerance"] == 0.05
    assert ExpertRecipe.model_validate(every.model_dump()) == every


# ---------------------------------------------------------------------------- resuming in this process


class Crash(Exception):
    pass


def crash_at(k: int) -> Callable[[int], None]:
    """A `saved` hook that raises once the k-th checkpoint is on disk: the training dies there."""
    seen: list[int] = []

    def saved(step: int) -> None:
        seen.append(step)
        if len(seen) == k:
            raise Crash(f"killed after the checkpoint at step {step}")
    return saved


def learner_state(sac: BatchedSAC) -> dict[str, np.ndarray]:
    state = {f"w.{k}": v.numpy() for k, v in sac.state_dict().items()}
    state |= {f"adam.{k}": v.numpy() for k, v in sac.optimizer_state_dict().items()}
    state["generator"] = sac.generator.get_state().numpy()
    return state


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k  # bit-identical: no tolerance


# (family, episode length, parameter range, train tasks, recipe): MuJoCo envs are cut mid-episode by the kill.
CASES = {
    "pointgoal every-task": ("pointgoal", 20, (0.0, 180.0), [0.0, 90.0, 180.0],
                             dict(min_steps=200, max_steps=700, eval_every=100, num_envs=3, hidden=[16, 16],
                                  batch_size=16, stop_rule="every-task", patience=3, tolerance=0.01)),
    "halfcheetah mean-plateau": ("halfcheetah-vel", 40, (0.0, 1.5), [0.0, 1.5],
                                 dict(min_steps=150, max_steps=450, eval_every=110, num_envs=2, hidden=[16, 16],
                                      batch_size=16)),
    "hopper every-task": ("hopper-vel", 60, (0.0, 2.0), [0.5, 2.0],
                          dict(min_steps=100, max_steps=360, eval_every=90, num_envs=2, hidden=[16, 16],
                               batch_size=16, stop_rule="every-task", check_episodes=2)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_killed_training_resumes_bit_identical(case: str, tmp_path: Path) -> None:
    family_name, length, (lo, hi), tasks, fields = CASES[case]
    family, recipe = get_family(family_name), ExpertRecipe(**fields)

    def train(checkpoint: ExpertCheckpoint | None) -> tuple[BatchedSAC, ExpertTraining]:
        with torch_threads(1):  # as a build trains: the sums, and so the bits, depend on the thread count
            return train_expert(family, lo, hi, length, recipe, train_params=tasks, checkpoint=checkpoint)

    sac, record = train(None)
    path = tmp_path / "expert.npz"
    with pytest.raises(Crash):
        train(ExpertCheckpoint(path, saved=crash_at(2)))
    assert path.exists() and not list(tmp_path.glob(".*.tmp"))  # a whole file, no leftover
    resumed = ExpertCheckpoint(path)
    sac2, record2 = train(resumed)
    assert resumed.resumed_at == record.curve[1][0] and resumed.discarded == ""  # from the 2nd check
    assert_same(learner_state(sac), learner_state(sac2))
    assert record2 == record
    assert record.stop_reason.startswith(("converged at step", "hit max_steps"))
    assert len(record.check_params) == (len(tasks) if recipe.stop_rule == "every-task" else recipe.eval_tasks)
    if recipe.stop_rule == "every-task":  # the mean of the per-task returns is the curve
        assert [(s, float(np.mean(r))) for s, r in record.task_curve] == record.curve


def test_a_checkpoint_of_another_training_is_not_resumed(tmp_path: Path) -> None:
    family = get_family("pointgoal")
    recipe = ExpertRecipe(min_steps=100, max_steps=200, eval_every=100, num_envs=2, hidden=[8], batch_size=8)
    path = tmp_path / "expert.npz"
    with pytest.raises(Crash):
        train_expert(family, 0.0, 180.0, 20, recipe, checkpoint=ExpertCheckpoint(path, saved=crash_at(1)))
    with np.load(path) as z:
        arrays = dict(z)
    arrays["slot0.obs"] = arrays["slot0.obs"] + 1.0  # an env that would not replay to where it was saved
    with path.open("wb") as f:
        np.savez(f, **arrays)
    moved = ExpertCheckpoint(path)
    train_expert(family, 0.0, 180.0, 20, recipe, checkpoint=moved)
    assert moved.resumed_at is None and moved.discarded == "an env did not replay to its saved state"
    other = ExpertCheckpoint(path)  # `moved` wrote its own checkpoint at step 100 there
    train_expert(family, 0.0, 180.0, 20, recipe.model_copy(update={"seed": 7}), checkpoint=other)
    assert other.resumed_at is None and other.discarded == "written by another recipe or code version"
    path.write_bytes(b"not a checkpoint")
    damaged = ExpertCheckpoint(path)
    _, record = train_expert(family, 0.0, 180.0, 20, recipe, checkpoint=damaged)
    assert damaged.resumed_at is None and damaged.discarded.startswith("unreadable")
    assert record == train_expert(family, 0.0, 180.0, 20, recipe)[1]


# ---------------------------------------------------------------------------- resuming under the executors


@pytest.fixture(scope="module")
def uninterrupted() -> ExpertResult:
    """The tiny suite's expert unit, run inline without a checkpoint: what every resumed run must give."""
    result = run_build_unit(ExpertUnit(get_card(TINY)), None)
    assert isinstance(result, ExpertResult)
    return result


def assert_same_expert(result: Any, uninterrupted: ExpertResult) -> None:
    assert isinstance(result, ExpertResult)
    assert_same(result.state, uninterrupted.state)
    assert result.training == uninterrupted.training


def resumed_message(events: list[UnitEvent]) -> list[str]:
    return [e.message for e in events if e.message.startswith(("resumed at step", "trained from scratch"))]


def test_expert_killed_in_a_local_worker_resumes_from_its_checkpoint(
    tmp_path: Path, uninterrupted: ExpertResult
) -> None:
    card, events = get_card(TINY), []
    ckpt = tmp_path / "units" / "expert.npz"
    marker = tmp_path / "killed"
    # SIGKILLed at the first progress report past step 600: after the checkpoints at 250, 500 and 750 (n = 2 envs).
    ex = Wrapping(LocalExecutor(2, progress=events.append), lambda fn: KillOnce(fn, str(marker), "expert", 600))
    [result] = ex.map(run_build_unit, [ExpertUnit(card, checkpoint=ckpt)], name="expert")
    assert marker.exists()  # the worker really died
    assert_same_expert(result, uninterrupted)
    assert resumed_message(events)[-1].startswith("resumed at step 750;")
    assert not ckpt.exists()  # the finished expert's files supersede it


def test_expert_killed_in_a_ray_worker_resumes_from_its_checkpoint(
    ray_local: Any, tmp_path: Path, uninterrupted: ExpertResult
) -> None:
    card, events = get_card(TINY), []
    ckpt = tmp_path / "units" / "expert.npz"  # the same path on every attempt: Ray retries the unit here
    marker = tmp_path / "killed"
    ex = Wrapping(RayExecutor(progress=events.append), lambda fn: KillOnce(fn, str(marker), "expert", 600))
    [result] = ex.map(run_build_unit, [ExpertUnit(card, checkpoint=ckpt)], name="expert")
    assert marker.exists()
    assert_same_expert(result, uninterrupted)
    assert resumed_message(events)[-1].startswith("resumed at step 750;")


class CrashAfterCheckpoint:
    """Runs a unit; the first time the expert reports the checkpoint at `step`, raises (in this process)."""

    def __init__(self, fn: Callable[[Any, Any], Any], step: int) -> None:
        self.fn, self.step, self.crashed = fn, step, False

    def __call__(self, unit: Any, shared: Any) -> Any:
        from bmrl_bench import executor

        ctx = executor._context
        if ctx is not None and unit.label == "expert" and not self.crashed:
            sink = ctx.sink

            def crash(event: UnitEvent) -> None:
                sink(event)
                if event.message == f"checkpoint at step {self.step}":
                    self.crashed = True
                    raise Crash("the build died after the expert's checkpoint")
            ctx.sink, ctx.min_interval = crash, 0.0
        return self.fn(unit, shared)


def test_interrupted_build_resumes_the_expert_and_matches_an_uninterrupted_one(
    _minari_root: Path, tiny_root: Path
) -> None:
    card: SuiteCard = get_card(TINY)
    events: list[UnitEvent] = []
    crashing = CrashAfterCheckpoint(run_build_unit, 500)  # one instance: it crashes the first build only
    ex = Wrapping(LocalExecutor(1, progress=events.append), lambda _fn: crashing)
    with pytest.raises(Crash):
        build_suite(TINY, executor=ex)
    checkpoint = UnitCache(card, _minari_root).expert_checkpoint()
    assert checkpoint.exists() and not (expert_dir(card, _minari_root) / "weights.safetensors").exists()
    report_ = build_suite(TINY, executor=ex)
    assert "expert" in report_.units_run and not checkpoint.exists()
    assert resumed_message(events)[-1].startswith("resumed at step 500;")
    # The same bytes, references and expert as the session's uninterrupted build of the tiny suite.
    for i in range(card.num_tasks):
        mine, theirs = read_metadata(card.dataset_id(i), _minari_root), read_metadata(card.dataset_id(i), tiny_root)
        for key in ("bmrl_checksum", "ref_min_score", "ref_max_score", "bmrl_expert"):
            assert mine[key] == theirs[key], key
    for name in ("weights.safetensors", "config.json"):
        assert (expert_dir(card, _minari_root) / name).read_bytes() == (expert_dir(card, tiny_root) / name).read_bytes()
    record = json.loads((expert_dir(card, _minari_root) / "config.json").read_text())["training"]
    assert record["stop_reason"] == "hit max_steps (1000); min_steps = max_steps, so convergence was never judged"
