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


def _bcq_algo(**kw: object) -> tuple[TiMe, TaskSampler, object]:
    counts = [6, 6, 6]
    config = TiMeConfig(phase1="bcq", phase1_hidden=(8, 8), phase1_vae_hidden=(8, 8), batch_size=12, f_hidden=(8,),
                        e_hidden=(8,), e_out=8, p_hidden=(8,), q_hidden=(8, 8), g_hidden=(8,), xi_hidden=(8,),
                        embedding_dim=4, **kw)
    algo = TiMe(config, EnvSpec("halfcheetah-vel", 3, 2, 20), seed=0)
    sampler = TaskSampler(_batch(counts), len(counts), "cpu")
    learner = algo._phase1_learner(len(counts))
    sampler.t["q_target"] = own_q_values(learner, sampler)
    return algo, sampler, learner


def test_a_shared_context_gives_every_row_of_a_task_one_embedding() -> None:
    algo, sampler, learner = _bcq_algo(shared_context=True, context_size=4)
    seen: list[torch.Tensor] = []
    q_value = algo.nets.q_value
    algo.nets.q_value = lambda s, a, emb: (seen.append(emb), q_value(s, a, emb))[1]  # type: ignore[method-assign]
    algo.phase2_loss(learner, sampler, torch.Generator().manual_seed(0))
    emb = seen[0]  # (K, m, d): one context per task, the same for its m = 12 // 3 rows
    assert emb.shape == (3, 4, 4)
    torch.testing.assert_close(emb, emb[:, :1].expand_as(emb))
    assert not torch.allclose(emb[0, 0], emb[1, 0])  # tasks draw their own contexts


def test_q_at_candidates_adds_a_q_term_at_the_teachers_candidates() -> None:
    algo, sampler, learner = _bcq_algo(q_at_candidates=True, scale_losses=False)
    loss, metrics = algo.phase2_loss(learner, sampler, torch.Generator().manual_seed(0))
    assert set(metrics) == {"loss_q", "loss_r", "loss_g", "loss_xi", "loss_q_cand"}
    torch.testing.assert_close(loss.detach(), sum(metrics.values()))
    off, _, _ = _bcq_algo()
    _, plain = off.phase2_loss(learner, sampler, torch.Generator().manual_seed(0))
    assert "loss_q_cand" not in plain


def test_one_adam_per_network_equals_one_shared_adam() -> None:
    """Adam is elementwise per parameter: one optimizer per network (MBML's code) and one over all of
    them take the same steps on the same loss. So that ablation of issue 17 needs no switch."""
    from bmrl_bench.learners.optim import fused_adam, fused_step

    finals = []
    for per_network in (False, True):
        algo, sampler, learner = _bcq_algo()
        nets = [algo.nets.f, algo.nets.e, algo.nets.p, algo.nets.q, algo.nets.g, algo.nets.xi]
        groups = [list(n.parameters()) for n in nets] if per_network else [list(algo.nets.parameters())]
        opts = [fused_adam(g, algo.config.lr) for g in groups]
        gen = torch.Generator().manual_seed(1)
        for _ in range(5):
            loss, _ = algo.phase2_loss(learner, sampler, gen)
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o, g in zip(opts, groups):
                fused_step(o, g)
        finals.append(torch.cat([p.detach().flatten() for p in algo.nets.parameters()]))
    torch.testing.assert_close(finals[0], finals[1], rtol=0, atol=1e-6)


def test_distill_actions_regresses_pi_onto_each_tasks_own_teacher_action() -> None:
    from baselines.time_distill import own_actions

    algo, sampler, learner = _bcq_algo(distill_actions=True, scale_losses=False)
    learner.manual_seed(3)
    got = own_actions(learner, sampler, chunk=4)  # (N, a): chunked, every task's rows by its own member
    k, c = sampler.k, int(sampler.counts[0])  # equal counts: one chunked pass is one full pass
    rows = sampler.offsets.view(-1, 1) + torch.arange(c).view(1, -1)
    assert got.shape == sampler.t["actions"].shape and got.abs().max() <= 1.0
    assert not torch.allclose(got[rows[0]], got[rows[1]])  # members differ
    sampler.t["teacher_action"] = got
    loss, metrics = algo.phase2_loss(learner, sampler, torch.Generator().manual_seed(0))
    assert "loss_pi" in metrics
    torch.testing.assert_close(loss.detach(), sum(metrics.values()))
    agent = algo.make_agent()  # acts with pi_S: deterministic, the same action twice
    obs = np.zeros(3, np.float32)
    assert np.array_equal(agent.act(obs), agent.act(obs)) and k == 3

