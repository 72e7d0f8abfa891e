"""The analytic optimum of a PointGoal task: attained by its policy in the real env, never beaten by a search,
equal to a value worked out by hand, and inside the family's return bounds."""
from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

from bmrl_bench.families import get_family, pointgoal_goal, pointgoal_optimal_policy, pointgoal_optimal_return
from bmrl_bench.published import suite_reference

POINTGOAL = get_family("pointgoal")
STEPS = POINTGOAL.default_episode_length  # 20, as in pointgoal-3 and pointgoal-semicircle
# pointgoal-3's test goals (0, 90, 180), pointgoal-semicircle's 70 (off the axes and the diagonal), the diagonal.
SEARCHED_ANGLES = [0.0, 90.0, 180.0, 70.0, 45.0]


def env_return(angle: float, steps: int, act: Callable[[np.ndarray, int], np.ndarray]) -> float:
    """One episode of the registered env; `act(obs, t)` gives the action of step t (1-based)."""
    env = POINTGOAL.make(angle, max_episode_steps=steps)
    obs, _ = env.reset(seed=0)
    total, t, done = 0.0, 0, False
    while not done:
        t += 1
        obs, reward, terminated, truncated, _ = env.step(np.asarray(act(obs, t), dtype=np.float32))
        total += reward
        done = terminated or truncated
    assert t == steps
    return total


def open_loop_return(goal: np.ndarray, actions: np.ndarray) -> float:
    """The return of an action sequence (T, 2), in float64, as the env defines it (clip, add, minus the distance)."""
    positions = np.cumsum(np.clip(actions, -1.0, 1.0), axis=0)
    return -float(np.linalg.norm(positions - goal, axis=1).sum())


# ---------------------------------------------------------------------------- (a) the policy attains it


@pytest.mark.parametrize("angle", [0.0, 10.0, 33.3, 45.0, 70.0, 90.0, 110.0, 170.0, 180.0])
@pytest.mark.parametrize("steps", [1, 5, STEPS])
def test_the_optimal_policy_attains_the_optimum_in_the_env(angle: float, steps: int) -> None:
    policy = pointgoal_optimal_policy(angle)
    got = env_return(angle, steps, lambda obs, t: policy(obs))
    # The env keeps float32 positions: about 1e-6 of rounding per step at most.
    assert got == pytest.approx(pointgoal_optimal_return(angle, steps), abs=1e-4)


def test_the_policy_stands_on_the_nearest_point_of_the_reachable_box() -> None:
    goal = pointgoal_goal(70.0)  # (3.420, 9.397)
    policy = pointgoal_optimal_policy(70.0)
    pos = np.zeros(2, dtype=np.float32)
    for t in range(1, STEPS + 1):
        action = policy(pos)
        assert action.dtype == np.float32 and np.all(np.abs(action) <= 1.0)
        pos = (pos + action).astype(np.float32)
        np.testing.assert_allclose(pos, np.clip(goal, -t, t), atol=1e-5)


# ---------------------------------------------------------------------------- (b) no search beats it


def grid_search_return(goal: np.ndarray, steps: int, spacing: float = 0.5) -> float:
    """The exact best return over every action sequence with actions in {-1, -0.5, 0, 0.5, 1}^2 (25^steps of them),
    by dynamic programming on the lattice of positions they reach."""
    n = int(round(steps / spacing))
    axis = spacing * np.arange(-n, n + 1)
    px, py = np.meshgrid(axis, axis, indexing="ij")
    reward = -np.hypot(px - goal[0], py - goal[1])  # of standing at each lattice point after a step
    moves = range(-int(round(1 / spacing)), int(round(1 / spacing)) + 1)
    to_go = np.zeros_like(reward)  # best return of the steps still to come, from each point
    for _ in range(steps):
        gain = reward + to_go  # of arriving at each point
        best = np.full_like(reward, -np.inf)
        for dx in moves:
            for dy in moves:  # best[i, j] = max over moves of gain[i + dx, j + dy]; off the lattice: -inf
                shifted = np.full_like(reward, -np.inf)
                src_x = slice(max(dx, 0), len(axis) + min(dx, 0))
                dst_x = slice(max(-dx, 0), len(axis) + min(-dx, 0))
                src_y = slice(max(dy, 0), len(axis) + min(dy, 0))
                dst_y = slice(max(-dy, 0), len(axis) + min(-dy, 0))
                shifted[dst_x, dst_y] = gain[src_x, src_y]
                best = np.maximum(best, shifted)
        to_go = best
    return float(to_go[n, n])  # from (0, 0)


def optimised_actions(goal: np.ndarray, steps: int, starts: int = 4, seed: int = 0) -> np.ndarray:
    """A direct optimisation over the open-loop action sequence (L-BFGS-B inside [-1, 1]^(2T)) from random starts."""
    rng = np.random.default_rng(seed)

    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        actions = flat.reshape(steps, 2)
        offsets = np.cumsum(actions, axis=0) - goal
        dist = np.sqrt((offsets**2).sum(axis=1) + 1e-8)  # smoothed at the goal, where the distance has a kink
        unit = offsets / dist[:, None]
        grad = np.cumsum(unit[::-1], axis=0)[::-1]  # action s moves every position from s on
        return float(dist.sum()), grad.ravel()

    best: tuple[float, np.ndarray] | None = None
    for start in [np.zeros(2 * steps)] + [rng.uniform(-1, 1, 2 * steps) for _ in range(starts - 1)]:
        fit = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(-1.0, 1.0)] * (2 * steps))
        if best is None or fit.fun < best[0]:
            best = (float(fit.fun), fit.x.reshape(steps, 2))
    assert best is not None
    return best[1]


