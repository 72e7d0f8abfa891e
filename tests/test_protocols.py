from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bmrl_bench.data import Batch
from bmrl_bench.errors import UnknownProtocolError
from bmrl_bench.families import get_family
from bmrl_bench.protocols import EVAL_SEED_BASE, episode_seed, get_protocol


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def reset(self) -> None:
        self.calls.append("reset")

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.calls.append("act")
        return np.zeros(2, np.float32)

    def observe(self, *args: Any) -> None:
        self.calls.append("observe")


def _batch(n: int = 50) -> Batch:
    z = np.zeros((n, 2), np.float32)
    return Batch(
        z, z, np.zeros(n, np.float32), z, np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.int64)
    )


def _run(name: str, episodes: int = 2) -> tuple[list[float], list[str]]:
    agent = Recorder()
    env = get_family("pointgoal").make(90.0, max_episode_steps=5)
    returns = get_protocol(name).run_task(agent, env, episodes, lambda e: episode_seed(0, 0, e), _batch,
                                          np.random.default_rng(0))
    return returns, agent.calls


def test_zero_shot_resets_every_episode_and_observes_each_step() -> None:
    returns, calls = _run("zero-shot")
    assert len(returns) == 2
    assert calls == (["reset"] + ["act", "observe"] * 5) * 2
    # Standing still 10 away from the goal for 5 steps.
    assert returns == pytest.approx([-50.0, -50.0])


def test_offline_context_observes_test_data_before_and_not_during() -> None:
    n = get_protocol("offline-context").constants["context_transitions"]
    _, calls = _run("offline-context")
    assert calls == (["reset"] + ["observe"] * n + ["act"] * 5) * 2


def test_few_shot_explores_unscored_then_keeps_context() -> None:
    k = get_protocol("few-shot").constants["exploration_episodes"]
    returns, calls = _run("few-shot", episodes=3)
    assert len(returns) == 3
    assert calls.count("reset") == 1 and calls[0] == "reset"
    assert calls.count("observe") == 5 * (k + 3)


def test_eval_seeds_are_disjoint_from_training_seeds() -> None:
    seeds = {episode_seed(s, t, e) for s in range(10) for t in range(100) for e in range(100)}
    assert len(seeds) == 10 * 100 * 100
    assert min(seeds) >= EVAL_SEED_BASE


def test_unknown_protocol() -> None:
    with pytest.raises(UnknownProtocolError, match="zero-shot"):
        get_protocol("many-shot")
