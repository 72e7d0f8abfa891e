"""BCQ (Fujimoto et al. 2019, d3rlpy's continuous implementation) on the pooled meta-train data.

Like Batch SAC, this baseline ignores task labels: every minibatch mixes transitions
of all meta-train tasks, and the agent has no context (reset/observe do nothing). It
shows what a strong single-task offline RL method does when it cannot tell the tasks
apart. Networks and constants are the official implementation's (critic and
perturbation 400-300, VAE 750-750, lambda 0.75, phi 0.05) with the tiMe paper's
Adam learning rate 3e-4 instead of the official 1e-3.

Not to be confused with `bmrl_bench.learners.bcq.BatchedBCQ`, our own BCQ that tiMe's phase 1
trains (one member per task). The config here follows d3rlpy's names: `lam` is that learner's
`lmbda` and `action_flexibility` its `phi` (kept: the names are part of published configs).

The data goes through our own `batch_to_mdp_dataset` (d3rlpy's `get_minari`
misaligns observations and actions across episodes). d3rlpy writes nothing to disk
(no-op logger, no `d3rlpy_logs/`) and logs only warnings; progress goes to the
harness's `log` callback. Acting samples BCQ's candidate actions with torch's random
numbers; each agent draws them from its own seeded stream, so an agent's actions are
reproducible and the caller's random state is left untouched.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from bmrl_bench.algorithms import BaseAlgorithm, ContextFreeAgent, EnvSpec, LogFn, MetaTrainData, null_log
from bmrl_bench.config_checks import AT_LEAST_1, DISCOUNT, NON_NEGATIVE, POLYAK, POSITIVE, UNIT, CheckedConfig
from bmrl_bench.errors import BmrlError, CheckpointError
from bmrl_bench.learners.d3rlpy_data import batch_to_mdp_dataset, d3rlpy_bcq_config, import_d3rlpy

# The networks of d3rlpy's BCQ, as stored in a checkpoint (`<module>.<parameter>`).
MODULES = ("policy", "targ_policy", "q_funcs", "targ_q_funcs", "vae_encoder", "vae_decoder")
# d3rlpy accumulates per-step metrics over an epoch: a bounded epoch keeps that list short.
MAX_STEPS_PER_EPOCH = 1000


@dataclass(frozen=True)
class BCQBaselineConfig(CheckedConfig):
    steps: int = 20_000
    """Gradient updates on the pooled meta-train batches."""
    batch_size: int = 100
    """Transitions per update, drawn uniformly from all tasks pooled (official: 100)."""
    actor_lr: float = 3e-4
    """Adam learning rate of the perturbation network (tiMe paper; official BCQ: 1e-3)."""
    critic_lr: float = 3e-4
    """Adam learning rate of the two critics (tiMe paper; official BCQ: 1e-3)."""
    imitator_lr: float = 3e-4
    """Adam learning rate of the VAE (the tiMe paper uses 3e-4 throughout; official BCQ: 1e-3)."""
    n_action_samples: int = 10
    """Candidate actions decoded by the VAE, in the critic target and when acting (official: 10)."""
    critic_hidden: tuple[int, ...] = (400, 300)
    """Hidden layer sizes of each critic."""
    actor_hidden: tuple[int, ...] = (400, 300)
    """Hidden layer sizes of the perturbation network xi(s, a)."""
    vae_hidden: tuple[int, ...] = (750, 750)
    """Hidden layer sizes of the VAE encoder and of its decoder (the generator)."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target critics and target perturbation network."""
    lam: float = 0.75
    """Weight of the min over the two target critics (1 - lam on the max); `lmbda` in official BCQ."""
    action_flexibility: float = 0.05
    """Perturbation range phi: xi adds at most this much to each decoded action; `phi` in official BCQ."""
    beta: float = 0.5
    """Weight of the KL term in the VAE loss (official: 0.5)."""
    rl_start_step: int = 0
    """Updates that train only the VAE before the critics and the perturbation start."""
    log_every: int = 100
    """Report mean training losses every this many updates."""

    RANGES = {"steps": AT_LEAST_1, "batch_size": AT_LEAST_1, "actor_lr": POSITIVE, "critic_lr": POSITIVE,
              "imitator_lr": POSITIVE, "n_action_samples": AT_LEAST_1, "critic_hidden": AT_LEAST_1,
              "actor_hidden": AT_LEAST_1, "vae_hidden": AT_LEAST_1, "gamma": DISCOUNT, "tau": POLYAK, "lam": UNIT,
              "action_flexibility": NON_NEGATIVE, "beta": NON_NEGATIVE, "rl_start_step": NON_NEGATIVE,
              "log_every": AT_LEAST_1}


def steps_per_epoch(steps: int, cap: int | None = None) -> int:
    """The largest divisor of `steps` not above `cap` (MAX_STEPS_PER_EPOCH): d3rlpy runs only
    `steps // per_epoch` whole epochs, so this makes it run exactly `steps` updates."""
    for n in range(min(steps, cap or MAX_STEPS_PER_EPOCH), 0, -1):
        if steps % n == 0:
            return n
    raise ValueError(f"steps must be positive, got {steps}")


def d3rlpy_config(config: BCQBaselineConfig) -> Any:
    """The `d3rlpy.algos.BCQConfig` of a baseline config."""
    c = config
    return d3rlpy_bcq_config(
        actor_lr=c.actor_lr, critic_lr=c.critic_lr, imitator_lr=c.imitator_lr, actor_hidden=c.actor_hidden,
        critic_hidden=c.critic_hidden, vae_hidden=c.vae_hidden, batch_size=c.batch_size, gamma=c.gamma, tau=c.tau,
        lam=c.lam, n_action_samples=c.n_action_samples, action_flexibility=c.action_flexibility,
        rl_start_step=c.rl_start_step, beta=c.beta,
    )


