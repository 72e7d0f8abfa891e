from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from baselines.pearl import Pearl, PearlConfig, product_of_gaussians
from bmrl_bench.algorithms import EnvSpec, MetaTrainData, get_algorithm, load_algorithm
from bmrl_bench.data import Batch

OBS, ACT = 2, 2
SPEC = EnvSpec(family="pointgoal", obs_dim=OBS, act_dim=ACT, episode_length=20)
TINY = PearlConfig(steps=6, batch_size=16, meta_batch=2, context_size=4, latent_dim=3, encoder_hidden=(16, 16),
                   hidden=(16, 16), max_context=50, log_every=3)


def two_task_batch(n: int = 200, seed: int = 0, terminal: bool = False, obs_dim: int = OBS,
                   scale: float = 1.0) -> Batch:
    """The same (s, a, s') in both tasks; reward +1 in task 0 and -1 in task 1. s ~ N(0, scale^2)."""
    rng = np.random.default_rng(seed)
    s = (scale * rng.standard_normal((n, obs_dim))).astype(np.float32)
    a = rng.uniform(-1, 1, (n, ACT)).astype(np.float32)
    s2 = s.copy()
    s2[:, :ACT] += 0.1 * a
    ones = np.ones(n, np.float32)
    term = ones if terminal else np.zeros(n, np.float32)
    timeouts = np.zeros(n, np.float32)
    timeouts[19::20] = 1.0
    return Batch.concatenate([
        Batch(s, a, sign * ones, s2, term, timeouts, np.full(n, task, np.int64))
        for task, sign in ((0, 1.0), (1, -1.0))
    ])


def meta_data(batch: Batch, spec: EnvSpec = SPEC) -> MetaTrainData:
    return MetaTrainData(spec=spec, batch=batch, num_tasks=2, suite="synthetic")


def rollout(agent, steps: int = 5, seed: int = 3) -> np.ndarray:
    """Actions of `steps` act/observe rounds on fixed pseudo-random transitions, after a reset."""
    rng = np.random.default_rng(seed)
    agent.reset()
    obs = rng.uniform(-1, 1, OBS).astype(np.float32)
    actions = []
    for _ in range(steps):
        a = agent.act(obs)
        actions.append(a)
        nxt = rng.uniform(-1, 1, OBS).astype(np.float32)
        agent.observe(obs, a, float(rng.normal()), nxt, False)
        obs = nxt
    return np.stack(actions)


# ----------------------------------------------------------------------------- fit, log, context
# (the shared contract, save/load included, is test_contract.py)
def test_fit_logs_tunes_alpha_and_the_context_moves_the_action(tmp_path: Path) -> None:
    assert get_algorithm("pearl") is Pearl
    assert Pearl.name == "pearl" and Pearl.config_cls is PearlConfig
    for key in ("pointgoal", "halfcheetah-vel-lite", "hopper-vel-lite", "halfcheetah-vel", "hopper-vel", "default"):
        assert isinstance(Pearl.configs[key], PearlConfig)

    logged: list[tuple[str, int, int, dict[str, float]]] = []
    algo = Pearl(TINY, SPEC, seed=0)
    algo.fit(meta_data(two_task_batch(50)), log=lambda *args: logged.append(args))
    assert [(step, total) for _, step, total, _ in logged] == [(3, 6), (6, 6)]
    metrics = logged[-1][3]
    assert {"critic_loss", "actor_loss", "alpha", "kl"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    assert metrics["alpha"] != 1.0  # autotuned

    agent = algo.make_agent()
    actions = rollout(agent, steps=8)
    assert actions.shape == (8, ACT) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 1.0)
    assert not np.array_equal(actions[0], actions[-1])  # the context changes z, hence the action
    np.testing.assert_array_equal(rollout(agent, steps=8), actions)  # reset forgets the context

    algo.save(tmp_path / "ckpt")
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"config.json", "weights.safetensors"}
    loaded = load_algorithm(tmp_path / "ckpt")
    assert isinstance(loaded, Pearl) and loaded.config == TINY and loaded.spec == SPEC
    np.testing.assert_array_equal(rollout(loaded.make_agent(), steps=8), actions)
    for name, t in algo.nets.state_dict().items():
        assert torch.equal(t, loaded.nets.state_dict()[name]), name


