"""K independent SAC learners updated in one batched pass (CORL / cleanrl style).

Member k of `BatchedSAC` is an ordinary SAC agent (tanh-squashed Gaussian actor, two
critics with clipped double-Q, target critics updated by Polyak averaging every step,
learned temperature). All K members are evaluated with batched matmuls (`BatchedMLP`):
every loss is a SUM over members of that member's own batch mean, and Adam is
elementwise, so one batched update equals K separate updates
(`tests/learners/test_sac.py` checks this to 1e-10 in float64).

Used (a) online to collect behaviour data (one member per task, see `collect.py`),
(b) as Batch SAC on pooled data (K = 1), (c) in tiMe's phase 1 (one member per
meta-train batch), (d) as the family-wide expert (K = 1).

One update computes the three losses from the same parameters (as the reference
softlearning implementation does) and takes ONE backward pass and ONE fused Adam step:
- critic: `sum_k [mean_b (Q1 - y)^2 + mean_b (Q2 - y)^2]`,
  `y = r + gamma (1 - terminal) (min Q_targ(s', a') - alpha log pi(a'|s'))`, `a' ~ pi(s')`;
- actor: `sum_k mean_b (alpha log pi(a|s) - min Q(s, a))`, `a ~ pi(s)`, evaluated with
  DETACHED critic parameters, so no gradient reaches the critics from the actor loss;
- temperature: `sum_k -log_alpha_k mean_b (log pi(a|s) + target_entropy)` (log pi detached).
The three gradients touch disjoint parameters, so their sum is exactly the three
separate gradients.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bmrl_bench.config_checks import AT_LEAST_1, DISCOUNT, POLYAK, POSITIVE, CheckedConfig
from bmrl_bench.errors import CheckpointError, ConfigError
from bmrl_bench.learners.nn import BatchedMLP
from bmrl_bench.learners.optim import fused_adam, fused_step

BATCH_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")
METRIC_NAMES = ("critic_loss", "actor_loss", "alpha", "q_mean", "alpha_loss", "entropy")
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


@dataclass
class SACConfig(CheckedConfig):
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the actor and of each critic."""
    lr: float = 3e-4
    """Adam learning rate of the actor, the critics and the temperature."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak coefficient of the target critics (target <- (1 - tau) target + tau online), every update."""
    batch_size: int = 256
    """Minibatch size per member (used by the callers that sample batches)."""
    init_alpha: float = 1.0
    """Initial entropy temperature alpha."""
    autotune_alpha: bool = True
    """Learn alpha so that the policy entropy tracks `target_entropy`; otherwise alpha stays `init_alpha`."""
    target_entropy: float | None = None
    """Entropy target of the temperature loss; None means -act_dim."""
    log_std_min: float = -5.0
    """Lower bound of the actor's log standard deviation (cleanrl's tanh rescaling)."""
    log_std_max: float = 2.0
    """Upper bound of the actor's log standard deviation."""
    device: str = "cpu"
    """torch device of the networks; batches are moved there by `update`."""

    RANGES = {"hidden": AT_LEAST_1, "lr": POSITIVE, "gamma": DISCOUNT, "tau": POLYAK, "batch_size": AT_LEAST_1,
              "init_alpha": POSITIVE}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.log_std_min >= self.log_std_max:
            raise ConfigError(
                f"SACConfig.log_std_min = {self.log_std_min!r} must be below log_std_max = {self.log_std_max!r}")


