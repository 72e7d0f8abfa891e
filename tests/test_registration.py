"""The families' Gymnasium ids, as a user meets them: in a fresh interpreter."""
from __future__ import annotations

import subprocess
import sys

import gymnasium as gym

from bmrl_bench.families import FAMILIES
from bmrl_bench.registration import ENV_IDS


def _fresh(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_import_bmrl_bench_registers_the_ids_without_loading_mujoco_or_torch() -> None:
    out = _fresh(
        "import sys, gymnasium as gym, bmrl_bench\n"
        "ids = sorted(i for i in gym.registry if i.startswith('bmrl/'))\n"
        "print(ids, 'mujoco' in sys.modules, 'torch' in sys.modules)\n"
        "env = gym.make('bmrl/HalfCheetahVel-v0', target_velocity=1.2)\n"
        "print(env.unwrapped.task_param, env.spec.max_episode_steps)"
    )
    assert out.splitlines() == [
        "['bmrl/HalfCheetahVel-v0', 'bmrl/HopperVel-v0', 'bmrl/PointGoal-v0'] False False",
        "1.2 200",
    ]


def test_gym_make_with_the_module_prefix_needs_no_import() -> None:
    # Gymnasium 1.0 imports the module named before the colon (it has no entry-point plugins).
    out = _fresh(
        "import gymnasium as gym\n"
        "env = gym.make('bmrl_bench:bmrl/HalfCheetahVel-v0', target_velocity=1.2)\n"
        "print(type(env.unwrapped).__name__, env.unwrapped.target_velocity)"
    )
    assert out == "HalfCheetahVelEnv 1.2"


def test_registration_table_matches_the_families() -> None:
    assert set(ENV_IDS) == {f.env_id for f in FAMILIES.values()}
    for family in FAMILIES.values():
        spec = gym.spec(family.env_id)
        assert spec.max_episode_steps == family.default_episode_length
        assert spec.entry_point == ENV_IDS[family.env_id][0]
