"""Batch SAC (tiMe paper, section 5.1): SAC whose replay buffer is the pooled meta-train data.

No environment steps and no task labels: every minibatch mixes transitions of all
meta-train tasks. Proposition 1 of the paper says its critic converges to the optimal
Q of the "average" MDP, so on a family of tasks it acts for no task in particular;
this baseline exists to show that failure honestly.

Its `fit` also takes `callback(step, sac)` (`algorithms.ProbedFit`): the misidentification
figure reads the critic of the `BatchedSAC` while it trains.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from bmrl_bench.algorithms import BaseAlgorithm, ContextFreeAgent, EnvSpec, FitCallback, LogFn, MetaTrainData, null_log
from bmrl_bench.config_checks import AT_LEAST_1, DISCOUNT, POLYAK, POSITIVE, CheckedConfig
from bmrl_bench.learners.sac import BatchedSAC, SACConfig


@dataclass(frozen=True)
class BatchSACConfig(CheckedConfig):
    steps: int = 5000
    """Gradient updates on the pooled meta-train batches."""
    batch_size: int = 256
    """Transitions per update, drawn uniformly from all tasks pooled."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the actor and both critics."""
    lr: float = 3e-4
    """Adam learning rate (actor, critics, temperature)."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    log_every: int = 100
    """Report training metrics every this many updates."""

    RANGES = {"steps": AT_LEAST_1, "batch_size": AT_LEAST_1, "hidden": AT_LEAST_1, "lr": POSITIVE, "gamma": DISCOUNT,
              "tau": POLYAK, "log_every": AT_LEAST_1}


def sample_pooled(
    tensors: dict[str, torch.Tensor], batch_size: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """A (1, B, ...) minibatch drawn uniformly from a flat pooled buffer."""
    n = tensors["rewards"].shape[0]
    idx = torch.randint(0, n, (batch_size,), generator=generator)
    return {k: v[idx].unsqueeze(0) for k, v in tensors.items()}


class _PolicyAgent(ContextFreeAgent):
    """Batch SAC has no way to tell tasks apart."""

    def __init__(self, sac: BatchedSAC) -> None:
        self.sac = sac

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.sac.act(obs[None], deterministic=True)[0]


class BatchSAC(BaseAlgorithm):
    name: ClassVar[str] = "batch-sac"
    config_cls: ClassVar[type] = BatchSACConfig
    configs: ClassVar[dict[str, Any]] = {
        "pointgoal": BatchSACConfig(steps=5000),
        "halfcheetah-vel-lite": BatchSACConfig(steps=30_000),
        "hopper-vel-lite": BatchSACConfig(steps=30_000),
        "halfcheetah-vel": BatchSACConfig(steps=1_000_000),
        "hopper-vel": BatchSACConfig(steps=1_000_000),
        "default": BatchSACConfig(),
    }

    def __init__(self, config: BatchSACConfig, spec: EnvSpec, seed: int, device: str = "cpu") -> None:
        super().__init__(config, spec, seed, device)
        sac_config = SACConfig(hidden=tuple(config.hidden), lr=config.lr, gamma=config.gamma, tau=config.tau,
                               batch_size=config.batch_size, device=device)
        self.sac = BatchedSAC(1, spec.obs_dim, spec.act_dim, sac_config, seed=seed)

    def fit(
        self,
        data: MetaTrainData,
        log: LogFn = null_log,
        callback: FitCallback | None = None,
        callback_every: int = 0,
    ) -> None:
        """`callback(step, sac)` every `callback_every` updates: the misidentification figure's probe."""
        pooled = data.batch.tensors(self.device)
        gen = torch.Generator().manual_seed(self.seed)
        total = self.config.steps
        for step in range(1, total + 1):
            metrics = self.sac.update(sample_pooled(pooled, self.config.batch_size, gen))
            if step % self.config.log_every == 0 or step == total:
                log("batch SAC", step, total, metrics)
            if callback is not None and callback_every and (step % callback_every == 0 or step == 1):
                callback(step, self.sac)

    def make_agent(self) -> _PolicyAgent:
        return _PolicyAgent(self.sac)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.sac.state_dict()

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        self.sac.load_state_dict(tensors)
