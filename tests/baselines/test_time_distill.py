"""tiMe's phase-2 pieces on hand-made data: the precomputed distillation targets and the loss scaling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.time_distill import TiMe, TiMeConfig, own_q_values
from bmrl_bench.algorithms import EnvSpec
from bmrl_bench.data import Batch
from bmrl_bench.learners.sampling import TaskSampler


def _batch(counts: list[int], obs_dim: int = 3, act_dim: int = 2, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    n = sum(counts)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    task = np.concatenate([np.full(c, k) for k, c in enumerate(counts)]).astype(np.int64)
    rng.shuffle(task)  # the sampler must sort transitions by task itself
    return Batch(f32(n, obs_dim), np.clip(f32(n, act_dim), -1, 1), f32(n), f32(n, obs_dim),
                 np.zeros(n, np.float32), np.zeros(n, np.float32), task)


@pytest.mark.parametrize("phase1", ["sac", "bcq"])
def test_own_q_values_are_each_tasks_own_critic(phase1: str) -> None:
    counts = [7, 3, 10]  # uneven, and longer than the chunk: padding and chunking both exercised
    config = TiMeConfig(phase1=phase1, phase1_hidden=(8, 8), phase1_vae_hidden=(8, 8))
    algo = TiMe(config, EnvSpec("pointgoal", 3, 2, 20), seed=0)
    sampler = TaskSampler(_batch(counts), len(counts), "cpu")
    learner = algo._phase1_learner(len(counts))
    got = own_q_values(learner, sampler, chunk=4)
    for k, c in enumerate(counts):
        rows = slice(int(sampler.offsets[k]), int(sampler.offsets[k]) + c)
        obs = torch.zeros(len(counts), c, 3)
        act = torch.zeros(len(counts), c, 2)
        obs[k], act[k] = sampler.t["observations"][rows], sampler.t["actions"][rows]
        want = learner.q_value(obs, act)[k]  # member k on task k's transitions
        torch.testing.assert_close(got[rows], want)


def test_every_loss_term_is_scaled_to_the_q_term() -> None:
    counts = [5, 5, 5]
    config = TiMeConfig(phase1_hidden=(8, 8), batch_size=12, f_hidden=(8,), e_hidden=(8,), e_out=8,
                                            p_hidden=(8,), q_hidden=(8, 8), embedding_dim=4)
    algo = TiMe(config, EnvSpec("pointgoal", 3, 2, 20), seed=0)
    sampler = TaskSampler(_batch(counts), len(counts), "cpu")
    learner = algo._phase1_learner(len(counts))
    sampler.t["q_target"] = own_q_values(learner, sampler)
    loss, metrics = algo.phase2_loss(learner, sampler, torch.Generator().manual_seed(0))
    assert set(metrics) == {"loss_q", "loss_r"}
    # the reward term is rescaled to the Q term's magnitude: loss = q + (q / r) * r = 2 q
    torch.testing.assert_close(loss.detach(), 2 * metrics["loss_q"])
    assert float(metrics["loss_r"]) != pytest.approx(float(metrics["loss_q"]))


def test_phase1_cache_key_carries_the_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib
    from pathlib import Path

    import baselines.time_distill as time_distill
    from bmrl_bench.algorithms import MetaTrainData
    from bmrl_bench.learners import nn, optim, sac, sampling

    sources = b"".join(Path(m.__file__).read_bytes() for m in (sac, nn, optim, sampling))
    want = f"{time_distill.PHASE1_VERSION}-{hashlib.sha256(sources).hexdigest()[:16]}"
    assert time_distill.phase1_code_version("sac") == want
    assert time_distill.phase1_code_version("bcq") != want  # the BCQ learner's source instead of SAC's

    algo = TiMe(TiMeConfig(), EnvSpec("pointgoal", 3, 2, 20), seed=0)
    data = MetaTrainData(algo.spec, _batch([4, 4]), 2, "s")
    key = algo.phase1_key(data, ["c"])
    assert algo.phase1_key(data, ["c"]) == key
    monkeypatch.setattr(time_distill, "PHASE1_VERSION", time_distill.PHASE1_VERSION + 1)
    assert algo.phase1_key(data, ["c"]) != key  # a bumped version misses the old cache entry
