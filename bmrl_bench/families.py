"""Task families as Gymnasium environments, and the `Family` records.

Each family is one Gymnasium env id parameterised by a single JSON-friendly float
keyword argument (the task parameter). Within a family only the reward varies with
the parameter; dynamics and observations are shared.

- ``bmrl/PointGoal-v0`` (``goal_angle_deg``): the tiMe paper's 2-D point toy.
- ``bmrl/HalfCheetahVel-v0`` (``target_velocity``): HalfCheetah-v5 tracking a velocity.
- ``bmrl/HopperVel-v0`` (``target_velocity``): Hopper-v5 tracking a velocity.

Every env exposes ``self.task_param`` and returns ``info["task_param"]`` (float)
from ``reset`` and ``step``. Importing this module registers the three ids.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces, utils
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

from bmrl_bench.errors import UnknownFamilyError
from bmrl_bench.registration import register_envs  # the ids' one table, light enough for `import bmrl_bench`

# MuJoCo 4 warns "compiler attribute 'settotalmass' is deprecated" when the
# HalfCheetah model is compiled, printing it and appending it to MUJOCO_LOG.TXT in
# the working directory. A user warning callback replaces both.
mujoco.set_mju_user_warning(lambda msg: None)

__all__ = [
    "FAMILIES",
    "Family",
    "HalfCheetahVelEnv",
    "HopperVelEnv",
    "PointGoalEnv",
    "get_family",
    "pointgoal_goal",
    "pointgoal_optimal_policy",
    "pointgoal_optimal_return",
    "register_envs",
]


POINTGOAL_RADIUS = 10.0  # distance of every goal from the start (0, 0); `Family.make` never changes it


def pointgoal_goal(goal_angle_deg: float, radius: float = POINTGOAL_RADIUS) -> np.ndarray:
    """The goal (x, y), float64, of the task at `goal_angle_deg` degrees on the circle of `radius`."""
    theta = math.radians(float(goal_angle_deg))
    return np.array([radius * math.cos(theta), radius * math.sin(theta)], dtype=np.float64)


def pointgoal_optimal_return(goal_angle_deg: float, episode_length: int) -> float:
    """The best return any policy can get on the PointGoal task `goal_angle_deg` in `episode_length` steps.

    The reward of step t is minus the distance from the position p_t to the goal g, and p_t can be any
    point of the box [-t, t]^2 (start (0, 0), actions clipped per axis into [-1, 1]), so every step
    earns at most -dist(g, box_t). `pointgoal_optimal_policy` earns exactly that at every step at once.
    The speed limit is a box, not a disc: the best path moves both axes at full speed (diagonally)
    until one coordinate reaches the goal's, so it is a straight line only for goals on an axis or a diagonal.
    Computed in float64; an episode of the env (float32 positions) gets it to within about 1e-5.
    """
    goal = pointgoal_goal(goal_angle_deg)
    t = np.arange(1, int(episode_length) + 1, dtype=np.float64)[:, None]  # (T, 1)
    return -float(np.linalg.norm(goal - np.clip(goal, -t, t), axis=1).sum())


def pointgoal_optimal_policy(goal_angle_deg: float) -> Callable[[np.ndarray], np.ndarray]:
    """An optimal policy of the task `goal_angle_deg`: obs (x, y) -> clip(goal - obs, -1, 1), float32.

    Per axis it moves min(1, what is left) towards the goal, so from (0, 0) it stands on
    clip(goal, -t, t), the box_t point nearest the goal, after every step t: see `pointgoal_optimal_return`.
    """
    goal = pointgoal_goal(goal_angle_deg)

    def policy(obs: np.ndarray) -> np.ndarray:
        return np.clip(goal - np.asarray(obs, dtype=np.float64).reshape(2), -1.0, 1.0).astype(np.float32)

    return policy


class PointGoalEnv(gym.Env[np.ndarray, np.ndarray]):
    """A point mass in the plane that must reach a goal on the upper semicircle.

    Starts at (0, 0) exactly; observation is the position (x, y) as float32;
    action (dx, dy) is clipped into [-1, 1]^2; next position = position + action;
    reward = -(distance from the new position to the goal). Never terminates:
    episodes end by the time limit only (20 steps by default).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, goal_angle_deg: float = 90.0, radius: float = POINTGOAL_RADIUS) -> None:
        self.goal_angle_deg = float(goal_angle_deg)
        self.radius = float(radius)
        if not (math.isfinite(self.goal_angle_deg) and math.isfinite(self.radius)):
            raise ValueError(
                f"PointGoalEnv needs finite goal_angle_deg and radius, got "
                f"{goal_angle_deg!r} and {radius!r}"
            )
        self.task_param = self.goal_angle_deg
        self.goal = pointgoal_goal(self.goal_angle_deg, self.radius)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._pos = np.zeros(2, dtype=np.float32)

    def _distance(self) -> float:
        # Measured from the float32 position that the observation shows, so the
        # reward is exactly a function of the next observation.
        return float(np.linalg.norm(self._pos.astype(np.float64) - self.goal))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._pos = np.zeros(2, dtype=np.float32)
        return self._pos.copy(), {"task_param": self.task_param, "distance": self._distance()}

    def step(
        self, action: np.ndarray
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float32).reshape(2), -1.0, 1.0)
        self._pos = (self._pos + a).astype(np.float32)
        distance = self._distance()
        info = {"task_param": self.task_param, "distance": distance}
        return self._pos.copy(), -distance, False, False, info


