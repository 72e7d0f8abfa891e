from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bmrl_bench.errors import CheckpointError
from bmrl_bench.learners.nn import member_state, stack_states
from bmrl_bench.learners.sac import BatchedReplay, BatchedSAC, SACConfig, load_member_actor

F64 = torch.float64


def random_batch(
    k: int, b: int, o: int, a: int, g: torch.Generator, dtype: torch.dtype = F64
) -> dict[str, torch.Tensor]:
    return {
        "observations": torch.randn(k, b, o, generator=g, dtype=dtype),
        "actions": torch.rand(k, b, a, generator=g, dtype=dtype) * 2 - 1,
        "rewards": torch.randn(k, b, generator=g, dtype=dtype),
        "next_observations": torch.randn(k, b, o, generator=g, dtype=dtype),
        "terminals": (torch.rand(k, b, generator=g, dtype=dtype) < 0.3).to(dtype),
    }


def member(batch: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    return {n: t[k : k + 1] for n, t in batch.items()}


def test_batched_update_equals_separate_updates() -> None:
    """THE equivalence test: K=3 in one pass == three 1-member learners, to 1e-10 in float64."""
    k, o, a, b = 3, 5, 2, 16
    cfg = SACConfig(hidden=(32, 32), lr=1e-3, init_alpha=0.5)
    batched = BatchedSAC(k, o, a, cfg, seed=0, dtype=F64)
    sd = batched.state_dict()
    singles = []
    for i in range(k):
        s = BatchedSAC(1, o, a, cfg, seed=100 + i, dtype=F64)  # a different init, overwritten below
        s.load_state_dict(member_state(sd, i))
        singles.append(s)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        batch = random_batch(k, b, o, a, g)
        noise = {"target": torch.randn(k, b, a, generator=g, dtype=F64),
                 "policy": torch.randn(k, b, a, generator=g, dtype=F64)}
        m = batched.update(batch, noise=noise)
        ms = [s.update(member(batch, i), noise={n: t[i : i + 1] for n, t in noise.items()})
              for i, s in enumerate(singles)]
        for name in m:
            assert m[name] == pytest.approx(float(np.mean([x[name] for x in ms])), rel=1e-9, abs=1e-12)
    after = batched.state_dict()
    joined = stack_states([s.state_dict() for s in singles])
    assert after.keys() == joined.keys()
    for name in after:
        torch.testing.assert_close(after[name], joined[name], rtol=0, atol=1e-10, msg=name)
    # and something did change: the check is not vacuous
    for name in ("actor.layers.0.weight", "critic.layers.2.bias", "critic_target.layers.1.weight", "log_alpha"):
        assert (after[name] - sd[name]).abs().max().item() > 1e-6, name


class _ReferenceSAC:
    """A plain single SAC written independently (nn.Linear, torch.distributions, unfused Adam)."""

    def __init__(self, sac: BatchedSAC) -> None:
        sd, cfg = sac.state_dict(), sac.config
        self.cfg, self.act_dim = cfg, sac.act_dim

        def mlp(prefix: str, j: int | None) -> nn.Sequential:
            n = len(cfg.hidden) + 1
            layers: list[nn.Module] = []
            for i in range(n):
                w, bias = sd[f"{prefix}.layers.{i}.weight"][0], sd[f"{prefix}.layers.{i}.bias"][0]
                if j is not None:
                    w, bias = w[j], bias[j]
                lin = nn.Linear(w.shape[0], w.shape[1], dtype=F64)
                with torch.no_grad():
                    lin.weight.copy_(w.T)
                    lin.bias.copy_(bias[0])
                layers.append(lin)
                if i < n - 1:
                    layers.append(nn.ReLU())
            return nn.Sequential(*layers)

        self.actor = mlp("actor", None)
        self.q = [mlp("critic", 0), mlp("critic", 1)]
        self.q_targ = [copy.deepcopy(q) for q in self.q]
        self.log_alpha = torch.tensor(sd["log_alpha"][0].item(), dtype=F64, requires_grad=True)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.opt_q = torch.optim.Adam([p for q in self.q for p in q.parameters()], lr=cfg.lr)
        self.opt_alpha = torch.optim.Adam([self.log_alpha], lr=cfg.lr)

    def sample(self, obs: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.actor(obs).chunk(2, -1)
        lo, hi = self.cfg.log_std_min, self.cfg.log_std_max
        std = (lo + 0.5 * (hi - lo) * (torch.tanh(log_std) + 1)).exp()
        u = mean + std * eps
        act = torch.tanh(u)
        logp = torch.distributions.Normal(mean, std).log_prob(u).sum(-1) - torch.log1p(-act.square()).sum(-1)
        return act, logp

    def update(self, batch: dict[str, torch.Tensor], eps_target: torch.Tensor, eps_policy: torch.Tensor) -> None:
        keys = ("observations", "actions", "rewards", "next_observations", "terminals")
        s, act, r, s2, d = (batch[n][0] for n in keys)
        alpha = self.log_alpha.exp().item()
        with torch.no_grad():
            a2, logp2 = self.sample(s2, eps_target[0])
            sa2 = torch.cat([s2, a2], -1)
            q_next = torch.min(self.q_targ[0](sa2), self.q_targ[1](sa2))[:, 0]
            y = r + self.cfg.gamma * (1 - d) * (q_next - alpha * logp2)
        sa = torch.cat([s, act], -1)
        q_loss = sum(nn.functional.mse_loss(q(sa)[:, 0], y) for q in self.q)
        pi, logp = self.sample(s, eps_policy[0])
        spi = torch.cat([s, pi], -1)
        actor_loss = (alpha * logp - torch.min(self.q[0](spi), self.q[1](spi))[:, 0]).mean()
        alpha_loss = -(self.log_alpha * (logp.detach() + (-self.act_dim))).mean()
        actor_grads = torch.autograd.grad(actor_loss, list(self.actor.parameters()))
        for opt in (self.opt_actor, self.opt_q, self.opt_alpha):
            opt.zero_grad()
        q_loss.backward()
        alpha_loss.backward()
        for p, gr in zip(self.actor.parameters(), actor_grads):
            p.grad = gr
        for opt in (self.opt_actor, self.opt_q, self.opt_alpha):
            opt.step()
        with torch.no_grad():
            for q, qt in zip(self.q, self.q_targ):
                for p, pt in zip(q.parameters(), qt.parameters()):
                    pt.mul_(1 - self.cfg.tau).add_(self.cfg.tau * p)


def test_update_matches_an_independent_reference_sac() -> None:
    o, a, b = 4, 3, 32
    sac = BatchedSAC(1, o, a, SACConfig(hidden=(16, 16), lr=1e-2, init_alpha=0.3), seed=1, dtype=F64)
    ref = _ReferenceSAC(sac)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        batch = random_batch(1, b, o, a, g)
        eps_t, eps_p = torch.randn(1, b, a, generator=g, dtype=F64), torch.randn(1, b, a, generator=g, dtype=F64)
        sac.update(batch, noise={"target": eps_t, "policy": eps_p})
        ref.update(batch, eps_t, eps_p)
    sd = sac.state_dict()
    for i, lin in enumerate(m for m in ref.actor if isinstance(m, nn.Linear)):
        torch.testing.assert_close(sd[f"actor.layers.{i}.weight"][0], lin.weight.T, rtol=0, atol=1e-10)
        torch.testing.assert_close(sd[f"actor.layers.{i}.bias"][0, 0], lin.bias, rtol=0, atol=1e-10)
    for prefix, nets in (("critic", ref.q), ("critic_target", ref.q_targ)):
        for j, net in enumerate(nets):
            for i, lin in enumerate(m for m in net if isinstance(m, nn.Linear)):
                torch.testing.assert_close(sd[f"{prefix}.layers.{i}.weight"][0, j], lin.weight.T, rtol=0, atol=1e-10)
                torch.testing.assert_close(sd[f"{prefix}.layers.{i}.bias"][0, j, 0], lin.bias, rtol=0, atol=1e-10)
    assert sd["log_alpha"][0].item() == pytest.approx(ref.log_alpha.item(), abs=1e-10)
    assert abs(sd["log_alpha"][0].item() - math.log(0.3)) > 1e-3


def test_each_member_learns_its_own_one_step_optimum() -> None:
    """Bandit: r = -||a - c_k||^2, terminal after one step. Member k must find its own c_k."""
    k, o, a, b = 3, 3, 2, 64
    c = torch.tensor([[0.5, 0.5], [-0.5, 0.2], [0.1, -0.6]])
    sac = BatchedSAC(k, o, a, SACConfig(hidden=(64, 64), lr=3e-3, init_alpha=0.1), seed=0)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        obs = 0.3 * torch.randn(k, b, o, generator=g)
        act = torch.rand(k, b, a, generator=g) * 2 - 1
        rew = -((act - c[:, None]) ** 2).sum(-1)
        metrics = sac.update({"observations": obs, "actions": act, "rewards": rew,
                              "next_observations": obs, "terminals": torch.ones(k, b)})
    assert set(metrics) >= {"critic_loss", "actor_loss", "alpha", "q_mean"}
    assert metrics["alpha"] < 0.1  # the temperature was tuned down
    test_obs = (0.3 * torch.randn(k, 50, o, generator=g)).numpy()
    acts = sac.act(test_obs, deterministic=True)
    err = np.abs(acts - c[:, None].numpy())
    assert err.mean(axis=(1, 2)).max() < 0.06, err.mean(axis=(1, 2))
    assert err.max() < 0.2, err.max(axis=(1, 2))
    q = sac.q_value(torch.as_tensor(test_obs), torch.as_tensor(acts))
    assert q.shape == (k, 50)
    assert q.mean().item() > -0.1  # Q at the optimum is about 0 ...
    q_bad = sac.q_value(torch.as_tensor(test_obs), -c[:, None].expand(k, 50, a))  # ... true value -4 ||c_k||^2
    assert torch.all(q_bad.mean(1) < q.mean(1) - 1.0)


def test_act_shapes_bounds_and_randomness() -> None:
    sac = BatchedSAC(4, 5, 3, SACConfig(hidden=(16,), init_alpha=1.0), seed=0)
    obs = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32) * 100  # saturates tanh
    a = sac.act(obs)
    assert a.shape == (4, 3) and a.dtype == np.float32
    assert np.all(np.abs(a) <= 1.0)
    assert sac.act(obs[:, None].repeat(7, axis=1)).shape == (4, 7, 3)
    assert sac.act(torch.as_tensor(obs), deterministic=True).shape == (4, 3)
    small = obs / 100
    d1, d2 = sac.act(small, deterministic=True), sac.act(small, deterministic=True)
    assert np.array_equal(d1, d2)
    assert not np.array_equal(sac.act(small), sac.act(small))
    with pytest.raises(ValueError):
        sac.act(obs[:3])


def test_state_dict_round_trip_through_safetensors(tmp_path) -> None:
    k, o, a = 3, 5, 2
    cfg = SACConfig(hidden=(16, 16))
    sac = BatchedSAC(k, o, a, cfg, seed=0)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        sac.update(random_batch(k, 8, o, a, g, torch.float32))
    path = tmp_path / "w.safetensors"
    save_file(sac.state_dict(), str(path))
    other = BatchedSAC(k, o, a, cfg, seed=5)
    obs = np.random.default_rng(1).normal(size=(k, 10, o)).astype(np.float32)
    assert not np.array_equal(other.act(obs, deterministic=True), sac.act(obs, deterministic=True))
    other.load_state_dict(load_file(str(path)))
    assert np.array_equal(other.act(obs, deterministic=True), sac.act(obs, deterministic=True))
    sa = torch.as_tensor(obs), torch.rand(k, 10, a)
    assert torch.equal(other.q_value(*sa), sac.q_value(*sa))
    # one member's actor, alone, through a file: the same deterministic policy
    save_file(sac.actor_state(1), str(tmp_path / "actor.safetensors"))
    policy = load_member_actor(load_file(str(tmp_path / "actor.safetensors")), o, a, cfg.hidden)
    np.testing.assert_allclose(policy(obs[1]), sac.act(obs, deterministic=True)[1], atol=1e-6)
    np.testing.assert_allclose(policy(obs[1, 0]), sac.act(obs[:, 0], deterministic=True)[1], atol=1e-6)
    with pytest.raises(CheckpointError):
        load_member_actor(sac.actor_state(1), o, a, (32, 16))
    with pytest.raises(CheckpointError):
        BatchedSAC(k + 1, o, a, cfg).load_state_dict(sac.state_dict())
    with pytest.raises(CheckpointError):
        other.load_state_dict({n: t for n, t in sac.state_dict().items() if n != "log_alpha"})


def test_optimizer_state_round_trip_resumes_exactly() -> None:
    k, o, a = 2, 4, 2
    cfg = SACConfig(hidden=(16,))
    sac = BatchedSAC(k, o, a, cfg, seed=0)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        sac.update(random_batch(k, 8, o, a, g, torch.float32))
    resumed = BatchedSAC(k, o, a, cfg, seed=9)
    resumed.load_state_dict(sac.state_dict())
    resumed.load_optimizer_state_dict(sac.optimizer_state_dict())
    for _ in range(2):
        batch = random_batch(k, 8, o, a, g, torch.float32)
        noise = {"target": torch.randn(k, 8, a, generator=g), "policy": torch.randn(k, 8, a, generator=g)}
        sac.update(batch, noise)
        resumed.update(batch, noise)
    for name, t in sac.state_dict().items():
        assert torch.equal(t, resumed.state_dict()[name]), name


def test_replay_samples_each_member_from_its_own_data() -> None:
    k, cap, o, a = 3, 50, 2, 1
    rb = BatchedReplay(k, cap, o, a, seed=0)
    with pytest.raises(ValueError):
        rb.sample(4)
    for t in range(70):  # wraps around: steps 20..69 remain
        member_id = np.arange(k, dtype=np.float32)
        obs = np.stack([member_id, np.full(k, t, np.float32)], axis=1)
        rb.add(obs, (member_id * 10 + t)[:, None], member_id + 0.5, obs + 1, (member_id == 2).astype(np.float32))
    assert len(rb) == cap
    s = rb.sample(256)
    assert s["observations"].shape == (k, 256, o) and s["actions"].shape == (k, 256, a)
    assert s["rewards"].shape == (k, 256) and s["terminals"].shape == (k, 256)
    assert all(v.dtype == torch.float32 for v in s.values())
    for i in range(k):
        assert torch.all(s["observations"][i, :, 0] == i)
        steps = s["observations"][i, :, 1]
        assert steps.min().item() >= 20 and steps.max().item() <= 69
        assert torch.all(s["actions"][i, :, 0] == i * 10 + steps)
        assert torch.all(s["next_observations"][i] == s["observations"][i] + 1)
        assert torch.all(s["rewards"][i] == i + 0.5)
        assert torch.all(s["terminals"][i] == float(i == 2))
        assert len(torch.unique(steps)) > 30
    assert not torch.equal(s["observations"][0, :, 1], s["observations"][1, :, 1])  # independent indices
    with pytest.raises(ValueError):
        rb.add(np.zeros(o), np.zeros((k, a)), np.zeros(k), np.zeros((k, o)), np.zeros(k))
