"""PEARL in the batch setting (tiMe paper, sections 2.4 and 5.1): Batch SAC + a probabilistic set encoder.

Rakelly et al. (2019) infer the task from a context set c = {(s, a, r, s')} with a
permutation-invariant encoder: an MLP maps every transition to the mean mu_i and
variance sigma_i^2 of a Gaussian factor, the posterior q(z|c) is the product of the
factors (sigma^2 = 1 / sum_i 1/sigma_i^2, mu = sigma^2 sum_i mu_i/sigma_i^2), z is drawn
with the reparameterisation trick and conditions the actor and both critics. The
encoder learns only through the critic (Bellman) loss plus kl_lambda KL(q(z|c) || N(0, I)).

Here nothing ever steps an environment: every update samples `meta_batch` meta-train
tasks and, per task, a context and an RL minibatch drawn independently from THAT
task's fixed batch. The tiMe paper reports that this adaptation fails to learn a
policy that is good on all meta-test MDPs; the baseline exists to measure that.

One update (as `bmrl_bench.learners.sac.BatchedSAC`, one backward, one fused Adam step):
- critic + encoder: `mean (Q_j(s, a, z) - y)^2` summed over the two critics, z WITH gradient,
  `y = r + gamma (1 - terminal) (min Q_targ(s', a', z') - alpha log pi(a'|s', z'))`,
  `a' ~ pi(s', z')`, z' = z.detach(); plus `kl_lambda * sum_tasks KL` (PEARL sums over tasks);
- actor: `mean (alpha log pi(a|s, z) - min Q(s, a, z))` with z detached and critic
  parameters detached, so the actor loss reaches neither the encoder nor the critics;
- temperature: `-log_alpha mean (log pi + target_entropy)`, target entropy -act_dim.
The gradients touch disjoint parameters, so their sum is the separate updates'.
Time-limit truncation is no terminal: only `terminals` masks the bootstrap.

Acting: the agent keeps the most recent `max_context` observed transitions, and acts
with tanh(mean) of the actor at z = the posterior MEAN of that context (the prior mean,
zeros, while the context is empty). `reset()` empties the context.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from bmrl_bench.algorithms import EnvSpec, LogFn, MetaTrainData, ModuleAlgorithm, null_log
from bmrl_bench.config_checks import AT_LEAST_1, DISCOUNT, NON_NEGATIVE, POLYAK, POSITIVE, CheckedConfig
from bmrl_bench.learners.nn import BatchedMLP
from bmrl_bench.learners.optim import fused_adam, fused_step
from bmrl_bench.learners.sac import squashed_gaussian
from bmrl_bench.learners.sampling import TaskSampler, transition_row, transitions

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # actor log-std range, as BatchedSAC's defaults
MIN_VARIANCE = 1e-7  # PEARL clamps every factor's variance from below
METRIC_NAMES = ("critic_loss", "actor_loss", "alpha", "alpha_loss", "q_mean", "entropy", "kl", "z_var", "z_mean_abs")


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class PearlConfig(CheckedConfig):
    steps: int = 2000
    """Gradient updates (each on `meta_batch` tasks x `batch_size` transitions)."""
    batch_size: int = 256
    """RL transitions per sampled task per update."""
    meta_batch: int = 4
    """Meta-train tasks per update, drawn uniformly with replacement (as PEARL)."""
    context_size: int = 32
    """Context transitions per sampled task in training, from the same task's batch as its RL transitions."""
    latent_dim: int = 8
    """Size of the task variable z."""
    encoder_hidden: tuple[int, ...] = (200, 200, 200)
    """Hidden sizes of the per-transition encoder (PEARL's)."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden sizes of the actor and of each of the two critics."""
    lr: float = 3e-4
    """Adam learning rate of the encoder, actor, critics and temperature."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak coefficient of the target critics, every update."""
    kl_lambda: float = 0.1
    """Weight of KL(q(z|c) || N(0, I)) in the encoder's loss (PEARL: 0.1)."""
    init_alpha: float = 1.0
    """Initial entropy temperature; alpha is then tuned towards entropy -act_dim."""
    max_context: int = 1000
    """Test time: the posterior uses at most this many most recent observed transitions."""
    log_every: int = 100
    """Report training metrics every this many updates."""

    RANGES = {"steps": AT_LEAST_1, "batch_size": AT_LEAST_1, "meta_batch": AT_LEAST_1, "context_size": AT_LEAST_1,
              "latent_dim": AT_LEAST_1, "encoder_hidden": AT_LEAST_1, "hidden": AT_LEAST_1, "lr": POSITIVE,
              "gamma": DISCOUNT, "tau": POLYAK, "kl_lambda": NON_NEGATIVE, "init_alpha": POSITIVE,
              "max_context": AT_LEAST_1, "log_every": AT_LEAST_1}


