from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import TimeLimit

import bmrl_bench.families as fam
from bmrl_bench.errors import BmrlError, UnknownFamilyError
from bmrl_bench.families import (
    FAMILIES,
    Family,
    HalfCheetahVelEnv,
    HopperVelEnv,
    PointGoalEnv,
    get_family,
    pointgoal_optimal_return,
    register_envs,
)

# --------------------------------------------------------------------------- registry


def test_families_table() -> None:
    assert list(FAMILIES) == ["pointgoal", "halfcheetah-vel", "hopper-vel"]
    assert FAMILIES["pointgoal"] == Family(
        "pointgoal", "bmrl/PointGoal-v0", "goal_angle_deg", (0.0, 180.0), "deg", 20,
        optimal_return=pointgoal_optimal_return,
    )
    assert FAMILIES["halfcheetah-vel"].env_id == "bmrl/HalfCheetahVel-v0"
    assert FAMILIES["halfcheetah-vel"].param_name == "target_velocity"
    assert FAMILIES["halfcheetah-vel"].param_range == (0.0, 3.0)
    assert FAMILIES["halfcheetah-vel"].default_episode_length == 200
    assert FAMILIES["hopper-vel"].env_id == "bmrl/HopperVel-v0"
    assert FAMILIES["hopper-vel"].param_unit == "m/s"
    assert FAMILIES["hopper-vel"].default_episode_length == 1000
    assert get_family("hopper-vel") is FAMILIES["hopper-vel"]


def test_get_family_unknown() -> None:
    with pytest.raises(UnknownFamilyError) as exc:
        get_family("nope")
    assert isinstance(exc.value, BmrlError)
    assert str(exc.value) == (
        "unknown task family 'nope'; known: pointgoal, halfcheetah-vel, hopper-vel"
    )


def test_registered_specs() -> None:
    expected = {
        "bmrl/PointGoal-v0": ("bmrl_bench.families:PointGoalEnv", 20),
        "bmrl/HalfCheetahVel-v0": ("bmrl_bench.families:HalfCheetahVelEnv", 200),
        "bmrl/HopperVel-v0": ("bmrl_bench.families:HopperVelEnv", 1000),
    }
    for env_id, (entry_point, steps) in expected.items():
        spec = gym.spec(env_id)
        assert spec.entry_point == entry_point  # a string, so Minari can rebuild it
        assert spec.max_episode_steps == steps


def test_register_envs_idempotent() -> None:
    before = {f.env_id: gym.registry[f.env_id] for f in FAMILIES.values()}
    register_envs()
    register_envs()
    for k, spec in before.items():
        assert gym.registry[k] is spec


def test_gym_make_by_id_after_import() -> None:
    env = gym.make("bmrl/PointGoal-v0", goal_angle_deg=45.0)
    assert isinstance(env, TimeLimit)
    assert env.spec is not None and env.spec.max_episode_steps == 20
    assert env.spec.kwargs == {"goal_angle_deg": 45.0}
    obs, info = env.reset(seed=0)
    assert info["task_param"] == 45.0
    assert env.unwrapped.task_param == 45.0
    np.testing.assert_allclose(env.unwrapped.goal, [10 / math.sqrt(2), 10 / math.sqrt(2)])
    env.close()


def test_family_make_time_limit() -> None:
    env = get_family("pointgoal").make(30.0, max_episode_steps=5)
    assert isinstance(env, TimeLimit)
    assert env.spec is not None and env.spec.max_episode_steps == 5
    assert env.unwrapped.task_param == 30.0
    assert isinstance(env.unwrapped.task_param, float)
    env.reset(seed=0)
    flags = []
    for _ in range(5):
        _, _, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))
        flags.append((terminated, truncated))
        assert info["task_param"] == 30.0
    assert flags == [(False, False)] * 4 + [(False, True)]


def test_family_make_default_length_and_int_param() -> None:
    env = get_family("pointgoal").make(90)  # int param is passed on as float
    assert env.spec is not None and env.spec.max_episode_steps == 20
    assert env.spec.kwargs["goal_angle_deg"] == 90.0
    assert isinstance(env.spec.kwargs["goal_angle_deg"], float)
    env.close()


# --------------------------------------------------------------------------- env checker


# Box(-inf, inf) observations are the contract; the checker's "probably too low/high" is expected.
@pytest.mark.filterwarnings("ignore:.*Box observation space m")
@pytest.mark.parametrize("name,param", [("pointgoal", 60.0), ("halfcheetah-vel", 1.5), ("hopper-vel", 0.5)])
def test_check_env(name: str, param: float) -> None:
    env = get_family(name).make(param)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