def test_empty_context_uses_the_prior_mean_and_context_is_capped() -> None:
    algo = Pearl(dataclasses.replace(TINY, max_context=3), SPEC, seed=1)
    agent = algo.make_agent()
    obs = np.array([0.3, -0.2], np.float32)
    expected = torch.tanh(algo.nets.policy_head(torch.as_tensor(obs), torch.zeros(3))[:ACT]).detach().numpy()
    np.testing.assert_allclose(agent.act(obs), expected, rtol=0, atol=1e-7)

    rng = np.random.default_rng(0)
    rows = [(rng.normal(size=OBS), rng.uniform(-1, 1, ACT), float(rng.normal()), rng.normal(size=OBS))
            for _ in range(5)]
    for i, r in enumerate(rows):  # encoded in three rounds, so the ring of 3 wraps around
        agent.observe(*r, False)
        if i in (1, 3):
            agent.act(obs)
    recent = algo.make_agent()
    for r in rows[-3:]:
        recent.observe(*r, False)
    torch.testing.assert_close(agent.posterior(), recent.posterior(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(agent.act(obs), recent.act(obs), rtol=0, atol=1e-6)
    agent.reset()
    np.testing.assert_allclose(agent.act(obs), expected, rtol=0, atol=1e-7)  # reset: back to the prior


# ----------------------------------------------------------------------------- posterior
def test_product_of_gaussians_hand_computed() -> None:
    mu, var = product_of_gaussians(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]]))
    torch.testing.assert_close(mu, torch.tensor([1.0]))
    torch.testing.assert_close(var, torch.tensor([0.5]))
    # Unequal variances weight by precision: factors N(0, 1), N(3, 2) -> var 2/3, mu 2/3 * 1.5 = 1.
    mu, var = product_of_gaussians(torch.tensor([[0.0], [3.0]]), torch.tensor([[1.0], [2.0]]))
    torch.testing.assert_close(mu, torch.tensor([1.0]))
    torch.testing.assert_close(var, torch.tensor([2.0 / 3.0]))


def test_encoder_posterior_is_the_product_of_its_factors_and_order_free() -> None:
    algo = Pearl(TINY, SPEC, seed=2)
    ctx = torch.randn(5, 2 * OBS + ACT + 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mu_i, var_i = algo.nets.encoder(ctx)
        mu, var = algo.nets.encoder.posterior(ctx)
        mu_p, var_p = algo.nets.encoder.posterior(ctx.flip(0))
    torch.testing.assert_close(var, 1.0 / (1.0 / var_i).sum(0))
    torch.testing.assert_close(mu, var * (mu_i / var_i).sum(0))
    torch.testing.assert_close((mu_p, var_p), (mu, var))


# ----------------------------------------------------------------------------- learning
def separation(algo: Pearl, batch: Batch, contexts: int = 32, size: int = 4) -> float:
    """Distance between the two tasks' mean posterior means / the largest within-task RMS spread."""
    rng = np.random.default_rng(7)
    means = []
    with torch.no_grad():
        for task in (0, 1):
            tb = batch.task(task)
            idx = rng.integers(0, len(tb), (contexts, size))
            ctx = np.concatenate([tb.observations[idx], tb.actions[idx], tb.rewards[idx][..., None],
                                  tb.next_observations[idx]], -1)
            means.append(algo.nets.encoder.posterior(torch.as_tensor(ctx))[0].numpy())
    centroids = [m.mean(0) for m in means]
    spread = max(np.sqrt(((m - c) ** 2).sum(-1).mean()) for m, c in zip(means, centroids))
    return float(np.linalg.norm(centroids[0] - centroids[1]) / spread)


def test_encoder_learns_to_tell_tasks_apart_through_the_critic() -> None:
    # One-step tasks (terminal everywhere): Q(s, a, z) must be +1 in task 0 and -1 in task 1 for the
    # same (s, a), which the critic can only fit if z separates the tasks. The 14 other inputs of the
    # encoder are wide noise, so an untrained encoder does not separate the tasks (ratio ~0.2-0.5);
    # trained, the ratio is ~9-10 (seeds 0-2). If the critic loss did not reach the encoder, only the
    # KL term would, pulling every posterior to the prior and the ratio would not grow.
    spec = EnvSpec(family="synthetic", obs_dim=6, act_dim=ACT, episode_length=1)
    batch = two_task_batch(256, terminal=True, obs_dim=6, scale=3.0)
    config = PearlConfig(steps=300, batch_size=64, meta_batch=4, context_size=8, latent_dim=4,
                         encoder_hidden=(64, 64), hidden=(64, 64), lr=1e-3)
    algo = Pearl(config, spec, seed=0)
    before = separation(algo, batch)
    algo.fit(meta_data(batch, spec))
    after = separation(algo, batch)
    assert before < 1.0, before  # the check fails for an untrained encoder
    assert after > 3.0, (before, after)


def test_task_draws_are_pearls_one_numpy_draw_per_step() -> None:
    """Tasks uniformly with replacement, rows uniformly within each drawn task's slice; exactly PEARL's formula."""
    from bmrl_bench.learners.sampling import TaskSampler

    batch = two_task_batch(30)
    batch = batch.select(np.random.default_rng(1).permutation(len(batch)))  # the sampler sorts by task itself
    sampler = TaskSampler(batch, 2, "cpu")
    idx = sampler.task_indices(np.random.default_rng(5), 4, 6).numpy()
    u = np.random.default_rng(5).random((4, 7))
    task = (u[:, 0] * 2).astype(np.int64)
    np.testing.assert_array_equal(idx, 30 * task[:, None] + (u[:, 1:] * 30).astype(np.int64))
    rows = sampler.gather(torch.as_tensor(idx))
    assert all(len(set(rows["rewards"][i].tolist())) == 1 for i in range(4))  # one task per row: reward +1 or -1