_PAPER_SCALE = PearlConfig(  # PEARL's published settings (cheetah-vel): 500 iterations x 2000 updates
    steps=1_000_000, meta_batch=16, context_size=100, latent_dim=5, hidden=(300, 300, 300),
)
_LITE = PearlConfig(steps=30_000, batch_size=64)
CONFIGS: dict[str, PearlConfig] = {
    "pointgoal": PearlConfig(steps=4000, latent_dim=5),  # PEARL's point-robot: latent 5
    # lite: Batch SAC's lite budget (30k updates of 256 transitions), as 4 tasks x 64 transitions
    # per update; PEARL's 4 x 256 quadrupled the cost (about 50 core-minutes per seed here).
    "halfcheetah-vel-lite": _LITE,
    "hopper-vel-lite": _LITE,
    "halfcheetah-vel": _PAPER_SCALE,
    "hopper-vel": _PAPER_SCALE,
    "default": PearlConfig(),
}


# ----------------------------------------------------------------------------- networks
def product_of_gaussians(mu: torch.Tensor, var: torch.Tensor, dim: int = -2) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised product of Gaussian factors along `dim`: (mu, var) of the posterior.

    var = 1 / sum_i (1 / var_i), mu = var * sum_i (mu_i / var_i).
    """
    precision = var.clamp_min(MIN_VARIANCE).reciprocal()
    post_var = precision.sum(dim).reciprocal()
    return post_var * (mu * precision).sum(dim), post_var


def kl_to_standard_normal(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag var) || N(0, I)), summed over the last dimension."""
    return 0.5 * (var + mu.square() - 1.0 - var.log()).sum(-1)


