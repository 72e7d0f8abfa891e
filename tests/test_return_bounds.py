"""Feasible returns: the families' return bounds (by hand, and attained by real episodes) and the board's refusals."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from bmrl_bench.errors import SubmissionError
from bmrl_bench.families import MUJOCO_MAX_SPEED, get_family
from bmrl_bench.leaderboard import SuiteReference, submit

from .test_leaderboard import make_results, published, tree_digest, write_json

POINTGOAL = get_family("pointgoal")


def pointgoal_return(goal_angle_deg: float, steps: int, policy) -> float:  # noqa: ANN001 - t -> action
    env = POINTGOAL.make(goal_angle_deg, max_episode_steps=steps)
    env.reset(seed=0)
    total, t, done = 0.0, 0, False
    while not done:
        t += 1
        _, reward, terminated, truncated, _ = env.step(np.asarray(policy(t), dtype=np.float32))
        total += reward
        done = terminated or truncated
    return total


def test_pointgoal_bounds_by_hand() -> None:
    # One step towards (0, 10): the nearest reachable point is (0, 1), distance 9; the farthest (+-1, -1), sqrt(122).
    low, high = POINTGOAL.return_bounds(1, 90.0)
    assert high == pytest.approx(-9.0, abs=1e-5) and low == pytest.approx(-math.sqrt(122.0), abs=1e-5)
    # Two steps towards (10, 0): distances 9 then 8.
    assert POINTGOAL.return_bounds(2, 0.0)[1] == pytest.approx(-17.0, abs=1e-5)
    # 20 steps towards 90 degrees: 9 + 8 + ... + 1 + 0 * 11 = 45.
    assert POINTGOAL.return_bounds(20, 90.0)[1] == pytest.approx(-45.0, abs=1e-2)
    # 45 degrees: the diagonal closes sqrt(2) per step for 7 steps: -(70 - sqrt(2) * 28) = -30.402.
    assert POINTGOAL.return_bounds(20, 45.0)[1] == pytest.approx(-(70.0 - math.sqrt(2.0) * 28.0), abs=1e-2)
    # The family's bounds (no task) are those of 45 degrees, the extreme goal.
    assert POINTGOAL.return_bounds(20) == POINTGOAL.return_bounds(20, 45.0)
    low, high = POINTGOAL.return_bounds(20)
    assert low == pytest.approx(-(20 * 10.0 + math.sqrt(2.0) * 210.0), abs=1e-2)  # -sum_t (10 + sqrt(2) t)
    assert high < -30.0


@pytest.mark.parametrize("angle", [0.0, 30.0, 45.0, 90.0, 135.0, 170.0])
def test_pointgoal_bounds_are_attained(angle: float) -> None:
    """The analytic optimum is a real trajectory (step to the nearest point of the reachable box [-t, t]^2),
    and so is the worst (run to the opposite corner): the bounds are exact, not loose."""
    steps = 20
    goal = 10.0 * np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])
    low, high = POINTGOAL.return_bounds(steps, angle)
    best = pointgoal_return(angle, steps, lambda t: np.clip(goal, -t, t) - np.clip(goal, -(t - 1), t - 1))
    away = -np.where(goal >= 0, 1.0, -1.0)
    worst = pointgoal_return(angle, steps, lambda t: away)
    slack = 1e-7 * steps * steps * (10.0 + 2 * steps)  # float32 positions (families._pointgoal_bounds)
    assert high - slack - 1e-4 <= best <= high
    assert low <= worst <= low + slack + 1e-4


def test_mujoco_bounds_by_hand() -> None:
    # HalfCheetah-Vel: reward = -|v - target| - 0.05 ||a||^2 with 6 actuators; 200 steps.
    assert get_family("halfcheetah-vel").return_bounds(200, 1.475) == pytest.approx(
        (200 * (-(MUJOCO_MAX_SPEED + 1.475) - 0.05 * 6), 0.0))
    # Hopper-Vel: healthy reward 1 per step at most, control cost 0.001 ||a||^2 with 3 actuators; 1000 steps.
    assert get_family("hopper-vel").return_bounds(1000, 2.0) == pytest.approx(
        (1000 * (-(MUJOCO_MAX_SPEED + 2.0) - 0.001 * 3), 1000.0))
    assert get_family("hopper-vel").return_bounds(1000) == pytest.approx(
        (1000 * (-(MUJOCO_MAX_SPEED + 3.0) - 0.001 * 3), 1000.0))  # the family: the fastest target, 3 m/s


def test_a_random_halfcheetah_episode_is_feasible() -> None:
    family = get_family("halfcheetah-vel")
    env = family.make(1.0, max_episode_steps=50)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    total, rewards = 0.0, []
    for _ in range(50):
        _, r, _, _, _ = env.step(rng.uniform(-1, 1, size=6).astype(np.float32))
        rewards.append(r)
        total += r
    low, high = family.return_bounds(50, 1.0)
    assert max(rewards) <= 0.0 and low < total <= high


# ---------------------------------------------------------------------------- the board refuses impossible returns


def bounded(name: str, version: int) -> SuiteReference:
    """tiny-lb as a PointGoal suite of 20-step episodes: test tasks at 45 and 135 degrees."""
    return dataclasses.replace(published(name, version), family="pointgoal", episode_length=20)


FEASIBLE = {2: [-100.0, -110.0, -120.0, -130.0], 3: [-150.0, -140.0, -100.0, -90.0]}  # every episode mean -/+ 5 or 10


def test_feasible_returns_are_accepted(tmp_path: Path) -> None:
    entry = submit(write_json(tmp_path / "a.json", make_results(means=FEASIBLE)), tmp_path / "board", bounded)
    assert entry.seeds == (0, 1, 2, 3)


@pytest.mark.parametrize(
    ("case", "value", "shown"),
    [
        ("positive", 5.0, "5"),  # PointGoal's reward is minus a distance
        ("near-zero", -0.001, "-0.001"),  # better than the optimum, -30.40 on this task
        ("huge", -1e12, "-1e+12"),
    ],
)
def test_impossible_returns_are_refused(tmp_path: Path, case: str, value: float, shown: str) -> None:
    board = tmp_path / "board"
    submit(write_json(tmp_path / "ok.json", make_results("seeded", means=FEASIBLE)), board, bounded)
    data = make_results(means=FEASIBLE)
    run = next(r for r in data["returns"] if r["seed"] == 2 and r["task_index"] == 3)
    run["episode_returns"][1] = value
    path = write_json(tmp_path / f"{case}.json", data)
    low, high = get_family("pointgoal").return_bounds(20, 135.0)
    before = tree_digest(board)
    with pytest.raises(SubmissionError) as info:
        submit(path, board, bounded)
    assert str(info.value) == (
        f"{path}: seed 2, task 03, episode 1: return {shown} is impossible on pointgoal with 20 steps"
        f" (every return lies in [{low:.6g}, {high:.6g}]); submit the returns `bmrl-bench eval` wrote"
    )
    assert f"{high:.6g}" == "-30.4" and f"{low:.6g}" == "-496.987"
    assert tree_digest(board) == before