def squashed_gaussian(
    head: torch.Tensor, noise: torch.Tensor | None, log_std_min: float, log_std_max: float, log_prob: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Actor head `(..., 2a)` -> (action in [-1, 1], log pi(action)) ; noise None = deterministic (tanh(mean), None).

    `log_prob=False` (acting): the same action, without computing log pi (returned as None)."""
    mean, log_std = head.chunk(2, dim=-1)
    if noise is None:
        return torch.tanh(mean), None
    log_std = log_std_min + 0.5 * (log_std_max - log_std_min) * (torch.tanh(log_std) + 1.0)
    u = mean + log_std.exp() * noise
    if not log_prob:
        return torch.tanh(u), None
    # log N(u; mean, std) - sum log(1 - tanh(u)^2); the latter as 2 (log 2 - u - softplus(-2u)) (stable).
    log_prob = (-0.5 * noise.square() - log_std - 2.0 * (_LOG_2 - u - nn.functional.softplus(-2.0 * u))).sum(-1)
    return torch.tanh(u), log_prob - _HALF_LOG_2PI * noise.shape[-1]


class BatchedSAC:
    """K independent SAC learners. Member k acts on `obs[k]` and learns from `batch[...][k]` only."""

    def __init__(
        self,
        num_members: int,
        obs_dim: int,
        act_dim: int,
        config: SACConfig | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> None:
        self.config = config = config if config is not None else SACConfig()
        self.num_members, self.obs_dim, self.act_dim = num_members, obs_dim, act_dim
        self.dtype = dtype
        self.device = torch.device(device if device is not None else config.device)
        self.target_entropy = float(config.target_entropy if config.target_entropy is not None else -act_dim)
        hidden = tuple(int(h) for h in config.hidden)
        k = num_members
        # Initialise on the CPU from a seeded generator (same weights on every device), then move.
        init_gen = torch.Generator().manual_seed(seed)
        self.actor = BatchedMLP(k, obs_dim, hidden, 2 * act_dim, dtype=dtype)
        # Both critics of all members in ONE BatchedMLP of 2K members; member k's critic j is row 2k + j.
        self.critic = BatchedMLP(2 * k, obs_dim + act_dim, hidden, 1, dtype=dtype)
        self.actor.reset_parameters(init_gen)
        self.critic.reset_parameters(init_gen)
        self.critic_target = BatchedMLP(2 * k, obs_dim + act_dim, hidden, 1, dtype=dtype)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.critic_target.to(self.device).requires_grad_(False)
        self.log_alpha = nn.Parameter(
            torch.full((k,), math.log(config.init_alpha), dtype=dtype, device=self.device),
            requires_grad=config.autotune_alpha,
        )
        self.generator = torch.Generator(device=self.device).manual_seed(seed + 1)

        self._actor_params = list(self.actor.parameters())
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        self._trained = self._actor_params + self._critic_params + ([self.log_alpha] if config.autotune_alpha else [])
        self.optimizer = fused_adam(self._trained, config.lr)
        self._adam: _AdamLists | None = None  # set after the first step; reset when the optimizer state is loaded
        self._names = self._param_names()

    # -- acting -----------------------------------------------------------------------
    def _as_input(self, x: np.ndarray | torch.Tensor, dim: int, name: str) -> torch.Tensor:
        t = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        if t.dim() not in (2, 3) or t.shape[0] != self.num_members or t.shape[-1] != dim:
            raise ValueError(
                f"{name} must have shape (K={self.num_members}, {dim}) or (K, B, {dim}), got {tuple(t.shape)}"
            )
        return t

    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, deterministic: bool = False) -> np.ndarray:
        """Actions in [-1, 1] for obs `(K, obs_dim)` or `(K, B, obs_dim)`; same leading shape, act_dim last."""
        x = self._as_input(obs, self.obs_dim, "obs")
        single = x.dim() == 2
        if single:
            x = x.unsqueeze(1)
        head = self.actor(x)
        noise = None
        if not deterministic:
            shape = (*x.shape[:2], self.act_dim)
            noise = torch.randn(shape, generator=self.generator, dtype=self.dtype, device=self.device)
        a, _ = squashed_gaussian(head, noise, self.config.log_std_min, self.config.log_std_max, log_prob=False)
        if single:
            a = a.squeeze(1)
        return a.cpu().numpy()

    def _critic_input(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """(K, B, o), (K, B, a) -> (2K, B, o + a): each member's input twice, once per critic."""
        x = torch.cat([obs, act], dim=-1)
        k, b, d = x.shape
        return x.unsqueeze(1).expand(k, 2, b, d).reshape(2 * k, b, d)

    @torch.no_grad()
    def q_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """min(Q1, Q2) of each member on its own (obs, act), on the device.

        `(K, B, o), (K, B, a) -> (K, B)`; `(K, o), (K, a) -> (K,)`."""
        s = self._as_input(obs, self.obs_dim, "obs")
        a = self._as_input(act, self.act_dim, "act")
        single = s.dim() == 2
        if single:
            s, a = s.unsqueeze(1), a.unsqueeze(1)
        k, b = s.shape[:2]
        q = self.critic(self._critic_input(s, a)).view(k, 2, b).amin(1)
        return q.squeeze(1) if single else q

    # -- learning ---------------------------------------------------------------------
    def update(
        self, batch: Mapping[str, torch.Tensor], noise: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, float]:
        """One SAC step of every member on its own minibatch; returns member-mean metrics.

        `batch`: observations (K,B,o), actions (K,B,a), rewards (K,B), next_observations (K,B,o),
        terminals (K,B) (1.0 only at true termination). `noise` (optional, for exact tests):
        standard normal draws `{"target": (K,B,a), "policy": (K,B,a)}` for the next-state action
        of the critic target and for the actor/temperature losses; drawn from `self.generator`
        when omitted.
        """
        cfg, dev, dt = self.config, self.device, self.dtype
        obs, act, rew, next_obs, term = (batch[key].to(device=dev, dtype=dt) for key in BATCH_KEYS)
        k, b = rew.shape
        if k != self.num_members:
            raise ValueError(f"batch has {k} members, the learner has {self.num_members}")
        shape = (k, b, self.act_dim)
        if noise is None:
            eps_target = torch.randn(shape, generator=self.generator, dtype=dt, device=dev)
            eps_policy = torch.randn(shape, generator=self.generator, dtype=dt, device=dev)
        else:
            eps_target = noise["target"].to(device=dev, dtype=dt)
            eps_policy = noise["policy"].to(device=dev, dtype=dt)
        lo, hi = cfg.log_std_min, cfg.log_std_max
        alpha = self.log_alpha.detach().exp().unsqueeze(1)  # (K, 1)

        with torch.no_grad():
            next_a, next_logp = squashed_gaussian(self.actor(next_obs), eps_target, lo, hi)
            q_next = self.critic_target(self._critic_input(next_obs, next_a)).view(k, 2, b).amin(1)
            target = rew + cfg.gamma * (1.0 - term) * (q_next - alpha * next_logp)

        q = self.critic(self._critic_input(obs, act)).view(k, 2, b)
        critic_loss = (q - target.unsqueeze(1)).square().mean(-1).sum()

        pi, logp = squashed_gaussian(self.actor(obs), eps_policy, lo, hi)
        frozen = [p.detach() for p in self._critic_params]
        q_pi = self.critic.forward_with(self._critic_input(obs, pi), frozen).view(k, 2, b).amin(1)
        actor_loss = (alpha * logp - q_pi).mean(-1).sum()

        logp_mean = logp.detach().mean(-1)  # (K,)
        alpha_loss = -(self.log_alpha * (logp_mean + self.target_entropy)).sum()
        loss = critic_loss + actor_loss
        if cfg.autotune_alpha:
            loss = loss + alpha_loss

        for p in self._trained:  # what optimizer.zero_grad(set_to_none=True) does, without its profiler hooks
            p.grad = None
        loss.backward()
        self._adam_step()
        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._critic_params, cfg.tau)

        metrics = torch.stack(
            [critic_loss.detach() / k, actor_loss.detach() / k, alpha.mean(), q.detach().mean(),
             alpha_loss.detach() / k, -logp_mean.mean()]
        ).tolist()
        return dict(zip(METRIC_NAMES, metrics))

    def _adam_step(self) -> None:
        """`fused_step(self.optimizer, self._trained)`, with the same two kernel calls and a fraction of its Python.

        `Optimizer.step` regroups the tensors, rebuilds its state lists and enters profiler hooks on every
        call: about 0.4 ms of a 7 ms K=1 update (issue 15). After the first step (which creates Adam's
        state) the lists are kept and the kernels called directly, as `torch.optim.adam._fused_adam`
        calls them (one device, one dtype: one group in parameter order), so the weights stay bit-identical
        (`tests/learners/test_sac.py`). Anything else (a missing gradient, other options) takes `fused_step`.
        """
        grads = []
        for p in self._trained:
            g = p.grad
            if g is None:
                self._adam = None
                fused_step(self.optimizer, self._trained)
                return
            if not g.is_contiguous():  # fused_step's fix for fused Adam's non-contiguous-gradient trap
                p.grad = g = g.contiguous()
            grads.append(g)
        if self._adam is None:
            fused_step(self.optimizer, self._trained)
            self._adam = _AdamLists.of(self.optimizer, self._trained)
            return
        a = self._adam
        torch._foreach_add_(a.steps, 1)
        torch._fused_adam_(a.params, grads, a.exp_avgs, a.exp_avg_sqs, [], a.steps, amsgrad=False, lr=a.lr,
                           beta1=a.beta1, beta2=a.beta2, weight_decay=a.weight_decay, eps=a.eps, maximize=False,
                           grad_scale=None, found_inf=None)

    # -- state --------------------------------------------------------------------------
    def _param_names(self) -> dict[str, tuple[torch.Tensor, bool]]:
        """Flat name -> (parameter, stored with shape (K, 2, ...) instead of (2K, ...))."""
        names: dict[str, tuple[torch.Tensor, bool]] = {}
        for n, p in self.actor.named_parameters():
            names[f"actor.{n}"] = (p, False)
        for n, p in self.critic.named_parameters():
            names[f"critic.{n}"] = (p, True)
        for n, p in self.critic_target.named_parameters():
            names[f"critic_target.{n}"] = (p, True)
        names["log_alpha"] = (self.log_alpha, False)
        return names

    def _export(self, t: torch.Tensor, paired: bool) -> torch.Tensor:
        t = t.detach()
        if paired:
            t = t.reshape(self.num_members, 2, *t.shape[1:])
        return t.to("cpu", copy=True).contiguous()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Actor, critics, target critics and log_alpha as plain contiguous CPU tensors (safetensors-ready).

        Every tensor has the member index first (critics: `(K, 2, ...)`, critic j of member k at
        `[k, j]`), so `member_state(sd, k)` is a valid state dict of a one-member learner.
        """
        return {n: self._export(p, paired) for n, (p, paired) in self._names.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        missing = sorted(set(self._names) - set(state))
        extra = sorted(set(state) - set(self._names))
        if missing or extra:
            raise CheckpointError(
                f"SAC weights do not match this learner (missing {missing[:3]}, unexpected {extra[:3]}); "
                "load them with the configuration they were saved with"
            )
        with torch.no_grad():
            for n, (p, paired) in self._names.items():
                t = state[n]
                want = (self.num_members, 2, *p.shape[1:]) if paired else tuple(p.shape)
                if tuple(t.shape) != want:
                    raise CheckpointError(
                        f"SAC weight {n!r} has shape {tuple(t.shape)}, this learner needs {want}; "
                        "check num_members, obs_dim, act_dim and hidden"
                    )
                p.copy_(t.reshape(p.shape))

    def optimizer_state_dict(self) -> dict[str, torch.Tensor]:
        """Adam's moments and step counts, flat and in `state_dict`'s layout (`<name>.exp_avg`, ...)."""
        out: dict[str, torch.Tensor] = {}
        for n, (p, paired) in self._names.items():
            st = self.optimizer.state.get(p)
            if not st:
                continue
            out[f"{n}.exp_avg"] = self._export(st["exp_avg"], paired)
            out[f"{n}.exp_avg_sq"] = self._export(st["exp_avg_sq"], paired)
            out[f"{n}.step"] = st["step"].detach().to("cpu", copy=True).reshape(())
        return out

    def load_optimizer_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self._adam = None  # the direct Adam step's lists hold the old state tensors
        trained = {id(p) for p in self._trained}
        with torch.no_grad():
            for n, (p, _) in self._names.items():
                if id(p) not in trained or f"{n}.step" not in state:
                    continue
                self.optimizer.state[p] = {
                    "step": state[f"{n}.step"].to(device=p.device, dtype=torch.float32).clone(),
                    "exp_avg": state[f"{n}.exp_avg"].to(device=p.device, dtype=p.dtype).reshape(p.shape).clone(),
                    "exp_avg_sq": state[f"{n}.exp_avg_sq"].to(device=p.device, dtype=p.dtype).reshape(p.shape).clone(),
                }

    def actor_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's actor (`layers.i.weight (1, in, out)`, `layers.i.bias (1, 1, out)`), CPU clones."""
        if not 0 <= k < self.num_members:
            raise IndexError(f"member {k} out of range for {self.num_members} members")
        return {n: p[k : k + 1].detach().to("cpu", copy=True).contiguous() for n, p in self.actor.named_parameters()}


