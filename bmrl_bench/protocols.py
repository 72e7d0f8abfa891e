"""Evaluation protocols, named and versioned, fixed as code.

Offline meta-RL papers differ in where the test-time context comes from; each way
is one protocol here, with its constants recorded in every results file. Changing
what a protocol does means a new version.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from bmrl_bench.algorithms import Agent
from bmrl_bench.data import Batch
from bmrl_bench.errors import UnknownProtocolError

# Evaluation episodes get seeds from their own range, disjoint from every training,
# data-collection and reference seed.
EVAL_SEED_BASE = 100_000_000


def episode_seed(run_seed: int, task_index: int, episode: int) -> int:
    return EVAL_SEED_BASE + run_seed * 1_000_000 + task_index * 1_000 + episode


def run_episode(env: gym.Env, agent: Agent, seed: int, observe: bool) -> float:
    """One episode; the agent sees each transition as context iff `observe`."""
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action = np.clip(np.asarray(agent.act(np.asarray(obs, dtype=np.float32)), dtype=np.float32), -1.0, 1.0)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        if observe:
            agent.observe(obs, action, float(reward), next_obs, bool(terminated))
        obs, done = next_obs, terminated or truncated
    return total


@dataclass(frozen=True)
class EvalProtocol:
    name: str
    version: int
    description: str
    constants: dict[str, Any] = field(default_factory=dict)

    def run_task(
        self,
        agent: Agent,
        env: gym.Env,
        episodes: int,
        seed_of: Callable[[int], int],
        test_batch: Callable[[], Batch],
        rng: np.random.Generator,
    ) -> list[float]:
        """Scored episode returns on one test task."""
        if self.name == "zero-shot":
            returns = []
            for e in range(episodes):
                agent.reset()  # the inferred MDP identity starts at zero every episode
                returns.append(run_episode(env, agent, seed_of(e), observe=True))
            return returns
        if self.name == "offline-context":
            batch = test_batch()
            n = int(self.constants["context_transitions"])
            returns = []
            for e in range(episodes):
                agent.reset()
                for i in rng.integers(0, len(batch), size=n):
                    agent.observe(batch.observations[i], batch.actions[i], float(batch.rewards[i]),
                                  batch.next_observations[i], bool(batch.terminals[i]))
                returns.append(run_episode(env, agent, seed_of(e), observe=False))
            return returns
        if self.name == "few-shot":
            k = int(self.constants["exploration_episodes"])
            agent.reset()
            for e in range(k):  # exploration: context only, never scored
                run_episode(env, agent, seed_of(episodes + e), observe=True)
            return [run_episode(env, agent, seed_of(e), observe=True) for e in range(episodes)]
        raise UnknownProtocolError(f"protocol '{self.name}' has no runner")


PROTOCOLS: dict[str, EvalProtocol] = {
    p.name: p
    for p in (
        EvalProtocol("zero-shot", 1, "tiMe's protocol: no update, no exploration; "
                     "context = the current episode's transitions, empty at its start."),
        EvalProtocol("offline-context", 1, "FOCAL's protocol: context = transitions sampled from the test task's "
                     "offline dataset; none from the episode.",
                     {"context_transitions": 200}),
        EvalProtocol("few-shot", 1, "PEARL's protocol: unscored exploration episodes, "
                     "then scored episodes that keep and extend that context.",
                     {"exploration_episodes": 2}),
    )
}
DEFAULT_PROTOCOL = "zero-shot"


def get_protocol(name: str) -> EvalProtocol:
    if name not in PROTOCOLS:
        raise UnknownProtocolError(f"unknown protocol '{name}'; known protocols: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
