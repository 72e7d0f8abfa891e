"""The families' Gymnasium ids, registered without importing MuJoCo or the env classes.

`import bmrl_bench` calls `register_envs()`, so after it `gym.make("bmrl/HalfCheetahVel-v0",
target_velocity=1.2)` works; so does `gym.make("bmrl_bench:bmrl/HalfCheetahVel-v0", ...)` with no
import at all: Gymnasium 1.0 imports the module named before the colon. (Gymnasium 1.0 dropped
the `gymnasium.envs` entry-point plugins of 0.26-0.29, so an installed package can no longer
register ids in a bare `import gymnasium`.) The entry points are strings, so the env classes
(`bmrl_bench.families`, which imports MuJoCo) load on the first `gym.make`.
"""
from __future__ import annotations

# id -> (entry point, default max_episode_steps: the family's default episode length, `Family.default_episode_length`)
ENV_IDS: dict[str, tuple[str, int]] = {
    "bmrl/PointGoal-v0": ("bmrl_bench.families:PointGoalEnv", 20),
    "bmrl/HalfCheetahVel-v0": ("bmrl_bench.families:HalfCheetahVelEnv", 200),
    "bmrl/HopperVel-v0": ("bmrl_bench.families:HopperVelEnv", 1000),
}


def register_envs() -> None:
    """Register the three env ids with Gymnasium; ids already registered are skipped."""
    import gymnasium as gym

    for env_id, (entry_point, steps) in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=steps)
