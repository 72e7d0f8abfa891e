"""BCQ (Fujimoto et al. 2019, d3rlpy's continuous implementation) on the pooled meta-train data.

Like Batch SAC, this baseline ignores task labels: every minibatch mixes transitions
of all meta-train tasks, and the agent has no context (reset/observe do nothing). It
shows what a strong single-task offline RL method does when it cannot tell the tasks
apart. Networks and constants are the official implementation's (critic and
perturbation 400-300, VAE 750-750, lambda 0.75, phi 0.05) with the tiMe paper's
Adam learning rate 3e-4 instead of the official 1e-3.

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
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from baselines.d3rlpy_data import batch_to_mdp_dataset, import_d3rlpy
from bmrl_bench.algorithms import EnvSpec, LogFn, MetaTrainData, null_log, read_checkpoint, save_checkpoint
from bmrl_bench.errors import BmrlError, CheckpointError

# The networks of d3rlpy's BCQ, as stored in a checkpoint (`<module>.<parameter>`).
MODULES = ("policy", "targ_policy", "q_funcs", "targ_q_funcs", "vae_encoder", "vae_decoder")
# d3rlpy accumulates per-step metrics over an epoch: a bounded epoch keeps that list short.
MAX_STEPS_PER_EPOCH = 1000


@dataclass(frozen=True)
class BCQBaselineConfig:
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
    """Weight of the min over the two target critics (1 - lam on the max)."""
    action_flexibility: float = 0.05
    """Perturbation range phi: xi adds at most this much to each decoded action."""
    beta: float = 0.5
    """Weight of the KL term in the VAE loss (official: 0.5)."""
    rl_start_step: int = 0
    """Updates that train only the VAE before the critics and the perturbation start."""
    log_every: int = 100
    """Report mean training losses every this many updates."""


def steps_per_epoch(steps: int, cap: int | None = None) -> int:
    """The largest divisor of `steps` not above `cap` (MAX_STEPS_PER_EPOCH): d3rlpy runs only
    `steps // per_epoch` whole epochs, so this makes it run exactly `steps` updates."""
    for n in range(min(steps, cap or MAX_STEPS_PER_EPOCH), 0, -1):
        if steps % n == 0:
            return n
    raise ValueError(f"steps must be positive, got {steps}")


def d3rlpy_config(config: BCQBaselineConfig) -> Any:
    """The `d3rlpy.algos.BCQConfig` of a baseline config."""
    d3rlpy = import_d3rlpy()
    enc = d3rlpy.models.encoders.VectorEncoderFactory
    return d3rlpy.algos.BCQConfig(
        actor_learning_rate=config.actor_lr,
        critic_learning_rate=config.critic_lr,
        imitator_learning_rate=config.imitator_lr,
        actor_encoder_factory=enc(hidden_units=list(config.actor_hidden)),
        critic_encoder_factory=enc(hidden_units=list(config.critic_hidden)),
        imitator_encoder_factory=enc(hidden_units=list(config.vae_hidden)),
        batch_size=config.batch_size,
        gamma=config.gamma,
        tau=config.tau,
        n_critics=2,
        lam=config.lam,
        n_action_samples=config.n_action_samples,
        action_flexibility=config.action_flexibility,
        rl_start_step=config.rl_start_step,
        beta=config.beta,
    )


def module_tensors(bcq: Any) -> dict[str, torch.Tensor]:
    """Every network's weights, flattened to `<module>.<parameter>` (safetensors-friendly)."""
    modules = bcq.impl.modules.get_torch_modules()
    return {f"{name}.{k}": v for name in MODULES for k, v in modules[name].state_dict().items()}


def act_seed(seed: int, t: int) -> int:
    """The torch seed of an agent's act number t."""
    return (seed * 1_000_003 + t) % 2**63


class _BCQAgent:
    """A context-free agent: BCQ's greedy action (argmax of critic 0 over decoded candidates).

    The candidates are random; act number t draws them from a torch stream seeded with
    (seed, t), inside `fork_rng`, so the global torch random state is not touched.
    """

    def __init__(self, bcq: Any, seed: int, device: str) -> None:
        self.bcq, self.seed, self.t = bcq, seed, 0
        dev = torch.device(device)
        self._rng_devices = [dev.index or 0] if dev.type == "cuda" else []

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)[None]
        with torch.random.fork_rng(devices=self._rng_devices):
            torch.manual_seed(act_seed(self.seed, self.t))
            action = self.bcq.predict(x)[0]
        self.t += 1
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminal: bool) -> None:
        pass


class D3rlpyBCQ:
    name: ClassVar[str] = "bcq"
    config_cls: ClassVar[type] = BCQBaselineConfig
    configs: ClassVar[dict[str, Any]] = {
        "pointgoal": BCQBaselineConfig(steps=3000),
        # Lite: tiMe's lite phase-1 sizes (256-256, VAE 256-256), about a quarter of the official FLOPs.
        "halfcheetah-vel-lite": BCQBaselineConfig(steps=20_000, critic_hidden=(256, 256), actor_hidden=(256, 256), vae_hidden=(256, 256)),
        "hopper-vel-lite": BCQBaselineConfig(steps=20_000, critic_hidden=(256, 256), actor_hidden=(256, 256), vae_hidden=(256, 256)),
        "halfcheetah-vel": BCQBaselineConfig(steps=1_000_000),  # the official BCQ's max_timesteps
        "hopper-vel": BCQBaselineConfig(steps=1_000_000),
        "default": BCQBaselineConfig(),
    }

    def __init__(self, config: BCQBaselineConfig, spec: EnvSpec, seed: int, device: str = "cpu") -> None:
        self.config, self.spec, self.seed, self.device = config, spec, seed, device
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
                f"but the spec says ({spec.obs_dim},) and ({spec.act_dim},); build the algorithm with the suite's EnvSpec"
            )
        if self.config.steps < 1:
            raise BmrlError(f"bcq: steps must be at least 1, got {self.config.steps}; set steps to a positive number")
        d3rlpy = import_d3rlpy()
        dataset = batch_to_mdp_dataset(batch)
        bcq = self._create()  # seeds numpy/torch/random: network init and d3rlpy's sampling are reproducible
        total = self.config.steps
        every = max(1, self.config.log_every)
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

    def save(self, path: Path) -> None:
        if self.bcq is None:
            raise BmrlError("bcq: save() before fit(); call fit(data) first")
        save_checkpoint(path, self.name, self.config, self.spec, self.seed, module_tensors(self.bcq))

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> D3rlpyBCQ:
        config, spec, seed, tensors = read_checkpoint(path, BCQBaselineConfig)
        algo = cls(config, spec, seed, device)
        bcq = algo._create()
        bcq.create_impl((spec.obs_dim,), spec.act_dim)  # shapes from the spec: no env, no dataset
        modules = bcq.impl.modules.get_torch_modules()
        expected = set(module_tensors(bcq))
        if set(tensors) != expected:
            missing = sorted(expected - set(tensors)) or sorted(set(tensors) - expected)
            raise CheckpointError(f"{path} does not hold this bcq configuration's weights ('{missing[0]}' differs); save it again with the same config")
        try:
            for name in MODULES:
                prefix = f"{name}."
                modules[name].load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        except RuntimeError as e:
            raise CheckpointError(f"{path} has weights of other shapes than its config ({str(e).splitlines()[0][:120]}); save it again") from None
        algo.bcq = bcq
        return algo