# --------------------------------------------------------------------------- PointGoal


def test_pointgoal_spaces_and_reset() -> None:
    env = PointGoalEnv(goal_angle_deg=90.0)
    assert env.observation_space == gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    obs, info = env.reset(seed=123)
    assert obs.dtype == np.float32
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    assert info["task_param"] == 90.0
    np.testing.assert_allclose(env.goal, [0.0, 10.0], atol=1e-12)


def test_pointgoal_one_step_reward() -> None:
    # goal at angle 0: (10, 0). Step (0.5, -1) -> position (0.5, -1);
    # distance = sqrt(9.5^2 + 1^2) = sqrt(91.25).
    env = PointGoalEnv(goal_angle_deg=0.0)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.array([0.5, -1.0], dtype=np.float32))
    np.testing.assert_array_equal(obs, np.array([0.5, -1.0], dtype=np.float32))
    assert reward == pytest.approx(-math.sqrt(91.25), abs=1e-12)
    assert (terminated, truncated) == (False, False)
    assert info["task_param"] == 0.0


def test_pointgoal_one_step_reward_oblique_goal() -> None:
    # goal at 60 deg: (5, 5*sqrt(3)). Step (1, 1) -> (1, 1).
    env = PointGoalEnv(goal_angle_deg=60.0)
    env.reset(seed=0)
    _, reward, *_ = env.step(np.array([1.0, 1.0], dtype=np.float32))
    expected = -math.sqrt((5.0 - 1.0) ** 2 + (5.0 * math.sqrt(3.0) - 1.0) ** 2)
    assert reward == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("angle,action", [(90.0, (0.0, 1.0)), (0.0, (1.0, 0.0))])
def test_pointgoal_optimal_return_is_minus_45(angle: float, action: tuple[float, float]) -> None:
    env = get_family("pointgoal").make(angle)  # 20-step default limit
    env.reset(seed=0)
    total, steps, done = 0.0, 0, False
    while not done:
        pos = env.unwrapped._pos
        remaining = env.unwrapped.goal - pos
        # full speed toward the goal until reached, then stand still
        a = np.clip(remaining, -1.0, 1.0).astype(np.float32) if steps < 10 else np.zeros(2, np.float32)
        _, r, terminated, truncated, _ = env.step(a)
        total += r
        steps += 1
        done = terminated or truncated
    assert steps == 20
    assert total == pytest.approx(-45.0, abs=1e-5)
    assert np.allclose(env.unwrapped._pos, np.array(action) * 10.0, atol=1e-5)


def test_pointgoal_actions_clipped() -> None:
    env = PointGoalEnv(goal_angle_deg=90.0)
    env.reset(seed=0)
    obs, reward, *_ = env.step(np.array([5.0, -3.0], dtype=np.float32))
    np.testing.assert_array_equal(obs, [1.0, -1.0])
    # goal (0, 10): distance from (1, -1) = sqrt(1 + 121)
    assert reward == pytest.approx(-math.sqrt(122.0), abs=1e-6)
    obs, *_ = env.step(np.array([-0.25, 100.0]))
    np.testing.assert_array_equal(obs, np.array([0.75, 0.0], dtype=np.float32))


def test_pointgoal_never_terminates_and_reset_restarts() -> None:
    env = PointGoalEnv(goal_angle_deg=180.0)
    env.reset(seed=0)
    for _ in range(50):
        _, _, terminated, truncated, _ = env.step(np.array([-1.0, 0.0], dtype=np.float32))
        assert not terminated and not truncated
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, [0.0, 0.0])


# --------------------------------------------------------------------------- HalfCheetahVel


def test_halfcheetah_vel_reward_matches_info() -> None:
    target = 1.5
    env = get_family("halfcheetah-vel").make(target)
    obs, info = env.reset(seed=0)
    assert info["task_param"] == 1.5
    assert obs.shape == (17,)  # the v5 observation
    rng = np.random.default_rng(0)
    for _ in range(10):
        a = rng.uniform(-1.0, 1.0, size=6)
        _, reward, terminated, truncated, info = env.step(a)
        expected = -abs(info["x_velocity"] - target) - 0.05 * float(np.sum(a**2))
        assert reward == pytest.approx(expected, abs=1e-10)
        assert info["reward_velocity"] == pytest.approx(-abs(info["x_velocity"] - target), abs=1e-12)
        assert info["reward_ctrl"] == pytest.approx(-0.05 * float(np.sum(a**2)), abs=1e-12)
        assert info["task_param"] == 1.5
        assert not terminated and not truncated
    env.close()