def module_tensors(bcq: Any) -> dict[str, torch.Tensor]:
    """Every network's weights, flattened to `<module>.<parameter>` (safetensors-friendly)."""
    modules = bcq.impl.modules.get_torch_modules()
    return {f"{name}.{k}": v for name in MODULES for k, v in modules[name].state_dict().items()}


def act_seed(seed: int, t: int) -> int:
    """The torch seed of an agent's act number t."""
    return (seed * 1_000_003 + t) % 2**63


class _BCQAgent(ContextFreeAgent):
    """BCQ's greedy action (argmax of critic 0 over decoded candidates).

    The candidates are random; act number t draws them from a torch stream seeded with
    (seed, t), inside `fork_rng`, so the global torch random state is not touched.
    """

    def __init__(self, bcq: Any, seed: int, device: str) -> None:
        self.bcq, self.seed, self.t = bcq, seed, 0
        dev = torch.device(device)
        self._rng_devices = [dev.index or 0] if dev.type == "cuda" else []

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)[None]
        with torch.random.fork_rng(devices=self._rng_devices):
            torch.manual_seed(act_seed(self.seed, self.t))
            action = self.bcq.predict(x)[0]
        self.t += 1
        return np.clip(action, -1.0, 1.0).astype(np.float32)


class D3rlpyBCQ(BaseAlgorithm):
    name: ClassVar[str] = "bcq"
    config_cls: ClassVar[type] = BCQBaselineConfig
    configs: ClassVar[dict[str, Any]] = {
        "pointgoal": BCQBaselineConfig(steps=3000),
        # Lite: tiMe's lite phase-1 sizes (256-256, VAE 256-256), about a quarter of the official FLOPs.
        "halfcheetah-vel-lite": BCQBaselineConfig(steps=20_000, critic_hidden=(256, 256), actor_hidden=(256, 256),
                                                  vae_hidden=(256, 256)),
        "hopper-vel-lite": BCQBaselineConfig(steps=20_000, critic_hidden=(256, 256), actor_hidden=(256, 256),
                                             vae_hidden=(256, 256)),
        "halfcheetah-vel": BCQBaselineConfig(steps=1_000_000),  # the official BCQ's max_timesteps
        "hopper-vel": BCQBaselineConfig(steps=1_000_000),
        "default": BCQBaselineConfig(),
    }

    def __init__(self, config: BCQBaselineConfig, spec: EnvSpec, seed: int, device: str = "cpu") -> None:
        super().__init__(config, spec, seed, device)
        self.bcq: Any = None  # d3rlpy's BCQ, built by fit (or load)

    def _create(self) -> Any:
        d3rlpy = import_d3rlpy()
        d3rlpy.seed(self.seed)
        return d3rlpy_config(self.config).create(device=self.device)

    def fit(self, data: MetaTrainData, log: LogFn = null_log) -> None:
        batch, spec = data.batch, self.spec
        if batch.observations.shape[1:] != (spec.obs_dim,) or batch.actions.shape[1:] != (spec.act_dim,):
            raise BmrlError(
                f"bcq: data has observations {batch.observations.shape[1:]} and actions {batch.actions.shape[1:]} "
                f"but the spec says ({spec.obs_dim},) and ({spec.act_dim},); "
                "build the algorithm with the suite's EnvSpec"
            )
        d3rlpy = import_d3rlpy()
        dataset = batch_to_mdp_dataset(batch)
        bcq = self._create()  # seeds numpy/torch/random: network init and d3rlpy's sampling are reproducible
        total = self.config.steps
        every = self.config.log_every
        window: defaultdict[str, list[float]] = defaultdict(list)

        update = bcq.update

        def update_and_record(b: Any) -> dict[str, float]:
            losses = update(b)
            for k, v in losses.items():
                window[k].append(float(v))
            return losses

        def callback(algo: Any, epoch: int, step: int) -> None:
            if step % every == 0 or step == total:
                log("bcq", step, total, {k: float(np.mean(v)) for k, v in window.items()})
                window.clear()

        bcq.update = update_and_record  # d3rlpy's fitter calls self.update(batch) every step
        try:
            bcq.fit(
                dataset,
                n_steps=total,
                n_steps_per_epoch=steps_per_epoch(total),
                experiment_name="bcq",
                with_timestamp=False,
                logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
                show_progress=False,
                save_interval=10**9,
                callback=callback,
            )
        finally:
            del bcq.update
        self.bcq = bcq

    def make_agent(self) -> _BCQAgent:
        if self.bcq is None:
            raise BmrlError("bcq: make_agent() before fit(); call fit(data) or load a checkpoint first")
        return _BCQAgent(self.bcq, self.seed, self.device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.bcq is None:
            raise BmrlError("bcq: save() before fit(); call fit(data) first")
        return module_tensors(self.bcq)

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        bcq = self._create()
        bcq.create_impl((self.spec.obs_dim,), self.spec.act_dim)  # shapes from the spec: no env, no dataset
        modules = bcq.impl.modules.get_torch_modules()
        expected = set(module_tensors(bcq))
        if set(tensors) != expected:
            missing = sorted(expected - set(tensors)) or sorted(set(tensors) - expected)
            raise CheckpointError(f"it does not hold this bcq configuration's weights ('{missing[0]}' differs); "
                                  "save it again with the same config")
        for name in MODULES:  # a RuntimeError (other shapes) becomes BaseAlgorithm.load's one-line CheckpointError
            prefix = f"{name}."
            modules[name].load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        self.bcq = bcq