@dataclass
class _AdamLists:
    """What `torch.optim.adam._fused_adam` passes to the fused kernel, kept between steps (`BatchedSAC._adam_step`)."""

    params: list[torch.Tensor]
    exp_avgs: list[torch.Tensor]
    exp_avg_sqs: list[torch.Tensor]
    steps: list[torch.Tensor]
    lr: float
    beta1: float
    beta2: float
    weight_decay: float
    eps: float

    @classmethod
    def of(cls, optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> _AdamLists | None:
        """The lists of a fused Adam with one parameter group of `params` on one device and dtype, with its state
        created; None for anything else (that optimizer then keeps stepping itself)."""
        if len(optimizer.param_groups) != 1:
            return None
        group = optimizer.param_groups[0]
        plain = {"fused": True, "amsgrad": False, "maximize": False, "capturable": False, "differentiable": False,
                 "decoupled_weight_decay": False, "foreach": None}
        if any(group.get(k, v) != v for k, v in plain.items()) or len(group["params"]) != len(params) \
                or any(a is not b for a, b in zip(group["params"], params)):
            return None
        if isinstance(group["lr"], torch.Tensor) or len({(p.device, p.dtype) for p in params}) != 1:
            return None
        states = [optimizer.state.get(p) for p in params]
        if not all(st and {"step", "exp_avg", "exp_avg_sq"} <= st.keys() for st in states):
            return None
        beta1, beta2 = group["betas"]
        return cls(list(params), [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states],
                   [st["step"] for st in states], float(group["lr"]), float(beta1), float(beta2),
                   float(group["weight_decay"]), float(group["eps"]))


def load_member_actor(
    state: Mapping[str, torch.Tensor], obs_dim: int, act_dim: int, hidden: Sequence[int]
) -> Callable[[np.ndarray], np.ndarray]:
    """A deterministic policy `obs (o,) | (B, o) -> action (a,) | (B, a)` from `BatchedSAC.actor_state(k)`.

    Accepts the member tensors with or without their leading member dimension of 1 and
    with or without an `actor.` prefix.
    """
    state = {n.removeprefix("actor."): t for n, t in state.items()}
    dtype = next(iter(state.values())).dtype if state else torch.float32
    mlp = BatchedMLP(1, obs_dim, list(hidden), 2 * act_dim, dtype=dtype)
    expected = mlp.state_dict()
    if set(state) != set(expected):
        raise CheckpointError(
            f"actor weights have keys {sorted(state)[:4]}, expected {sorted(expected)[:4]}; "
            "pass the hidden sizes the policy was trained with"
        )
    fixed = {}
    for n, ref in expected.items():
        t = state[n]
        if t.dim() == ref.dim() - 1:
            t = t.unsqueeze(0)
        if t.shape != ref.shape:
            raise CheckpointError(
                f"actor weight {n!r} has shape {tuple(t.shape)}, expected {tuple(ref.shape)}; "
                "check obs_dim, act_dim and hidden"
            )
        fixed[n] = t
    mlp.load_state_dict(fixed)
    mlp.requires_grad_(False)

    def policy(obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs), dtype=dtype)
        single = x.dim() == 1
        if x.shape[-1] != obs_dim or x.dim() > 2:
            raise ValueError(f"obs must have shape ({obs_dim},) or (B, {obs_dim}), got {tuple(x.shape)}")
        with torch.no_grad():
            a, _ = squashed_gaussian(mlp(x.reshape(1, -1, obs_dim)), None, 0.0, 0.0)
        a = a[0]
        return (a[0] if single else a).numpy()

    return policy