@pytest.mark.parametrize("xi_input", ["teacher", "own", "joint"])
def test_xi_input_chooses_what_xi_s_perturbs_and_where_its_gradient_flows(xi_input: str) -> None:
    algo, sampler, learner = _bcq_algo(xi_input=xi_input, scale_losses=False)
    fed: list[torch.Tensor] = []
    generated: list[torch.Tensor] = []
    perturb, generate = algo.nets.perturb, algo.nets.generate
    algo.nets.perturb = lambda s, a, emb, phi: (fed.append(a), perturb(s, a, emb, phi))[1]  # type: ignore[method-assign]
    algo.nets.generate = lambda s, z, emb: (generated.append(g := generate(s, z, emb)), g)[1]  # type: ignore[method-assign]
    algo.phase2_loss(learner, sampler, torch.Generator().manual_seed(0))
    (a,), (g_student,) = fed, generated
    if xi_input == "teacher":
        assert not torch.allclose(a, g_student)  # the teacher's decoded actions, not G_S's
    else:
        torch.testing.assert_close(a, g_student.detach())
    # the xi term's gradient reaches G_S only when the candidate is trained end to end
    assert a.requires_grad == (xi_input == "joint")


def test_cosine_schedule_takes_phase2_from_its_rate_down_to_zero() -> None:
    constant, _, _ = _bcq_algo(lr=1e-3, phase2_steps=4)
    cosine, _, _ = _bcq_algo(lr=1e-3, phase2_steps=4, lr_schedule="cosine")
    assert [constant.phase2_lr(t) for t in range(1, 5)] == [1e-3] * 4
    # 0.5 * lr * (1 + cos(pi * (t - 1) / 4)): 1, 0.854, 0.5, 0.146 of the rate
    want = [1e-3, 0.5e-3 * (1 + 2 ** -0.5), 0.5e-3, 0.5e-3 * (1 - 2 ** -0.5)]
    assert [cosine.phase2_lr(t) for t in range(1, 5)] == pytest.approx(want)


def test_episode_starts_follow_terminations_timeouts_and_tasks() -> None:
    from baselines.time_distill import episode_starts

    batch = _batch([5, 4])
    batch.task_index[:] = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])  # already sorted: rows keep their places
    batch.timeouts[2] = 1.0  # task 0: episode 0-2 cut by its time limit, then 3-4 (ends with the task)
    batch.terminals[6] = 1.0  # task 1: episode 5-6 ends in a termination, then 7-8
    assert episode_starts(batch).tolist() == [0, 0, 0, 3, 3, 5, 5, 7, 7]


def test_episode_contexts_are_drawn_from_one_episode_prefix() -> None:
    from baselines.time_distill import episode_starts

    algo, sampler, _ = _bcq_algo(context_from="episode", context_size=5)
    batch = _batch([6, 6, 6])
    batch.timeouts[:] = 0.0
    order = np.argsort(batch.task_index, kind="stable")
    batch.timeouts[order[[2, 8, 14]]] = 1.0  # every task: episodes of 3 rows, then 3 more
    algo.episode_start = torch.as_tensor(episode_starts(batch))
    idx = algo.context_indices(sampler, 200, torch.Generator().manual_seed(0))  # (K, 200, 5)
    assert idx.shape == (3, 200, 5)
    episode = idx // 3  # rows 3e..3e+2 form episode e; task k owns episodes 2k and 2k+1
    assert (episode == episode[..., :1]).all()  # one episode per context
    assert ((episode[..., 0] // 2) == torch.arange(3).unsqueeze(-1)).all()  # from its own task
    # an episode's first step appears in every prefix; its last only in prefixes that reach it
    first = (idx % 3 == 0).float().mean()
    last = (idx % 3 == 2).float().mean()
    assert float(first) > 0.5 > float(last) > 0.05
    task_ctx = _bcq_algo(context_size=5)[0].context_indices(sampler, 200, torch.Generator().manual_seed(0))
    assert abs(float((task_ctx % 3 == 0).float().mean()) - 1 / 3) < 0.05  # the paper's draw: uniform in the task


def test_both_contexts_mix_episode_prefixes_and_draws_from_anywhere() -> None:
    from baselines.time_distill import episode_starts

    algo, sampler, _ = _bcq_algo(context_from="both", context_size=5)
    batch = _batch([6, 6, 6])
    batch.timeouts[:] = 0.0
    order = np.argsort(batch.task_index, kind="stable")
    batch.timeouts[order[[2, 8, 14]]] = 1.0
    algo.episode_start = torch.as_tensor(episode_starts(batch))
    idx = algo.context_indices(sampler, 400, torch.Generator().manual_seed(0))
    assert ((idx // 6) == torch.arange(3).view(3, 1, 1)).all()  # every row in its own task
    one_episode = ((idx // 3) == (idx[..., :1] // 3)).all(-1).float().mean()
    # prefixes always lie in one episode; five draws from anywhere do with odds 2 * (1/2)^5
    assert 0.45 < float(one_episode) < 0.6


def test_context_embedding_is_the_agents_after_observing_those_transitions() -> None:
    algo, _, _ = _bcq_algo()
    batch = _batch([6, 6, 6], seed=3)
    rows = np.array([4, 0, 17, 4, 9])
    agent = algo.make_agent()
    for i in rows:
        agent.observe(batch.observations[i], batch.actions[i], float(batch.rewards[i]), batch.next_observations[i],
                      False)
    torch.testing.assert_close(algo.context_embedding(batch, rows), agent.embedding, rtol=0, atol=0)