class ContextEncoder(nn.Module):
    """Per-transition Gaussian factors: (..., 2o+a+1) -> mu (..., d), var (..., d) (softplus, clamped)."""

    def __init__(self, transition_dim: int, hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = BatchedMLP(1, transition_dim, hidden, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = x.shape[:-1]
        out = self.net(x.reshape(1, -1, x.shape[-1])).reshape(*lead, 2 * self.latent_dim)
        mu, raw = out.split(self.latent_dim, dim=-1)
        return mu, nn.functional.softplus(raw).clamp_min(MIN_VARIANCE)

    def posterior(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|c) for contexts `(..., c, 2o+a+1)` -> (mu, var) each `(..., d)`."""
        return product_of_gaussians(*self(context), dim=-2)


class PearlNetworks(nn.Module):
    """Encoder, actor pi(a | s, z), twin critics Q_j(s, a, z) (one 2-member BatchedMLP), their targets, log alpha."""

    def __init__(self, obs_dim: int, act_dim: int, config: PearlConfig, seed: int) -> None:
        super().__init__()
        d = config.latent_dim
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.encoder = ContextEncoder(2 * obs_dim + act_dim + 1, config.encoder_hidden, d)
        self.actor = BatchedMLP(1, obs_dim + d, config.hidden, 2 * act_dim)
        self.critic = BatchedMLP(2, obs_dim + act_dim + d, config.hidden, 1)
        self.critic_target = BatchedMLP(2, obs_dim + act_dim + d, config.hidden, 1)
        gen = torch.Generator().manual_seed(seed)  # seeded, without touching torch's global RNG
        for net in (self.encoder.net, self.actor, self.critic):
            net.reset_parameters(gen)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.full((), math.log(config.init_alpha)))

    def policy_head(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(..., o), (..., d) -> actor head (..., 2a)."""
        x = torch.cat([obs, z], -1)
        return self.actor(x.reshape(1, -1, x.shape[-1])).reshape(*x.shape[:-1], 2 * self.act_dim)

    @staticmethod
    def critic_input(obs: torch.Tensor, act: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(N, o), (N, a), (N, d) -> (2, N, o+a+d): the same input for both critics."""
        x = torch.cat([obs, act, z], -1)
        return x.unsqueeze(0).expand(2, *x.shape)


# ----------------------------------------------------------------------------- sampling
def sample_tasks(sampler: TaskSampler, rng: np.random.Generator, meta_batch: int, context_size: int,
                 batch_size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """context (m, c, 2o+a+1) and RL minibatch (m, b, ...) of the same m tasks, drawn uniformly with
    replacement; the context and the minibatch are drawn independently from each task's transitions."""
    rows = sampler.gather(sampler.task_indices(rng, meta_batch, context_size + batch_size))
    ctx = {k: v[:, :context_size] for k, v in rows.items()}
    context = transitions(ctx["observations"], ctx["actions"], ctx["rewards"], ctx["next_observations"])
    return context, {k: v[:, context_size:] for k, v in rows.items()}


# ----------------------------------------------------------------------------- agent
class _PearlAgent:
    """Keeps the recent context: new transitions are encoded lazily (one forward per act) into a ring of factors."""

    def __init__(self, algo: Pearl) -> None:
        self.algo = algo
        self.nets = algo.nets
        self.device = algo.device
        cap, d = algo.config.max_context, algo.config.latent_dim
        self._pending: deque[np.ndarray] = deque(maxlen=cap)  # observed, not yet encoded
        self._mu = torch.zeros(cap, d, device=self.device)  # factors of the last `cap` transitions (ring)
        self._var = torch.ones(cap, d, device=self.device)
        self._size = 0
        self._next = 0
        self._z: torch.Tensor | None = None

    def reset(self) -> None:
        self._pending.clear()
        self._size = self._next = 0
        self._z = None

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminal: bool) -> None:
        self._pending.append(transition_row(obs, action, reward, next_obs))
        self._z = None

    @torch.no_grad()
    def posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, var) of q(z | context); the prior N(0, I) for an empty context."""
        cap = len(self._mu)
        if self._pending:
            mu, var = self.nets.encoder(torch.as_tensor(np.stack(self._pending), device=self.device))
            slots = (self._next + torch.arange(len(mu), device=self.device)) % cap
            self._mu[slots], self._var[slots] = mu, var
            self._next = (self._next + len(mu)) % cap
            self._size = min(cap, self._size + len(mu))
            self._pending.clear()
        if self._size == 0:
            return torch.zeros_like(self._mu[0]), torch.ones_like(self._var[0])
        return product_of_gaussians(self._mu[: self._size], self._var[: self._size], dim=0)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        if self._z is None:
            self._z = self.posterior()[0]
        s = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        a, _ = squashed_gaussian(self.nets.policy_head(s, self._z), None, LOG_STD_MIN, LOG_STD_MAX)
        return a.cpu().numpy()


# ----------------------------------------------------------------------------- algorithm
class Pearl(ModuleAlgorithm):
    name: ClassVar[str] = "pearl"
    config_cls: ClassVar[type] = PearlConfig
    configs: ClassVar[dict[str, Any]] = CONFIGS

    def __init__(self, config: PearlConfig, spec: EnvSpec, seed: int, device: str = "cpu") -> None:
        super().__init__(config, spec, seed, device)
        self.nets = PearlNetworks(spec.obs_dim, spec.act_dim, config, seed).to(device)
        self.target_entropy = -float(spec.act_dim)
        self.generator = torch.Generator(device=device).manual_seed(seed + 1)
        self._critic_params = list(self.nets.critic.parameters())
        self._target_params = list(self.nets.critic_target.parameters())
        self._trained = [p for p in self.nets.parameters() if p.requires_grad]
        self.optimizer = fused_adam(self._trained, config.lr)

    def update(self, context: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One step on `context (m, c, 2o+a+1)` and minibatch `(m, b, ...)` of the same m tasks."""
        c, nets, gen = self.config, self.nets, self.generator
        m, b = batch["rewards"].shape
        n = m * b
        obs = batch["observations"].reshape(n, -1)
        act = batch["actions"].reshape(n, -1)
        next_obs = batch["next_observations"].reshape(n, -1)
        rew, term = batch["rewards"].reshape(n), batch["terminals"].reshape(n)

        mu, var = nets.encoder.posterior(context)  # (m, d)
        z_task = mu + var.sqrt() * torch.randn(mu.shape, generator=gen, device=mu.device)
        z = z_task.unsqueeze(1).expand(m, b, -1).reshape(n, -1)  # each transition with its own task's z
        z_bar = z.detach()
        kl = kl_to_standard_normal(mu, var).sum()  # summed over tasks, as PEARL
        alpha = self.nets.log_alpha.detach().exp()
        eps = torch.randn((2, n, self.spec.act_dim), generator=gen, device=mu.device)

        with torch.no_grad():
            next_a, next_logp = squashed_gaussian(nets.policy_head(next_obs, z_bar), eps[0], LOG_STD_MIN, LOG_STD_MAX)
            q_next = nets.critic_target(nets.critic_input(next_obs, next_a, z_bar)).squeeze(-1).amin(0)
            target = rew + c.gamma * (1.0 - term) * (q_next - alpha * next_logp)
        q = nets.critic(nets.critic_input(obs, act, z)).squeeze(-1)  # (2, n); z carries the encoder's gradient
        critic_loss = (q - target).square().mean(-1).sum()

        pi, logp = squashed_gaussian(nets.policy_head(obs, z_bar), eps[1], LOG_STD_MIN, LOG_STD_MAX)
        frozen = [p.detach() for p in self._critic_params]
        q_pi = nets.critic.forward_with(nets.critic_input(obs, pi, z_bar), frozen).squeeze(-1).amin(0)
        actor_loss = (alpha * logp - q_pi).mean()
        alpha_loss = -nets.log_alpha * (logp.detach().mean() + self.target_entropy)

        loss = critic_loss + c.kl_lambda * kl + actor_loss + alpha_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        fused_step(self.optimizer, self._trained)
        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._critic_params, c.tau)

        values = torch.stack([
            critic_loss.detach(), actor_loss.detach(), alpha, alpha_loss.detach(), q.detach().mean(),
            -logp.detach().mean(), kl.detach() / m, var.detach().mean(), mu.detach().abs().mean(),
        ]).tolist()
        return dict(zip(METRIC_NAMES, values))

    def fit(self, data: MetaTrainData, log: LogFn = null_log) -> None:
        spec, c = self.spec, self.config
        if data.batch.observations.shape[1] != spec.obs_dim or data.batch.actions.shape[1] != spec.act_dim:
            raise ValueError(
                f"pearl: data has obs/act dims {data.batch.observations.shape[1]}/{data.batch.actions.shape[1]}, "
                f"the spec says {spec.obs_dim}/{spec.act_dim}"
            )
        sampler = TaskSampler(data.batch, data.num_tasks, self.device)
        rng = np.random.default_rng(self.seed)
        self.nets.train()
        total = c.steps
        for step in range(1, total + 1):
            metrics = self.train_step(sampler, rng)
            if step % c.log_every == 0 or step == total:
                log(f"pearl ({sampler.k} tasks)", step, total, metrics)

    def train_step(self, sampler: TaskSampler, rng: np.random.Generator) -> dict[str, float]:
        """One step of `fit`: `meta_batch` tasks' contexts and minibatches drawn, one `update`."""
        c = self.config
        context, batch = sample_tasks(sampler, rng, c.meta_batch, c.context_size, c.batch_size)
        return self.update(context, batch)

    def bench_steps(self, data: MetaTrainData) -> dict[str, Any]:
        """`algorithms.BenchSteps`: one `train_step` per call, on `data`, as `fit` runs it."""
        sampler, rng = TaskSampler(data.batch, data.num_tasks, self.device), np.random.default_rng(self.seed)
        self.nets.train()
        return {"update": lambda: self.train_step(sampler, rng)}

    def make_agent(self) -> _PearlAgent:
        self.nets.eval()
        return _PearlAgent(self)

