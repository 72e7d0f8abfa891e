"""Behaviour cloning on task-balanced minibatches: a whole bmrl-bench algorithm in one file.

The worked example of docs/architecture.md ("How to add an algorithm in one file");
tests/test_docs_example.py registers it, runs it through the contract every algorithm
meets and through `evaluate`, so what the page shows keeps working.

The policy regresses the datasets' actions on their observations, over all meta-train
tasks at once; every minibatch holds the same number of transitions of each task, so a
task with more data does not dominate. It ignores its context (like Batch SAC), so on a
family whose tasks differ it is a floor that a meta-RL method should beat.

A package registers it with one line in its own pyproject.toml:

    [project.entry-points."bmrl_bench.algorithms"]
    my-bc = "my_algorithm:BehaviourCloning"

and, once installed, `bmrl-bench eval --algo my-bc --suite pointgoal-3` runs it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from bmrl_bench.algorithms import ContextFreeAgent, EnvSpec, LogFn, MetaTrainData, ModuleAlgorithm, null_log
from bmrl_bench.config_checks import AT_LEAST_1, POSITIVE, CheckedConfig
from bmrl_bench.learners.optim import fused_adam, fused_step
from bmrl_bench.learners.sampling import TaskSampler


@dataclass(frozen=True)
class BCConfig(CheckedConfig):
    steps: int = 2000
    """Gradient updates."""
    batch_per_task: int = 32
    """Transitions of each meta-train task in every minibatch."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the policy."""
    lr: float = 1e-3
    """Adam learning rate."""
    log_every: int = 100
    """Report the loss every this many updates."""

    # Checked when a config is built (in code, by `--set`, from a checkpoint): one ConfigError line.
    RANGES = {"steps": AT_LEAST_1, "batch_per_task": AT_LEAST_1, "hidden": AT_LEAST_1, "lr": POSITIVE,
              "log_every": AT_LEAST_1}


def policy_net(obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> torch.nn.Sequential:
    """obs -> action; tanh keeps every action in [-1, 1], the box of every family."""
    layers: list[torch.nn.Module] = []
    width = obs_dim
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    return torch.nn.Sequential(*layers, torch.nn.Linear(width, act_dim), torch.nn.Tanh())


class _Agent(ContextFreeAgent):
    """Acts from the observation alone; `reset` and `observe` (the context) do nothing."""

    def __init__(self, policy: torch.nn.Module, device: str) -> None:
        self.policy, self.device = policy, device

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        return self.policy(x).cpu().numpy()


class BehaviourCloning(ModuleAlgorithm):
    name: ClassVar[str] = "my-bc"  # the registered name: the entry point's left-hand side
    config_cls: ClassVar[type] = BCConfig
    configs: ClassVar[dict[str, Any]] = {
        "default": BCConfig(),  # required: what a suite gets when no suite or family key matches
        "pointgoal": BCConfig(hidden=(64, 64)),  # a 2-D toy needs no wide layers
    }

    def __init__(self, config: BCConfig, spec: EnvSpec, seed: int, device: str = "cpu") -> None:
        super().__init__(config, spec, seed, device)
        # The initial weights depend on the seed alone, and the caller's torch RNG is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.nets = policy_net(spec.obs_dim, spec.act_dim, config.hidden).to(device)

    def fit(self, data: MetaTrainData, log: LogFn = null_log) -> None:
        cfg = self.config
        sampler = TaskSampler(data.batch, data.num_tasks, self.device)  # transitions sorted by task, once
        gen = torch.Generator(device=self.device).manual_seed(self.seed)
        params = list(self.nets.parameters())
        opt = fused_adam(params, cfg.lr)
        for step in range(1, cfg.steps + 1):
            mb = sampler.gather(sampler.indices((cfg.batch_per_task,), gen))  # (tasks, batch_per_task, ...)
            loss = ((self.nets(mb["observations"]) - mb["actions"]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            fused_step(opt, params)
            if step % cfg.log_every == 0 or step == cfg.steps:
                log("behaviour cloning", step, cfg.steps, {"mse": loss.item()})

    def make_agent(self) -> _Agent:
        return _Agent(self.nets, self.device)
