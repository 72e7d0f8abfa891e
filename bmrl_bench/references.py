"""Reference rows of every board, produced by the harness like any algorithm.

- `random`: the uniform random policy (what `ref_min_score` measures).
- `oracle`: the best learned policy of each task; it is told the task, and replays, per
  test task, whichever of the behaviour SAC and the family-wide expert scored higher
  when the dataset was built. Where that policy is `ref_max_score`'s source its normalized
  score is near 1 by construction; where ref_max is the analytic optimum (PointGoal) it
  scores how close the best learned policy comes to it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bmrl_bench.algorithms import BaseAlgorithm, ContextFreeAgent, EnvSpec, LogFn, MetaTrainData, Privileged, null_log
from bmrl_bench.config_checks import NON_NEGATIVE, CheckedConfig

if TYPE_CHECKING:
    from bmrl_bench.data import Suite


@dataclass(frozen=True)
class RandomConfig(CheckedConfig):
    seed_offset: int = 0
    """Added to the run seed for the action stream (kept for a uniform config interface)."""

    RANGES = {"seed_offset": NON_NEGATIVE}


class _RandomAgent(ContextFreeAgent):
    def __init__(self, act_dim: int, rng: np.random.Generator) -> None:
        self.act_dim, self.rng = act_dim, rng

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=self.act_dim).astype(np.float32)


class RandomPolicy(BaseAlgorithm):
    name: ClassVar[str] = "random"
    config_cls: ClassVar[type] = RandomConfig
    configs: ClassVar[dict[str, Any]] = {"default": RandomConfig()}

    def __init__(self, config: RandomConfig, spec: EnvSpec, seed: int, device: str = "cpu") -> None:
        super().__init__(config, spec, seed, device)
        self.rng = np.random.default_rng(seed + config.seed_offset)

    def fit(self, data: MetaTrainData, log: LogFn = null_log) -> None:
        log("fit", 1, 1, {})

    def make_agent(self) -> _RandomAgent:
        return _RandomAgent(self.spec.act_dim, self.rng)


@dataclass(frozen=True)
class OracleConfig(CheckedConfig):
    pass


class _OracleAgent(ContextFreeAgent):
    def __init__(self, oracle: Oracle) -> None:
        self.oracle = oracle
        self.policy = None

    def set_task(self, index: int, param: float) -> None:
        self.policy = self.oracle.policy_for(index, param)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self.policy(obs[None]), dtype=np.float32)[0]


class Oracle(BaseAlgorithm, Privileged):
    """Privileged: the harness binds the suite and tells each agent its test task (`set_task(index, param)`)."""

    name: ClassVar[str] = "oracle"
    config_cls: ClassVar[type] = OracleConfig
    configs: ClassVar[dict[str, Any]] = {"default": OracleConfig()}

    def __init__(self, config: OracleConfig, spec: EnvSpec, seed: int, device: str = "cpu") -> None:
        super().__init__(config, spec, seed, device)
        self.suite: Suite | None = None

    def bind_suite(self, suite: Suite) -> None:
        self.suite = suite

    def fit(self, data: MetaTrainData, log: LogFn = null_log) -> None:
        log("fit", 1, 1, {})  # nothing to learn: it replays the suite's experts

    def policy_for(self, index: int, param: float):  # noqa: ANN201 - a Policy callable
        from bmrl_bench.builder import behaviour_policy_path, load_expert
        from bmrl_bench.collect import expert_policy
        from bmrl_bench.learners.sac import load_member_actor

        card, root = self.suite.card, self.suite.root
        dataset_id = card.dataset_id(index)
        meta = json.loads((root / dataset_id / "data" / "metadata.json").read_text())
        # The better learned policy; datasets from before ref_max could be "optimal" name it as its source.
        if meta.get("bmrl_ref_max_learned", {}).get("source", meta["bmrl_ref_max_source"]) == "expert":
            return expert_policy(load_expert(card, root), self.suite.family, param)
        from safetensors.torch import load_file

        state = load_file(str(behaviour_policy_path(dataset_id, root)))
        return load_member_actor(state, self.spec.obs_dim, self.spec.act_dim, card.behaviour.hidden)

    def make_agent(self) -> _OracleAgent:
        if self.suite is None:
            raise RuntimeError("the oracle needs bind_suite(suite) before make_agent()")
        return _OracleAgent(self)