@pytest.mark.parametrize("angle", SEARCHED_ANGLES)
def test_no_grid_search_beats_the_optimum(angle: float) -> None:
    goal = pointgoal_goal(angle)
    optimum = pointgoal_optimal_return(angle, STEPS)
    searched = grid_search_return(goal, STEPS)
    assert searched <= optimum + 1e-9
    if angle in (0.0, 90.0, 180.0):  # the optimal path lies on the lattice: the search finds it
        assert searched == pytest.approx(optimum, abs=1e-9)
    else:  # off the lattice it cannot stand on the goal (about 0.1 away for the last ~12 steps): close, below
        assert optimum - 2.0 < searched < optimum


@pytest.mark.parametrize("angle", SEARCHED_ANGLES)
def test_no_optimised_action_sequence_beats_the_optimum(angle: float) -> None:
    goal = pointgoal_goal(angle)
    optimum = pointgoal_optimal_return(angle, STEPS)
    actions = optimised_actions(goal, STEPS)
    assert open_loop_return(goal, actions) <= optimum + 1e-9
    got = env_return(angle, STEPS, lambda obs, t: actions[t - 1])  # the same sequence in the real env
    assert got <= optimum + 1e-4
    assert got == pytest.approx(optimum, abs=1e-2)  # and the optimiser finds it: the search is a real one


def test_the_straight_line_is_not_optimal_under_a_box_speed_limit() -> None:
    # At 70 degrees the straight line at the box's top speed, (cot 70, 1) per step, loses to moving both axes at
    # full speed first: the optimum is not the "full speed along the straight line" unless the goal is on
    # an axis or a diagonal. The grid search (which knows nothing of the analytic answer) finds the better path too.
    goal = pointgoal_goal(70.0)
    step = goal / np.abs(goal).max()
    line = env_return(70.0, STEPS, lambda obs, t: np.clip(goal - obs, -np.abs(step), np.abs(step)))
    optimum = pointgoal_optimal_return(70.0, STEPS)
    assert line < optimum - 1.0
    assert grid_search_return(goal, STEPS) > line


# ---------------------------------------------------------------------------- (c) by hand


def test_the_optimum_by_hand() -> None:
    # 90 degrees, goal (0, 10): one unit closer per step for 10 steps, then on the goal:
    # -(9 + 8 + ... + 1 + 0 * 11) = -45 over 20 steps; over 5 steps -(9 + 8 + 7 + 6 + 5) = -35.
    assert pointgoal_optimal_return(90.0, 20) == pytest.approx(-45.0, abs=1e-12)
    assert pointgoal_optimal_return(90.0, 5) == pytest.approx(-35.0, abs=1e-12)
    assert pointgoal_optimal_return(0.0, 20) == pointgoal_optimal_return(180.0, 20) == pytest.approx(-45.0, abs=1e-12)
    # 45 degrees, goal (5 sqrt 2, 5 sqrt 2) = (7.071, 7.071): the diagonal step (1, 1) closes sqrt 2 per step, so
    # after t <= 7 steps the distance is sqrt 2 (5 sqrt 2 - t) = 10 - sqrt 2 t, and 0 from step 8 on:
    # -sum_{t=1..7} (10 - sqrt 2 t) = -(70 - 28 sqrt 2) = -30.4020.
    assert pointgoal_optimal_return(45.0, 20) == pytest.approx(-(70.0 - 28.0 * math.sqrt(2.0)), abs=1e-12)
    assert pointgoal_optimal_return(45.0, 20) == pytest.approx(-30.4020, abs=1e-4)


# ---------------------------------------------------------------------------- (d) inside the family's bounds


@pytest.mark.parametrize("angle", [0.0, 10.0, 45.0, 70.0, 90.0, 110.0, 170.0, 180.0])
def test_the_optimum_is_the_upper_return_bound(angle: float) -> None:
    low, high = POINTGOAL.return_bounds(STEPS, angle)
    optimum = pointgoal_optimal_return(angle, STEPS)
    family_low, family_high = POINTGOAL.return_bounds(STEPS)
    assert family_low <= low < optimum <= high <= family_high <= 0.0
    # The bound is the optimum plus the float32 slack (1e-7 T^2 (R + 2T) = 0.002): tight, not loose.
    assert high - optimum == pytest.approx(1e-7 * STEPS**2 * (10.0 + 2 * STEPS), rel=1e-9)


# ---------------------------------------------------------------------------- the measuring script


def test_the_script_swaps_only_ref_max_for_the_optimum() -> None:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "pointgoal_optimum.py"
    spec = importlib.util.spec_from_file_location("pointgoal_optimum", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    today, analytic = suite_reference("pointgoal-3", 0), script.analytic_reference("pointgoal-3", 0)
    assert [t.ref_max for t in analytic.test_tasks] == [-45.0, -45.0, -45.0]  # goals at 0, 90 and 180 degrees
    assert [t._replace(ref_max=0.0) for t in analytic.test_tasks] == [t._replace(ref_max=0.0) for t in today.test_tasks]
    assert dataclasses.replace(analytic, test_tasks=today.test_tasks) == today
