from __future__ import annotations

import numpy as np
import pytest
import torch

from bmrl_bench.errors import CheckpointError
from bmrl_bench.learners.bcq import BatchedBCQ, BCQConfig
from bmrl_bench.learners.nn import member_state, stack_states

F64 = torch.float64
SMALL = BCQConfig(actor_hidden=(16, 12), critic_hidden=(16, 12), vae_hidden=(20, 20), n_action_samples=4, lr=1e-3)


def _batch(K: int, B: int, o: int, a: int, seed: int, dtype: torch.dtype = F64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "observations": torch.randn(K, B, o, generator=g, dtype=dtype),
        "actions": torch.rand(K, B, a, generator=g, dtype=dtype) * 2 - 1,
        "rewards": torch.randn(K, B, generator=g, dtype=dtype) + torch.arange(K, dtype=dtype)[:, None],
        "next_observations": torch.randn(K, B, o, generator=g, dtype=dtype),
        "terminals": (torch.rand(K, B, generator=g) < 0.3).to(dtype),
    }


def _member(d: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    return {name: t[k : k + 1] for name, t in d.items()}


def _max_diff(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> float:
    assert set(x) == set(y)
    return max((x[n].double() - y[n].double()).abs().max().item() for n in x)


# --------------------------------------------------------------------------- batched == separate
def test_batched_update_equals_separate_one_member_updates() -> None:
    K, o, a, B = 3, 5, 2, 8
    big = BatchedBCQ(K, o, a, SMALL, seed=0, dtype=F64)
    init = big.state_dict()
    smalls = [BatchedBCQ(1, o, a, SMALL, seed=100 + k, dtype=F64) for k in range(K)]
    for k, s in enumerate(smalls):
        assert _max_diff(s.state_dict(), member_state(init, k)) > 1e-3  # really overwritten below
        s.load_state_dict(member_state(init, k))

    for step in range(3):
        batch = _batch(K, B, o, a, seed=step)
        noise = big.sample_noise(B)
        got = big.update(batch, noise)
        per = [s.update(_member(batch, k), _member(noise, k)) for k, s in enumerate(smalls)]
        for name, value in got.items():
            assert value == pytest.approx(np.mean([m[name] for m in per]), rel=1e-9, abs=1e-12)

    final = big.state_dict()
    separate = stack_states([s.state_dict() for s in smalls])
    assert set(final) == set(separate) and any(n.startswith("adam.") for n in final)
    assert _max_diff(final, separate) < 1e-10
    assert _max_diff({n: final[n] for n in init}, init) > 1e-4  # the weights did move


# --------------------------------------------------------------------------- the official algorithm
def _reference_step(P: dict[str, torch.Tensor], opts: dict, batch: dict, noise: dict, cfg: BCQConfig) -> None:
    """sfujim/BCQ `BCQ.train` for one iteration, line by line, on plain 2-D tensors (one member)."""

    def mlp(prefix: str, x: torch.Tensor, n_layers: int = 3) -> torch.Tensor:
        for i in range(n_layers):
            x = x @ P[f"{prefix}.layers.{i}.weight"][0] + P[f"{prefix}.layers.{i}.bias"][0, 0]
            if i < n_layers - 1:
                x = torch.relu(x)
        return x

    def actor(prefix: str, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return (cfg.phi * torch.tanh(mlp(prefix, torch.cat([s, a], 1))) + a).clamp(-1, 1)

    def decode(s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(mlp("vae_decoder", torch.cat([s, z], 1)))

    state, action, next_state = batch["observations"][0], batch["actions"][0], batch["next_observations"][0]
    reward, not_done = batch["rewards"][0][:, None], 1 - batch["terminals"][0][:, None]
    L = noise["vae"].shape[-1]
    batch_size = state.shape[0]

    h = mlp("vae_encoder", torch.cat([state, action], 1))
    mean, log_std = h[:, :L], h[:, L:].clamp(-4, 15)
    std = torch.exp(log_std)
    recon = decode(state, mean + std * noise["vae"][0])
    recon_loss = torch.nn.functional.mse_loss(recon, action)
    kl_loss = -0.5 * (1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()
    opts["vae"].zero_grad()
    (recon_loss + 0.5 * kl_loss).backward()
    opts["vae"].step()

    with torch.no_grad():
        ns = torch.repeat_interleave(next_state, cfg.n_action_samples, 0)
        ta = actor("actor_target", ns, decode(ns, noise["target"][0].clamp(-0.5, 0.5)))
        tq1 = mlp("critic1_target", torch.cat([ns, ta], 1))
        tq2 = mlp("critic2_target", torch.cat([ns, ta], 1))
        tq = cfg.lmbda * torch.min(tq1, tq2) + (1.0 - cfg.lmbda) * torch.max(tq1, tq2)
        tq = tq.reshape(batch_size, -1).max(1)[0].reshape(-1, 1)
        tq = reward + not_done * cfg.gamma * tq
    q1 = mlp("critic1", torch.cat([state, action], 1))
    q2 = mlp("critic2", torch.cat([state, action], 1))
    critic_loss = torch.nn.functional.mse_loss(q1, tq) + torch.nn.functional.mse_loss(q2, tq)
    opts["critic"].zero_grad()
    critic_loss.backward()
    opts["critic"].step()

    sampled = decode(state, noise["actor"][0].clamp(-0.5, 0.5))
    actor_loss = -mlp("critic1", torch.cat([state, actor("actor", state, sampled)], 1)).mean()
    opts["actor"].zero_grad()
    actor_loss.backward()
    opts["actor"].step()

    with torch.no_grad():
        for name in P:
            for net in ("actor", "critic1", "critic2"):
                if name.startswith(f"{net}.layers"):
                    tgt = P[name.replace(net, f"{net}_target", 1)]
                    tgt.copy_(cfg.tau * P[name] + (1 - cfg.tau) * tgt)


@pytest.mark.parametrize("group", [1, 2])
def test_critic_target_in_member_groups_equals_one_pass(group: int) -> None:
    """On a CPU the critic target runs members in cache-sized groups; the groups change nothing."""
    o, a, K, B = 5, 3, 3, 7
    whole, grouped = (BatchedBCQ(K, o, a, SMALL, seed=4, dtype=F64) for _ in range(2))
    whole._target_group = lambda rows: K  # type: ignore[method-assign]
    grouped._target_group = lambda rows: group  # type: ignore[method-assign]
    for step in range(2):
        batch, noise = _batch(K, B, o, a, seed=20 + step), whole.sample_noise(B)
        m1, m2 = whole.update(batch, noise), grouped.update(batch, noise)
        assert m1 == pytest.approx(m2, rel=0, abs=1e-12)
    assert _max_diff(whole.state_dict(), grouped.state_dict()) < 1e-12


def test_one_member_matches_the_official_bcq_train_loop() -> None:
    o, a, B = 4, 2, 6
    bcq = BatchedBCQ(1, o, a, SMALL, seed=3, dtype=F64)
    P = {n: t.clone().requires_grad_(not n.split(".")[0].endswith("_target")) for n, t in bcq.state_dict().items()}

    def group(*nets: str) -> list[torch.Tensor]:
        return [t for n, t in P.items() if n.split(".")[0] in nets]

    opts = {
        "vae": torch.optim.Adam(group("vae_encoder", "vae_decoder"), lr=SMALL.lr, foreach=False),
        "critic": torch.optim.Adam(group("critic1", "critic2"), lr=SMALL.lr, foreach=False),
        "actor": torch.optim.Adam(group("actor"), lr=SMALL.lr, foreach=False),
    }
    for step in range(3):
        batch, noise = _batch(1, B, o, a, seed=10 + step), bcq.sample_noise(B)
        bcq.update(batch, noise)
        _reference_step(P, opts, batch, noise, SMALL)
    mine = {n: t for n, t in bcq.state_dict().items() if not n.startswith("adam.")}
    assert _max_diff(mine, {n: t.detach() for n, t in P.items()}) < 1e-10


# --------------------------------------------------------------------------- it learns
def test_contextual_bandit_generator_and_policy_stay_on_each_members_data() -> None:
    torch.manual_seed(0)
    K, o, a, N, B = 2, 3, 2, 1000, 100
    centers = torch.tensor([[0.5, -0.4], [-0.3, 0.6]])
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(K, N, o, generator=g)
    acts = (centers[:, None, :] + 0.15 * torch.randn(K, N, a, generator=g)).clamp(-1, 1)
    rewards = -(acts - centers[:, None, :]).pow(2).sum(-1)
    cfg = BCQConfig(actor_hidden=(64, 64), critic_hidden=(64, 64), vae_hidden=(64, 64), lr=1e-3)
    bcq = BatchedBCQ(K, o, a, cfg, seed=0)
    rows = torch.arange(K)[:, None]
    for _ in range(400):
        idx = torch.randint(N, (K, B), generator=g)
        bcq.update({
            "observations": obs[rows, idx], "actions": acts[rows, idx], "rewards": rewards[rows, idx],
            "next_observations": torch.randn(K, B, o, generator=g), "terminals": torch.ones(K, B),
        })

    states = torch.randn(K, 300, o, generator=g)
    decoded = bcq.generate(states)
    data_mean = acts.mean(1)
    assert (decoded.mean(1) - data_mean).norm(dim=-1).max().item() < 0.15

    chosen = torch.as_tensor(bcq.act(states.numpy()))
    assert chosen.shape == (K, 300, a)
    nearest = torch.cdist(chosen, acts).amin(-1)  # distance to the member's nearest data action
    assert nearest.max().item() < 0.1
    data_dist = (acts - centers[:, None, :]).norm(dim=-1).mean(1)
    chosen_dist = (chosen - centers[:, None, :]).norm(dim=-1).mean(1)
    assert (chosen_dist < 0.6 * data_dist).all(), (chosen_dist, data_dist)


# --------------------------------------------------------------------------- interface
def test_shapes_bounds_and_latent_dim() -> None:
    K, o, a, B = 2, 5, 3, 7
    bcq = BatchedBCQ(K, o, a, SMALL, seed=0)
    assert bcq.latent_dim == 2 * a
    small = BCQConfig(actor_hidden=(8,), critic_hidden=(8,), vae_hidden=(8,), latent_dim=3)
    assert BatchedBCQ(1, o, a, small).latent_dim == 3
    metrics = bcq.update(_batch(K, B, o, a, seed=0, dtype=torch.float32))
    assert set(metrics) == {"vae_loss", "critic_loss", "actor_loss", "q_mean", "target_q_mean"}
    assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())

    obs = torch.randn(K, B, o) * 5
    single = bcq.act(obs[:, 0].numpy())
    many = bcq.act(obs.numpy())
    assert single.shape == (K, a) and many.shape == (K, B, a) and many.dtype == np.float32
    assert np.abs(many).max() <= 1.0

    z = torch.randn(K, B, bcq.latent_dim)
    gen = bcq.generate(obs, z)
    assert gen.shape == (K, B, a) and gen.abs().max() <= 1.0 and not gen.requires_grad
    assert torch.equal(gen, bcq.generate(obs, z))  # a given z is deterministic
    assert bcq.generate(obs).shape == (K, B, a)

    act = torch.rand(K, B, a) * 2 - 1
    xi = bcq.perturb(obs, act)
    assert xi.shape == (K, B, a) and xi.abs().max() <= 1.0 and not xi.requires_grad
    assert (xi - act).abs().max() <= SMALL.phi + 1e-6
    q = bcq.q_value(obs, act)
    assert q.shape == (K, B) and not q.requires_grad

    with pytest.raises(ValueError):
        bcq.act(np.zeros((K + 1, o), dtype=np.float32))


def test_state_dict_round_trip_and_resume() -> None:
    from safetensors.torch import load, save

    K, o, a, B = 2, 5, 3, 7
    bcq = BatchedBCQ(K, o, a, SMALL, seed=0)
    bcq.update(_batch(K, B, o, a, seed=0, dtype=torch.float32))
    state = bcq.state_dict()
    ptrs = [t.untyped_storage().data_ptr() for t in state.values()]
    assert len(set(ptrs)) == len(ptrs)
    assert all(t.is_contiguous() and t.shape[0] == K for t in state.values())

    other = BatchedBCQ(K, o, a, SMALL, seed=9)
    obs = np.random.default_rng(0).normal(size=(K, 4, o)).astype(np.float32)
    bcq.manual_seed(5), other.manual_seed(5)
    assert not np.array_equal(bcq.act(obs), other.act(obs))
    other.load_state_dict(load(save(state)))
    bcq.manual_seed(5), other.manual_seed(5)
    np.testing.assert_array_equal(bcq.act(obs), other.act(obs))

    # the Adam state travels too: one more identical update keeps them identical
    batch, noise = _batch(K, B, o, a, seed=1, dtype=torch.float32), bcq.sample_noise(B)
    bcq.update(batch, noise), other.update(batch, noise)
    assert _max_diff(bcq.state_dict(), other.state_dict()) == 0.0

    bad = dict(state)
    bad["actor.layers.0.weight"] = bad["actor.layers.0.weight"][:, :-1]
    with pytest.raises(CheckpointError):
        other.load_state_dict(bad)
    with pytest.raises(CheckpointError):
        other.load_state_dict({n: t for n, t in state.items() if n != "critic2.layers.0.bias"})