def test_halfcheetah_vel_velocity_as_v5_and_zero_action() -> None:
    env = HalfCheetahVelEnv(target_velocity=2.0)
    env.reset(seed=1)
    x_before = float(env.data.qpos[0])
    a = np.zeros(6)
    _, reward, _, _, info = env.step(a)
    x_after = float(env.data.qpos[0])
    assert env.dt == pytest.approx(0.05)
    assert info["x_velocity"] == pytest.approx((x_after - x_before) / env.dt, abs=1e-12)
    assert info["reward_ctrl"] == 0.0
    assert reward == pytest.approx(-abs(info["x_velocity"] - 2.0), abs=1e-12)


def test_halfcheetah_vel_same_dynamics_as_v5() -> None:
    ours = HalfCheetahVelEnv(target_velocity=0.3)
    base = gym.make("HalfCheetah-v5").unwrapped
    o1, _ = ours.reset(seed=7)
    o2, _ = base.reset(seed=7)
    np.testing.assert_array_equal(o1, o2)
    a = np.full(6, 0.4)
    o1, r1, _, _, i1 = ours.step(a)
    o2, r2, _, _, i2 = base.step(a)
    np.testing.assert_array_equal(o1, o2)
    assert i1["x_velocity"] == i2["x_velocity"]
    assert r1 != r2


# --------------------------------------------------------------------------- HopperVel


def test_hopper_vel_reward_formula() -> None:
    target = 0.8
    env = get_family("hopper-vel").make(target)
    _, info = env.reset(seed=0)
    assert info["task_param"] == 0.8
    rng = np.random.default_rng(1)
    for _ in range(5):
        a = rng.uniform(-0.3, 0.3, size=3)
        _, reward, terminated, _, info = env.step(a)
        assert not terminated
        expected = 1.0 - abs(info["x_velocity"] - target) - 0.001 * float(np.sum(a**2))
        assert reward == pytest.approx(expected, abs=1e-10)
        assert info["reward_survive"] == 1.0
        assert info["task_param"] == 0.8
    env.close()


def test_hopper_vel_terminates_when_unhealthy_by_state() -> None:
    env = HopperVelEnv(target_velocity=1.0)
    env.reset(seed=0)
    qpos = env.init_qpos.copy()
    qpos[1] = 0.5  # torso height below the healthy z range (0.7, inf)
    env.set_state(qpos, env.init_qvel.copy())
    assert not env.is_healthy
    _, reward, terminated, _, info = env.step(np.zeros(3))
    assert terminated is True
    assert terminated == (not env.is_healthy)
    # as in Hopper-v5, no healthy bonus on the step that ends unhealthy
    assert info["reward_survive"] == 0.0
    assert reward == pytest.approx(-abs(info["x_velocity"] - 1.0), abs=1e-12)


def test_hopper_vel_falls_under_constant_action() -> None:
    env = HopperVelEnv(target_velocity=1.0)
    env.reset(seed=0)
    a = np.array([1.0, -1.0, 1.0])
    for t in range(1000):  # noqa: B007 - t is read after the loop: the step the hopper fell at
        _, reward, terminated, truncated, info = env.step(a)
        assert terminated == (not env.is_healthy)
        assert reward == pytest.approx(
            info["reward_survive"] - abs(info["x_velocity"] - 1.0) - 0.003, abs=1e-10
        )
        if terminated:
            break
    assert terminated, "the hopper should fall under a constant extreme action"
    assert t < 200


# --------------------------------------------------------------------------- MuJoCo log


def test_import_silences_mujoco_log(tmp_path: Path) -> None:
    code = (
        "import bmrl_bench.families as f\n"
        "e = f.get_family('halfcheetah-vel').make(1.0)\n"
        "e.reset(seed=0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ}, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "settotalmass" not in proc.stdout + proc.stderr
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_module_entry_points_are_importable() -> None:
    for env_id in ("bmrl/PointGoal-v0", "bmrl/HalfCheetahVel-v0", "bmrl/HopperVel-v0"):
        module, attr = gym.spec(env_id).entry_point.split(":")
        assert module == "bmrl_bench.families"
        assert getattr(fam, attr) is not None
