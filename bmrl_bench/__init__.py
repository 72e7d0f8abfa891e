"""bmrl-bench: the benchmark for Batch Meta Reinforcement Learning (offline meta-RL).

    >>> import bmrl_bench, gymnasium
    >>> suite = bmrl_bench.load_suite("pointgoal-3")   # meta-train batches as arrays
    >>> env = gymnasium.make("bmrl/HalfCheetahVel-v0", target_velocity=1.2)  # ids registered by the import
"""
from __future__ import annotations

from typing import Any

from bmrl_bench.registration import register_envs
from bmrl_bench.version import __version__

__all__ = ["__version__", "evaluate", "get_algorithm", "list_suites", "load_suite", "register_envs"]

register_envs()  # the families' Gymnasium ids (strings only: MuJoCo loads on the first gym.make)


def __getattr__(name: str) -> Any:
    # Lazy: `import bmrl_bench` stays cheap; MuJoCo and torch load on first use.
    if name == "load_suite":
        from bmrl_bench.data import load_suite

        return load_suite
    if name == "list_suites":
        from bmrl_bench.suites import list_suites

        return list_suites
    if name == "evaluate":
        from bmrl_bench.harness import evaluate

        return evaluate
    if name == "get_algorithm":
        from bmrl_bench.algorithms import get_algorithm

        return get_algorithm
    raise AttributeError(f"module 'bmrl_bench' has no attribute {name!r}")
