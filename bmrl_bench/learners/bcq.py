"""`BatchedBCQ`: K independent BCQ learners (Fujimoto et al. 2019) updated in one batched pass.

Follows the official continuous implementation (github.com/sfujim/BCQ, `continuous_BCQ/BCQ.py`)
with `max_action = 1` (every action box of the benchmark is `[-1, 1]^act_dim`):

- VAE: encoder `(s, a) -> (mean, log_std.clamp(-4, 15))`, decoder `(s, z) -> tanh(.)`; when
  sampling, `z ~ N(0, 1)` clipped to `[-0.5, 0.5]` (`latent_clip`). Loss: `mse(recon, a) + 0.5 * KL`.
- Perturbation actor `xi(s, a) = (a + phi * tanh(f(s, a))).clamp(-1, 1)`.
- Two critics; target `y = r + gamma * (1 - terminal) * max_j [lmbda * min(Q1', Q2') + (1 - lmbda) *
  max(Q1', Q2')](s', xi'(s', G(s', z_j)))` over `n_action_samples` decoded actions `j`.
- Actor loss `-Q1(s, xi(s, G(s, z))).mean()`; Polyak averaging of actor and critics (no VAE target).
- Acting: `n_action_samples` candidates `xi(s, G(s, z))`, the argmax of Q1 (critic 0) is taken.

The order of one update is the official one: VAE step, then the critic step (its targets use the
freshly updated decoder), then the actor step (against the freshly updated Q1), then Polyak.

Member k of every network is an ordinary network whose weights are `param[k]` (see
`bmrl_bench.learners.nn`); each loss is the SUM over members of that member's own mean loss, so
one batched update equals K separate updates. The two critics are one `BatchedMLP` with 2K members
(`[Q1_0..Q1_{K-1}, Q2_0..Q2_{K-1}]`), but `state_dict()` presents them as `critic1.*` / `critic2.*`
so that every tensor of it has the member index as its leading dimension:
`nn.member_state(bcq.state_dict(), k)` is a valid state dict of a one-member `BatchedBCQ`.

tiMe (phase 2) distills each member's Q1 (`q_value`), generator G (`generate`) and perturbation
xi (`perturb`); all three take and return tensors with leading dimension K and run under no_grad.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bmrl_bench.config_checks import AT_LEAST_1, DISCOUNT, NON_NEGATIVE, POLYAK, POSITIVE, UNIT, CheckedConfig
from bmrl_bench.errors import CheckpointError
from bmrl_bench.learners.nn import BatchedMLP, true_parameters
from bmrl_bench.learners.optim import fused_adam, fused_step

__all__ = ["BCQConfig", "BatchedBCQ", "NOISE_KEYS"]

# Keys of the noise dict `update` accepts (all standard normal draws; see `BatchedBCQ.sample_noise`).
NOISE_KEYS = ("vae", "target", "actor")
# `BatchedMLP(gemm_friendly=...)` for every network: same function, faster kernels (rounding differs).
GEMM_FRIENDLY = True


@dataclass
class BCQConfig(CheckedConfig):
    """Hyper-parameters of BCQ; defaults are the official implementation's, lr as in tiMe.

    Named as in the official implementation (`lmbda`, `phi`). The `bcq` baseline
    (`baselines/bcq.py`, d3rlpy's BCQ) names the same two constants as d3rlpy does: `lam` and
    `action_flexibility`. This learner is tiMe's phase 1 and the speed bench's, not `--algo bcq`.
    """

    actor_hidden: tuple[int, ...] = (400, 300)
    """Hidden sizes of the perturbation model xi(s, a)."""
    critic_hidden: tuple[int, ...] = (400, 300)
    """Hidden sizes of each of the two critics Q1, Q2 on (s, a)."""
    vae_hidden: tuple[int, ...] = (750, 750)
    """Hidden sizes of the VAE encoder and of its decoder (the generator G)."""
    latent_dim: int | None = None
    """Size of the VAE latent; None means 2 * act_dim (official)."""
    lr: float = 3e-4
    """Adam learning rate of actor, critics and VAE (official 1e-3; tiMe lowered it to 3e-4)."""
    batch_size: int = 100
    """Transitions per member per update (used by callers that sample batches)."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak averaging rate of the target actor and critics."""
    lmbda: float = 0.75
    """Soft clipped double Q: weight of min(Q1, Q2) against max(Q1, Q2) in the target."""
    phi: float = 0.05
    """Maximum perturbation xi may add to a decoded action (times max_action = 1)."""
    n_action_samples: int = 10
    """Decoded actions per state, both in the critic target and when acting."""
    latent_clip: float = 0.5
    """Decoder latents are N(0, 1) draws clipped to [-latent_clip, latent_clip] (official: 0.5)."""
    device: str = "cpu"
    """torch device of all parameters and computations."""

    RANGES = {"actor_hidden": AT_LEAST_1, "critic_hidden": AT_LEAST_1, "vae_hidden": AT_LEAST_1,
              "latent_dim": AT_LEAST_1,
              "lr": POSITIVE, "batch_size": AT_LEAST_1, "gamma": DISCOUNT, "tau": POLYAK, "lmbda": UNIT,
              "phi": NON_NEGATIVE, "n_action_samples": AT_LEAST_1, "latent_clip": POSITIVE}


class BatchedBCQ:
    """K independent BCQ learners; member k learns only from `batch[...][k]`."""

    def __init__(
        self,
        num_members: int,
        obs_dim: int,
        act_dim: int,
        config: BCQConfig | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if num_members < 1 or obs_dim < 1 or act_dim < 1:
            raise ValueError(f"BatchedBCQ needs positive sizes, got K={num_members}, obs={obs_dim}, act={act_dim}")
        self.config = cfg = config if config is not None else BCQConfig()
        self.num_members = K = num_members
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.dtype = dtype
        self.device = torch.device(cfg.device)
        L = self.latent_dim
        # Faster kernel shapes for the same function (hidden 750 -> 752 and 300 -> 304 zero-padded
        # inside the matmuls, narrow and one-unit output layers; see BatchedMLP).
        kw = {"dtype": dtype, "device": self.device, "gemm_friendly": GEMM_FRIENDLY}

        self.actor = BatchedMLP(K, obs_dim + act_dim, cfg.actor_hidden, act_dim, **kw)
        self.critic = BatchedMLP(2 * K, obs_dim + act_dim, cfg.critic_hidden, 1, **kw)
        self.encoder = BatchedMLP(K, obs_dim + act_dim, cfg.vae_hidden, 2 * L, **kw)
        self.decoder = BatchedMLP(K, obs_dim + L, cfg.vae_hidden, act_dim, **kw)
        init = torch.Generator(device=self.device).manual_seed(seed)
        for net in (self.actor, self.critic, self.encoder, self.decoder):
            net.reset_parameters(init)
        self.actor_target = BatchedMLP(K, obs_dim + act_dim, cfg.actor_hidden, act_dim, **kw)
        self.critic_target = BatchedMLP(2 * K, obs_dim + act_dim, cfg.critic_hidden, 1, **kw)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        for net in (self.actor_target, self.critic_target):
            net.requires_grad_(False)

        self._generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self._actor_params = list(self.actor.parameters())
        self._critic_params = list(self.critic.parameters())
        self._vae_params = [*self.encoder.parameters(), *self.decoder.parameters()]
        self.actor_opt = fused_adam(self._actor_params, cfg.lr)
        self.critic_opt = fused_adam(self._critic_params, cfg.lr)
        self.vae_opt = fused_adam(self._vae_params, cfg.lr)
        self._polyak_online = [*self._actor_params, *self._critic_params]
        self._polyak_target = [*self.actor_target.parameters(), *self.critic_target.parameters()]

    # ------------------------------------------------------------------ properties / rng
    @property
    def latent_dim(self) -> int:
        """Size of the VAE latent z (config.latent_dim, or 2 * act_dim)."""
        return self.config.latent_dim if self.config.latent_dim is not None else 2 * self.act_dim

    def manual_seed(self, seed: int) -> None:
        """Reseed the generator of every random draw (update noise, acting, `generate` without z)."""
        self._generator.manual_seed(seed)

    def sample_noise(self, batch_size: int) -> dict[str, Tensor]:
        """The standard normal draws of one update, member index leading.

        `vae (K, B, latent)`: reparameterisation noise of the encoder; `target (K, B * n, latent)`:
        decoder latents for the critic target (row `i * n + j` is sample j of next state i, before
        clipping); `actor (K, B, latent)`: decoder latents of the actor step (before clipping).
        Slicing `[k:k+1]` of each gives what a one-member learner would use for member k.
        """
        K, L, n = self.num_members, self.latent_dim, self.config.n_action_samples
        kw = {"dtype": self.dtype, "device": self.device, "generator": self._generator}
        return {
            "vae": torch.randn(K, batch_size, L, **kw),
            "target": torch.randn(K, batch_size * n, L, **kw),
            "actor": torch.randn(K, batch_size, L, **kw),
        }

    # ------------------------------------------------------------------ network pieces
    def _perturb(self, net: BatchedMLP, obs: Tensor, act: Tensor) -> Tensor:
        h = net(torch.cat([obs, act], dim=-1))
        return (act + self.config.phi * torch.tanh(h)).clamp(-1.0, 1.0)

    def _decode(self, obs: Tensor, z: Tensor) -> Tensor:
        return torch.tanh(self.decoder(torch.cat([obs, z], dim=-1)))

    def _sample_z(self, k: int, rows: int) -> Tensor:
        z = torch.randn(k, rows, self.latent_dim, dtype=self.dtype, device=self.device, generator=self._generator)
        return z.clamp(-self.config.latent_clip, self.config.latent_clip)

    def _q1(self, obs: Tensor, act: Tensor, params: Sequence[Tensor] | None = None) -> Tensor:
        """Q1 of every member, (K, N, 1); `params` defaults to the online critic's first K members."""
        K = self.num_members
        if params is None:
            params = [p[:K] for p in self._critic_params]
        return self.critic.forward_with(torch.cat([obs, act], dim=-1), params)

    def _q_both(self, net: BatchedMLP, obs: Tensor, act: Tensor) -> Tensor:
        """Both critics, (2K, N, 1): rows [:K] are Q1, [K:] are Q2."""
        x = torch.cat([obs, act], dim=-1)
        return net(torch.cat([x, x], dim=0))

    def _as_tensor(self, x: Tensor | np.ndarray) -> Tensor:
        return torch.as_tensor(x, dtype=self.dtype, device=self.device)

    # ------------------------------------------------------------------ update
    def update(self, batch: Mapping[str, Tensor], noise: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        """One BCQ step for every member; returns member-averaged `vae_loss`, `critic_loss`,
        `actor_loss`, `q_mean` (mean Q1 on the data) and `target_q_mean`.

        `batch`: `observations (K,B,o)`, `actions (K,B,a)`, `rewards (K,B)`,
        `next_observations (K,B,o)`, `terminals (K,B)` (1.0 = true termination).
        `noise`: optional draws as `sample_noise(B)` returns them (default: drawn here).
        """
        cfg = self.config
        K, n = self.num_members, cfg.n_action_samples
        obs = self._as_tensor(batch["observations"])
        act = self._as_tensor(batch["actions"])
        rew = self._as_tensor(batch["rewards"])
        next_obs = self._as_tensor(batch["next_observations"])
        term = self._as_tensor(batch["terminals"])
        B = obs.shape[1]
        if obs.shape != (K, B, self.obs_dim) or act.shape != (K, B, self.act_dim) or next_obs.shape != obs.shape:
            raise ValueError(
                f"BatchedBCQ.update: expected observations/next_observations (K={K}, B, {self.obs_dim}) and "
                f"actions (K, B, {self.act_dim}), got {tuple(obs.shape)}, {tuple(next_obs.shape)}, {tuple(act.shape)}"
            )
        if rew.shape != (K, B) or term.shape != (K, B):
            raise ValueError(f"BatchedBCQ.update: rewards and terminals must be (K={K}, B={B}), "
                             f"got {tuple(rew.shape)}, {tuple(term.shape)}")
        if noise is None:
            noise = self.sample_noise(B)

        # --- VAE
        L = self.latent_dim
        stats = self.encoder(torch.cat([obs, act], dim=-1))
        mean, log_std = stats[..., :L], stats[..., L:].clamp(-4.0, 15.0)
        std = log_std.exp()
        recon = self._decode(obs, mean + std * noise["vae"])
        recon_loss = (recon - act).pow(2).mean(dim=(1, 2))
        kl = -0.5 * (1.0 + 2.0 * log_std - mean.pow(2) - std.pow(2)).mean(dim=(1, 2))
        vae_loss = recon_loss + 0.5 * kl  # (K,)
        self.vae_opt.zero_grad(set_to_none=True)
        vae_loss.sum().backward()
        fused_step(self.vae_opt, self._vae_params)

        # --- critics
        with torch.no_grad():
            z = noise["target"].clamp(-cfg.latent_clip, cfg.latent_clip)
            # Members in groups whose activations stay in cache: the target runs every network on
            # B * n rows per member, and one pass over 8 members of 256-unit nets streams 16 MB per
            # layer through memory (1.7x slower on CPU). Members are independent: same values.
            g = self._target_group(B * n)
            tq = torch.cat([self._target_max_q(next_obs[k : k + g], z[k : k + g], k, min(k + g, K))
                            for k in range(0, K, g)], dim=0)
            y = rew + (1.0 - term) * cfg.gamma * tq  # (K, B)
        q = self._q_both(self.critic, obs, act).squeeze(-1)  # (2K, B)
        per_critic = (q - torch.cat([y, y], dim=0)).pow(2).mean(dim=1)  # (2K,)
        critic_loss = per_critic[:K] + per_critic[K:]  # (K,)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.sum().backward()
        fused_step(self.critic_opt, self._critic_params)

        # --- perturbation model: gradients reach the actor only (decoder under no_grad, critic detached)
        with torch.no_grad():
            sampled = self._decode(obs, noise["actor"].clamp(-cfg.latent_clip, cfg.latent_clip))
        q1_params = [p[:K].detach() for p in self._critic_params]
        actor_loss = -self._q1(obs, self._perturb(self.actor, obs, sampled), q1_params).mean(dim=(1, 2))  # (K,)
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.sum().backward()
        fused_step(self.actor_opt, self._actor_params)

        # --- targets
        with torch.no_grad():
            torch._foreach_lerp_(self._polyak_target, self._polyak_online, cfg.tau)

        values = torch.stack(
            [vae_loss.mean(), critic_loss.mean(), actor_loss.mean(), q[:K].mean(), y.mean()]
        ).detach()
        names = ("vae_loss", "critic_loss", "actor_loss", "q_mean", "target_q_mean")
        return dict(zip(names, values.tolist()))  # the one sync point of an update

    def _target_max_q(self, next_obs: Tensor, z: Tensor, k0: int, k1: int) -> Tensor:
        """Members k0..k1-1 of the critic target's value: (g, B, o), clipped latents (g, B*n, L) -> (g, B).

        max_j [lmbda min(Q1', Q2') + (1 - lmbda) max(Q1', Q2')](s', xi'(s', G(s', z_j)))."""
        cfg, K = self.config, self.num_members
        g, b, n = k1 - k0, next_obs.shape[1], cfg.n_action_samples

        def params(net: BatchedMLP, lo: int, hi: int) -> list[Tensor]:
            return [p[lo:hi] for p in net.parameters()]

        rep = next_obs.unsqueeze(2).expand(g, b, n, self.obs_dim).reshape(g, b * n, self.obs_dim)
        sampled = torch.tanh(self.decoder.forward_with(torch.cat([rep, z], dim=-1), params(self.decoder, k0, k1)))
        h = self.actor_target.forward_with(torch.cat([rep, sampled], dim=-1), params(self.actor_target, k0, k1))
        x = torch.cat([rep, (sampled + cfg.phi * torch.tanh(h)).clamp(-1.0, 1.0)], dim=-1)
        tq1 = self.critic_target.forward_with(x, params(self.critic_target, k0, k1))
        tq2 = self.critic_target.forward_with(x, params(self.critic_target, K + k0, K + k1))
        tq = cfg.lmbda * torch.minimum(tq1, tq2) + (1.0 - cfg.lmbda) * torch.maximum(tq1, tq2)
        return tq.reshape(g, b, n).amax(dim=2)

    def _target_group(self, rows: int) -> int:
        """Members per group of the critic target: all of them on a GPU; on a CPU, as many as keep one
        activation of the widest layer near 2 MB (a core's L2 on the machines we measured), at least 1."""
        if self.device.type != "cpu":
            return self.num_members
        cfg = self.config
        width = max(*cfg.actor_hidden, *cfg.critic_hidden, *cfg.vae_hidden)
        return max(1, min(self.num_members, (2 << 20) // (4 * rows * width)))

    # ------------------------------------------------------------------ acting / distillation
    @torch.no_grad()
    def act(self, obs: np.ndarray | Tensor) -> np.ndarray:
        """BCQ's action for `obs (K, o)` or `(K, B, o)` -> `(K, a)` / `(K, B, a)` float32 in [-1, 1].

        Each state gets `n_action_samples` candidates `xi(s, G(s, z))`; the one with the largest Q1 wins.
        """
        x = self._as_tensor(obs)
        single = x.dim() == 2
        if single:
            x = x.unsqueeze(1)
        K, n = self.num_members, self.config.n_action_samples
        if x.dim() != 3 or x.shape[0] != K or x.shape[2] != self.obs_dim:
            raise ValueError(f"BatchedBCQ.act: expected obs (K={K}, {self.obs_dim}) or (K, B, {self.obs_dim}), "
                             f"got {tuple(x.shape)}")
        B = x.shape[1]
        rep = x.unsqueeze(2).expand(K, B, n, self.obs_dim).reshape(K, B * n, self.obs_dim)
        cand = self._perturb(self.actor, rep, self._decode(rep, self._sample_z(K, B * n)))
        q1 = self._q1(rep, cand).reshape(K, B, n)
        idx = q1.argmax(dim=2)  # (K, B)
        cand = cand.reshape(K, B, n, self.act_dim)
        best = torch.take_along_dim(cand, idx[:, :, None, None], dim=2).squeeze(2)
        if single:
            best = best.squeeze(1)
        return best.to(torch.float32).cpu().numpy()

    @torch.no_grad()
    def q_value(self, obs: Tensor, act: Tensor) -> Tensor:
        """Q1 (the critic used for acting) of each member: `(K,B,o), (K,B,a) -> (K,B)`."""
        return self._q1(self._as_tensor(obs), self._as_tensor(act)).squeeze(-1)

    @torch.no_grad()
    def generate(self, obs: Tensor, z: Tensor | None = None) -> Tensor:
        """The generator G (VAE decoder): `(K,B,o), (K,B,latent) -> (K,B,a)` in [-1, 1].

        `z` defaults to `N(0, 1)` draws clipped to [-latent_clip, latent_clip] (as BCQ samples them); a given `z`
        is used as is.
        """
        x = self._as_tensor(obs)
        if z is None:
            z = self._sample_z(x.shape[0], x.shape[1])
        return self._decode(x, self._as_tensor(z))

    @torch.no_grad()
    def perturb(self, obs: Tensor, act: Tensor) -> Tensor:
        """The perturbed action xi(s, a) = (a + phi * tanh(f(s, a))).clamp(-1, 1): `(K,B,o), (K,B,a) -> (K,B,a)`."""
        return self._perturb(self.actor, self._as_tensor(obs), self._as_tensor(act))

    # ------------------------------------------------------------------ state
    def _named_params(self) -> list[tuple[str, Tensor, tuple[slice, ...], torch.optim.Optimizer | None]]:
        """(flat name, parameter, index of its part, its optimizer or None).

        The index picks the members (the critic's first or last K for `critic1` / `critic2`) and the
        true, unpadded block of the weight (see `BatchedLinear`): what a state dict holds.
        """
        K = self.num_members
        out: list[tuple[str, Tensor, tuple[slice, ...], torch.optim.Optimizer | None]] = []
        online = {"actor": (self.actor, self.actor_opt), "vae_encoder": (self.encoder, self.vae_opt),
                  "vae_decoder": (self.decoder, self.vae_opt), "actor_target": (self.actor_target, None)}
        for prefix, (net, opt) in online.items():
            for name, p, idx in true_parameters(net):
                out.append((f"{prefix}.{name}", p, idx, opt))
        for net, suffix, opt in ((self.critic, "", self.critic_opt), (self.critic_target, "_target", None)):
            for name, p, idx in true_parameters(net):
                out.append((f"critic1{suffix}.{name}", p, (slice(0, K), *idx[1:]), opt))
                out.append((f"critic2{suffix}.{name}", p, (slice(K, 2 * K), *idx[1:]), opt))
        return out

    def state_dict(self) -> dict[str, Tensor]:
        """Flat `{name: tensor}`: all weights and the Adam moments/steps, each with leading dim K.

        `adam.<param>.{exp_avg,exp_avg_sq,step}` appear once an update has run (`step` is
        repeated per member). Tensors are contiguous copies sharing no storage.
        """
        K = self.num_members
        out: dict[str, Tensor] = {}
        for name, p, idx, opt in self._named_params():
            out[name] = p.detach()[idx].clone().contiguous()
            state = opt.state.get(p) if opt is not None else None
            if state:
                for key in ("exp_avg", "exp_avg_sq"):
                    t = state[key].detach()
                    out[f"adam.{name}.{key}"] = t[idx].clone().contiguous()
                out[f"adam.{name}.step"] = state["step"].detach().reshape(1).expand(K).clone()
        return out

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load what `state_dict()` wrote (from a learner of the same sizes); raises CheckpointError."""
        entries = self._named_params()
        names = {e[0] for e in entries}
        missing = sorted(names - set(state))
        if missing:
            raise CheckpointError(f"BCQ state is missing {len(missing)} weights (first: {missing[0]}); "
                                  "save it with BatchedBCQ.state_dict()")
        moments = ("exp_avg", "exp_avg_sq", "step")
        known = names | {f"adam.{e[0]}.{k}" for e in entries if e[3] is not None for k in moments}
        unknown = sorted(set(state) - known)
        if unknown:
            raise CheckpointError(
                f"BCQ state has unknown entry {unknown[0]!r}; it was saved by another learner or version")

        def check(name: str, t: Tensor, shape: torch.Size) -> Tensor:
            if tuple(t.shape) != tuple(shape):
                raise CheckpointError(
                    f"BCQ state entry {name!r} has shape {tuple(t.shape)}, expected {tuple(shape)}; "
                    "build the learner with the sizes it was saved with"
                )
            return t.to(dtype=self.dtype, device=self.device)

        K = self.num_members
        with torch.no_grad():
            for name, p, idx, _ in entries:
                dst = p[idx]
                dst.copy_(check(name, state[name], dst.shape))
        # optimizer state: all-or-nothing per optimizer
        for opt in (self.actor_opt, self.critic_opt, self.vae_opt):
            mine = [e for e in entries if e[3] is opt]
            have = [f"adam.{e[0]}.step" in state for e in mine]
            if not any(have):
                opt.state.clear()
                continue
            if not all(have):
                raise CheckpointError("BCQ state holds Adam moments for only some parameters of an optimizer; "
                                      "save it with BatchedBCQ.state_dict()")
            new: dict[Tensor, dict[str, Tensor]] = {}
            for name, p, idx, _ in mine:
                st = new.setdefault(p, {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)})
                for key in ("exp_avg", "exp_avg_sq"):
                    dst = st[key][idx]
                    dst.copy_(check(f"adam.{name}.{key}", state[f"adam.{name}.{key}"], dst.shape))
                step = state[f"adam.{name}.step"]
                if tuple(step.shape) != (K,):
                    raise CheckpointError(
                        f"BCQ state entry 'adam.{name}.step' has shape {tuple(step.shape)}, expected ({K},)")
                st["step"] = step[0].detach().to(dtype=torch.float32, device=self.device).clone()
            opt.state.clear()
            for p, st in new.items():
                opt.state[p] = st
