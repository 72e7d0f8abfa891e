"""Reference rows of every board, produced by the harness like any algorithm.

- `random`: the uniform random policy (what `ref_min_score` measures).
- `oracle`: the expert behind `ref_max_score`; it is told the task, and replays, per
  test task, whichever of the behaviour SAC and the family-wide expert scored higher
  when the dataset was built. Its normalized score is near 1 by construction.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bmrl_bench.algorithms import EnvSpec, LogFn, MetaTrainData, null_log, read_checkpoint, save_checkpoint


@dataclass(frozen=True)
class RandomConfig:
    seed_offset: int = 0
    """Added to the run seed for the action stream (kept for a uniform config interface)."""


class _RandomAgent:
    def __init__(self, act_dim: int, rng: np.random.Generator) -> None:
        self.act_dim, self.rng = act_dim, rng

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=self.act_dim).astype(np.float32)

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminal: bool) -> None:
        pass


class RandomPolicy:
    name: ClassVar[str] = "random"
    config_cls: ClassVar[type] = RandomConfig
    configs: ClassVar[dict[str, Any]] = {"default": RandomConfig()}

    def __init__(self, config: RandomConfig, spec: EnvSpec, seed: int, device: str = "cpu") -> None:
        self.config, self.spec, self.seed = config, spec, seed
        self.rng = np.random.default_rng(seed + config.seed_offset)

    def fit(self, data: MetaTrainData, log: LogFn = null_log) -> None:
        log("fit", 1, 1, {})

    def make_agent(self) -> _RandomAgent:
        return _RandomAgent(self.spec.act_dim, self.rng)

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.name, self.config, self.spec, self.seed, {})

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> RandomPolicy:
        config, spec, seed, _ = read_checkpoint(path, RandomConfig)
        return cls(config, spec, seed, device)


@dataclass(frozen=True)
class OracleConfig:
    pass


class _OracleAgent:
    def __init__(self, oracle: Oracle) -> None:
        self.oracle = oracle
        self.policy = None

    def set_task(self, index: int, param: float) -> None:
        self.policy = self.oracle.policy_for(index, param)

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self.policy(obs[None]), dtype=np.float32)[0]

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminal: bool) -> None:
        pass


class Oracle:
    name: ClassVar[str] = "oracle"
    config_cls: ClassVar[type] = OracleConfig
    configs: ClassVar[dict[str, Any]] = {"default": OracleConfig()}
    privileged: ClassVar[bool] = True  # the harness tells its agent the task

    def __init__(self, config: OracleConfig, spec: EnvSpec, seed: int, device: str = "cpu") -> None:
        self.config, self.spec, self.seed = config, spec, seed
        self.suite = None

    def bind_suite(self, suite: Any) -> None:
        self.suite = suite

    def fit(self, data: MetaTrainData, log: LogFn = null_log) -> None:
        log("fit", 1, 1, {})  # nothing to learn: it replays the suite's experts

    def policy_for(self, index: int, param: float):  # noqa: ANN201 - a Policy callable
        from bmrl_bench.build import behaviour_policy_path, load_expert
        from bmrl_bench.collect import expert_policy
        from bmrl_bench.learners.sac import load_member_actor

        card, root = self.suite.card, self.suite.root
        dataset_id = card.dataset_id(index)
        meta = json.loads((root / dataset_id / "data" / "metadata.json").read_text())
        if meta["bmrl_ref_max_source"] == "expert":
            return expert_policy(load_expert(card, root), self.suite.family, param)
        from safetensors.torch import load_file

        state = load_file(str(behaviour_policy_path(dataset_id, root)))
        return load_member_actor(state, self.spec.obs_dim, self.spec.act_dim, card.behaviour.hidden)

    def make_agent(self) -> _OracleAgent:
        if self.suite is None:
            raise RuntimeError("the oracle needs bind_suite(suite) before make_agent()")
        return _OracleAgent(self)

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.name, self.config, self.spec, self.seed, {})

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> Oracle:
        config, spec, seed, _ = read_checkpoint(path, OracleConfig)
        return cls(config, spec, seed, device)