class BatchedReplay:
    """K replay buffers of equal size in numpy; member k's samples come from member k's data only."""

    def __init__(
        self, num_members: int, capacity: int, obs_dim: int, act_dim: int, seed: int = 0, device: str = "cpu"
    ) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        self.num_members, self.capacity, self.obs_dim, self.act_dim = num_members, capacity, obs_dim, act_dim
        self.device = torch.device(device)
        k = num_members
        self.observations = np.zeros((k, capacity, obs_dim), np.float32)
        self.actions = np.zeros((k, capacity, act_dim), np.float32)
        self.rewards = np.zeros((k, capacity), np.float32)
        self.next_observations = np.zeros((k, capacity, obs_dim), np.float32)
        self.terminals = np.zeros((k, capacity), np.float32)
        self.rng = np.random.default_rng(seed)
        self._offsets = (np.arange(k) * capacity)[:, None]
        self.ptr = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self, obs: np.ndarray, act: np.ndarray, rew: np.ndarray, next_obs: np.ndarray, terminal: np.ndarray
    ) -> None:
        """One transition per member: obs (K, o), act (K, a), rew (K,), next_obs (K, o), terminal (K,)."""
        k = self.num_members
        for name, x, want in (("obs", obs, (k, self.obs_dim)), ("act", act, (k, self.act_dim)), ("rew", rew, (k,)),
                              ("next_obs", next_obs, (k, self.obs_dim)), ("terminal", terminal, (k,))):
            if np.shape(x) != want:
                raise ValueError(f"BatchedReplay.add: {name} must have shape {want}, got {np.shape(x)}")
        i = self.ptr
        self.observations[:, i] = obs
        self.actions[:, i] = act
        self.rewards[:, i] = rew
        self.next_observations[:, i] = next_obs
        self.terminals[:, i] = terminal
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def add_steps(
        self, obs: np.ndarray, act: np.ndarray, rew: np.ndarray, next_obs: np.ndarray, terminal: np.ndarray
    ) -> None:
        """T transitions per member in one call, as T calls of `add` in order would store them:
        obs (K, T, o), act (K, T, a), rew (K, T), next_obs (K, T, o), terminal (K, T)."""
        if np.ndim(rew) != 2:
            raise ValueError(f"BatchedReplay.add_steps: rew must have shape (K, T), got {np.shape(rew)}")
        k, t = self.num_members, np.shape(rew)[1]
        for name, x, want in (("obs", obs, (k, t, self.obs_dim)), ("act", act, (k, t, self.act_dim)),
                              ("rew", rew, (k, t)), ("next_obs", next_obs, (k, t, self.obs_dim)),
                              ("terminal", terminal, (k, t))):
            if np.shape(x) != want:
                raise ValueError(f"BatchedReplay.add_steps: {name} must have shape {want}, got {np.shape(x)}")
        if t > self.capacity:  # later transitions overwrite earlier ones: leave that to `add`
            for j in range(t):
                self.add(obs[:, j], act[:, j], rew[:, j], next_obs[:, j], terminal[:, j])
            return
        i = self.ptr
        rows: slice | np.ndarray = slice(i, i + t) if i + t <= self.capacity else (i + np.arange(t)) % self.capacity
        self.observations[:, rows] = obs
        self.actions[:, rows] = act
        self.rewards[:, rows] = rew
        self.next_observations[:, rows] = next_obs
        self.terminals[:, rows] = terminal
        self.ptr = (i + t) % self.capacity
        self.size = min(self.size + t, self.capacity)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """(K, B, ...) float32 tensors, indices drawn independently and uniformly per member."""
        if self.size == 0:
            raise ValueError("BatchedReplay.sample: the buffer is empty")
        k, n = self.num_members, self.num_members * self.capacity
        flat = self.rng.integers(0, self.size, size=(k, batch_size)) + self._offsets
        out = {
            "observations": np.take(self.observations.reshape(n, self.obs_dim), flat, axis=0),
            "actions": np.take(self.actions.reshape(n, self.act_dim), flat, axis=0),
            "rewards": np.take(self.rewards.reshape(n), flat),
            "next_observations": np.take(self.next_observations.reshape(n, self.obs_dim), flat, axis=0),
            "terminals": np.take(self.terminals.reshape(n), flat),
        }
        return {key: torch.from_numpy(v).to(self.device) for key, v in out.items()}