class _VelocityTask:
    """What the velocity families add to a MuJoCo env: the task `target_velocity`, the velocity term of the
    reward, and `info["task_param"]`. A mixin before the MuJoCo class, whose `step` calls the `_get_rew` that
    the family defines."""

    def __init__(self, target_velocity: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Re-record the constructor args so that pickling/copying rebuilds the family's class.
        utils.EzPickle.__init__(self, target_velocity=target_velocity, **kwargs)
        self.target_velocity = float(target_velocity)
        self.task_param = self.target_velocity

    def _reward_velocity(self, x_velocity: float) -> float:
        return -abs(float(x_velocity) - self.target_velocity)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        info["task_param"] = self.task_param
        return obs, float(reward), terminated, truncated, info

    def _get_reset_info(self) -> dict[str, Any]:
        return {**super()._get_reset_info(), "task_param": self.task_param}


class HalfCheetahVelEnv(_VelocityTask, HalfCheetahEnv):
    """HalfCheetah-v5 rewarded for running at ``target_velocity``.

    reward = -|v_x - target_velocity| - 0.05 * ||a||^2, where v_x is HalfCheetah-v5's
    own ``(x_after - x_before) / dt``. The observation is v5's.
    """

    def __init__(self, target_velocity: float = 1.0, **kwargs: Any) -> None:
        kwargs.setdefault("ctrl_cost_weight", 0.05)
        super().__init__(target_velocity, **kwargs)

    def _get_rew(self, x_velocity: float, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        reward_velocity = self._reward_velocity(x_velocity)
        ctrl_cost = float(self.control_cost(action))
        reward = reward_velocity - ctrl_cost
        return reward, {"reward_velocity": reward_velocity, "reward_ctrl": -ctrl_cost}


class HopperVelEnv(_VelocityTask, HopperEnv):
    """Hopper-v5 rewarded for hopping at ``target_velocity``.

    reward = healthy_reward - |v_x - target_velocity| - 0.001 * ||a||^2, where the
    healthy reward is 1 while healthy (as in v5 it is 0 on the step that makes the
    hopper unhealthy); terminated = not is_healthy, exactly as Hopper-v5.
    """

    def _get_rew(self, x_velocity: float, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        reward_velocity = self._reward_velocity(x_velocity)
        healthy_reward = float(self.healthy_reward)
        ctrl_cost = float(self.control_cost(action))
        reward = healthy_reward + reward_velocity - ctrl_cost
        return reward, {
            "reward_velocity": reward_velocity,
            "reward_ctrl": -ctrl_cost,
            "reward_survive": healthy_reward,
        }


@dataclass(frozen=True)
class Family:
    """A task family: one registered env id and the float kwarg that picks the task."""

    name: str
    env_id: str
    param_name: str
    param_range: tuple[float, float]
    param_unit: str
    default_episode_length: int
    reward_varies_only: bool = True  # the parameter changes the reward, never the dynamics
    # (param, episode_length) -> the best return any policy can get on the task, where it is known in
    # closed form: it is then the task's `ref_max` (no learned policy can beat it). None: ref_max is learned.
    optimal_return: Callable[[float, int], float] | None = None

    def make(self, param: float, max_episode_steps: int | None = None) -> gym.Env:
        """``gym.make`` this family's env for task ``param`` (default episode length if None)."""
        register_envs()
        steps = self.default_episode_length if max_episode_steps is None else int(max_episode_steps)
        return gym.make(self.env_id, max_episode_steps=steps, **{self.param_name: float(param)})

    def return_bounds(self, episode_length: int, param: float | None = None) -> tuple[float, float]:
        """(lowest, highest) return any policy can get in `episode_length` steps; a return outside is impossible.

        With `param` the bounds are those of that task (tighter where the task matters);
        without, they hold for every task of the family. Derivations: `_RETURN_BOUNDS`.
        """
        return _RETURN_BOUNDS[self.name](int(episode_length), param)

    @property
    def ref_max_rule(self) -> str:
        """How this family's `ref_max` is chosen: "optimal" (the analytic optimum) or "learned" (the better of
        the behaviour SAC and the family-wide expert). Recorded per dataset; a dataset built under another rule
        has stale references (`data.dataset_status`). Datasets from before the rule was recorded were "learned"."""
        return "learned" if self.optimal_return is None else "optimal"


FAMILIES: dict[str, Family] = {
    "pointgoal": Family(
        "pointgoal", "bmrl/PointGoal-v0", "goal_angle_deg", (0.0, 180.0), "deg", 20,
        optimal_return=pointgoal_optimal_return,
    ),
    "halfcheetah-vel": Family(
        "halfcheetah-vel", "bmrl/HalfCheetahVel-v0", "target_velocity", (0.0, 3.0), "m/s", 200
    ),
    "hopper-vel": Family(
        "hopper-vel", "bmrl/HopperVel-v0", "target_velocity", (0.0, 3.0), "m/s", 1000
    ),
}

# ---------------------------------------------------------------------------- return bounds


def _pointgoal_bounds(episode_length: int, param: float | None) -> tuple[float, float]:
    """Exact: attained by some action sequence, so no policy does better or worse.

    The start is fixed at (0, 0) and each step adds an action in [-1, 1]^2, so the
    positions reachable after t steps are exactly the box [-t, t]^2, and the box's
    nearest (farthest) point to the goal moves by at most 1 per coordinate from one t to
    the next: greedily standing there every step is a legal trajectory. The return is
    minus the summed distances, so best = -sum_t dist(goal, box_t) (`pointgoal_optimal_return`), worst = -sum_t of the
    farthest corner's distance. Over all goals on the semicircle both are extreme at
    45 degrees (the goal nearest a box corner; the sum |g_x| + |g_y| is largest).
    """
    angle = 45.0 if param is None else float(param)
    goal = pointgoal_goal(angle)
    t = np.arange(1, episode_length + 1, dtype=np.float64)[:, None]  # (T, 1)
    farthest = np.linalg.norm(np.abs(goal) + t, axis=1)  # the corner opposite the goal
    # Positions are float32: each step rounds them by at most 2^-24 of their size (< R + 2T),
    # and those errors add up over the steps; this slack covers that and nothing more.
    T = float(episode_length)
    slack = 1e-7 * T * T * (POINTGOAL_RADIUS + 2.0 * T)
    return -float(farthest.sum()) - slack, pointgoal_optimal_return(angle, episode_length) + slack


# MuJoCo does not cap velocities, so a speed bound is one of plausibility: the fastest published
# HalfCheetah runners reach about 15 m/s (returns near 15,000 over 1000 steps of reward ~ v_x),
# Hopper about 4 m/s. 100 m/s is far beyond both; a simulation that fast has diverged.
MUJOCO_MAX_SPEED = 100.0


def _mujoco_terms(env_id: str) -> tuple[int, float, float]:
    """(action dimension, control-cost weight, healthy reward) as the env itself defines them."""
    if env_id not in _MUJOCO_TERMS:
        register_envs()
        env = gym.make(env_id).unwrapped
        _MUJOCO_TERMS[env_id] = (int(env.action_space.shape[0]), float(env._ctrl_cost_weight),
                                 float(getattr(env, "_healthy_reward", 0.0)))
        env.close()
    return _MUJOCO_TERMS[env_id]


_MUJOCO_TERMS: dict[str, tuple[int, float, float]] = {}


def _velocity_bounds(family: str, episode_length: int, param: float | None) -> tuple[float, float]:
    """Per step: reward = healthy - |v_x - target| - w * ||a||^2 with healthy in [0, h] (h = 0 for
    HalfCheetah, 1 for Hopper), a in [-1, 1]^n (control cost at most w * n) and |v_x| at most
    MUJOCO_MAX_SPEED. So every step lies in [-(max speed + |target|) - w * n, h]; an episode has
    at most `episode_length` steps (Hopper may terminate early, which only drops steps) and
    the lower end is negative, the upper end not, so the return lies in T times that range."""
    fam = FAMILIES[family]
    n, w, h = _mujoco_terms(fam.env_id)
    target = max(abs(x) for x in fam.param_range) if param is None else abs(float(param))
    worst_step = -(MUJOCO_MAX_SPEED + target) - w * n
    return episode_length * worst_step, episode_length * h


_RETURN_BOUNDS = {
    "pointgoal": _pointgoal_bounds,
    "halfcheetah-vel": lambda T, param: _velocity_bounds("halfcheetah-vel", T, param),
    "hopper-vel": lambda T, param: _velocity_bounds("hopper-vel", T, param),
}

def get_family(name: str) -> Family:
    """The family called ``name``; raises UnknownFamilyError listing the known names."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamilyError(
            f"unknown task family '{name}'; known: {', '.join(FAMILIES)}"
        ) from None


register_envs()  # also done by `import bmrl_bench`; here for code that imports this module alone
