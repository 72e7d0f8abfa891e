"""What the bench times: synthetic minibatches of HalfCheetah's shapes, our samplers, d3rlpy's learners."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from bmrl_bench.bench.timing import Case, cycle

OBS_DIM, ACT_DIM = 17, 6  # HalfCheetah


def torch_batch(rng: np.random.Generator, k: int, b: int, device: str) -> dict[str, Any]:
    import torch

    f = np.float32
    arrays = {
        "observations": rng.standard_normal((k, b, OBS_DIM)).astype(f),
        "actions": rng.uniform(-1, 1, (k, b, ACT_DIM)).astype(f),
        "rewards": rng.standard_normal((k, b)).astype(f),
        "next_observations": rng.standard_normal((k, b, OBS_DIM)).astype(f),
        "terminals": (rng.random((k, b)) < 0.01).astype(f),
    }
    return {n: torch.from_numpy(v).to(device) for n, v in arrays.items()}


def d3rlpy_batch(d3rlpy: Any, batch: dict[str, Any]) -> Any:
    """Member 0 of one of our batches as d3rlpy's numpy minibatch (the same transitions)."""
    def col(x: Any) -> np.ndarray:
        return np.ascontiguousarray(x[0].cpu().numpy().reshape(x.shape[1], -1))

    b = batch["rewards"].shape[1]
    return d3rlpy.dataset.TransitionMiniBatch(
        observations=col(batch["observations"]), actions=col(batch["actions"]), rewards=col(batch["rewards"]),
        next_observations=col(batch["next_observations"]), next_actions=col(batch["actions"]),
        terminals=col(batch["terminals"]), intervals=np.ones((b, 1), np.float32), transitions=[],
    )


def d3rlpy_device(device: str) -> str:
    return "cuda:0" if device == "cuda" else device


def random_flat_batch(rng: np.random.Generator, tasks: int, per_task: int, episode: int) -> Any:
    from bmrl_bench.data import Batch

    n, f = tasks * per_task, np.float32
    timeouts = np.zeros(n, f)
    timeouts[episode - 1 :: episode] = 1.0
    obs = rng.standard_normal((n, OBS_DIM)).astype(f)
    nxt = np.roll(obs, -1, axis=0)  # consecutive rows continue an episode (d3rlpy layout check)
    return Batch(observations=obs, actions=rng.uniform(-1, 1, (n, ACT_DIM)).astype(f),
                 rewards=rng.standard_normal(n).astype(f), next_observations=nxt, terminals=np.zeros(n, f),
                 timeouts=timeouts, task_index=np.repeat(np.arange(tasks), per_task).astype(np.int64))


def env_step_rate(family_name: str, episode: int, min_time: float) -> float:
    """Plain (non-vector) env steps/s with uniform random actions, resets included."""
    from bmrl_bench.families import get_family

    env = get_family(family_name).make(0.5, max_episode_steps=episode)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    actions = rng.uniform(-1, 1, (4096, *env.action_space.shape)).astype(np.float32)
    steps, t0 = 0, time.perf_counter()
    while steps < 200 or time.perf_counter() - t0 < min_time:
        _, _, term, trunc, _ = env.step(actions[steps % len(actions)])
        steps += 1
        if term or trunc:
            env.reset()
    rate = steps / (time.perf_counter() - t0)
    env.close()
    return rate


def task_sampler(rng: np.random.Generator, tasks: int, per_task: int, episode: int, device: str) -> tuple[Any, Any]:
    import torch

    from bmrl_bench.learners.sampling import TaskSampler

    batch = random_flat_batch(rng, tasks, per_task, episode)
    return TaskSampler(batch, tasks, device), torch.Generator(device=device).manual_seed(0)


def d3rlpy_bcq(cfg: Any, dev: str) -> Any:
    """d3rlpy's BCQ with the sizes and constants of our learner's `BCQConfig` `cfg`."""
    from bmrl_bench.learners.d3rlpy_data import d3rlpy_bcq_config

    bcq = d3rlpy_bcq_config(
        actor_lr=cfg.lr, critic_lr=cfg.lr, imitator_lr=cfg.lr, actor_hidden=cfg.actor_hidden,
        critic_hidden=cfg.critic_hidden, vae_hidden=cfg.vae_hidden, batch_size=cfg.batch_size, gamma=cfg.gamma,
        tau=cfg.tau, lam=cfg.lmbda, n_action_samples=cfg.n_action_samples, action_flexibility=cfg.phi,
        rl_start_step=0, beta=0.5,
    ).create(device=dev)
    bcq.create_impl((OBS_DIM,), ACT_DIM)
    return bcq


def d3rlpy_cases(rng: np.random.Generator, device: str, threads: int, bcq_cfg: Any, sac_cfg: Any, pool: int,
                  card: Any, p1_cfg: Any | None = None) -> list[Case]:
    """d3rlpy's BCQ and SAC on the same configs; its replay sampling and acting. Writes no files."""
    from bmrl_bench.learners.d3rlpy_data import batch_to_mdp_dataset, import_d3rlpy

    d3rlpy = import_d3rlpy()
    dev = d3rlpy_device(device)
    enc = d3rlpy.models.encoders.VectorEncoderFactory
    hidden = list(sac_cfg.hidden)
    sac = d3rlpy.algos.SACConfig(
        actor_learning_rate=sac_cfg.lr, critic_learning_rate=sac_cfg.lr, temp_learning_rate=sac_cfg.lr,
        actor_encoder_factory=enc(hidden_units=hidden), critic_encoder_factory=enc(hidden_units=hidden),
        batch_size=sac_cfg.batch_size, gamma=sac_cfg.gamma, tau=sac_cfg.tau, n_critics=2,
        initial_temperature=sac_cfg.init_alpha,
    ).create(device=dev)
    sac.create_impl((OBS_DIM,), ACT_DIM)

    def batches(b: int) -> list[Any]:
        return [d3rlpy_batch(d3rlpy, torch_batch(rng, 1, b, "cpu")) for _ in range(pool)]

    # d3rlpy's fit / fit_online sample each minibatch from a replay buffer, transition by transition
    buffer = batch_to_mdp_dataset(random_flat_batch(rng, 1, card.behaviour.steps_per_task, card.episode_length))
    obs1 = rng.standard_normal((1, OBS_DIM)).astype(np.float32)
    p1_batch = (p1_cfg or bcq_cfg).batch_size
    cases = [
        Case("d3bcq", cycle(d3rlpy_bcq(bcq_cfg, dev).update, batches(bcq_cfg.batch_size)), 1, threads),
        Case("d3sac", cycle(sac.update, batches(sac_cfg.batch_size)), 1, threads),
        Case("d3replay", lambda: buffer.sample_transition_batch(sac_cfg.batch_size), 1, threads),
        Case("d3replay_p1", lambda: buffer.sample_transition_batch(p1_batch), 1, threads),
        Case("d3act", lambda: sac.sample_action(obs1), 1, threads),
    ]
    if p1_cfg is not None:
        cases.insert(1, Case("d3p1bcq", cycle(d3rlpy_bcq(p1_cfg, dev).update, batches(p1_cfg.batch_size)), 1, threads))
    return cases
