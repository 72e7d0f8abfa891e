"""tiMe (the paper's reference method): distill per-task value functions and MDP embeddings.

Phase 1: one Batch RL learner per meta-train task, each on its own batch only (Batch
SAC for PointGoal, BCQ for MuJoCo), all K trained together as one batched learner and
cached on disk (keyed by suite, dataset checksums, config, seed and the phase-1 code's
version: `PHASE1_VERSION` and the source of the learner modules).
The BCQ of phase 1 is `bmrl_bench.learners.bcq.BatchedBCQ` (official BCQ's names: `lmbda`,
`phi`), not the `bcq` baseline (d3rlpy's BCQ, whose config says `lam`, `action_flexibility`).
Phase 2 (Algorithm 1): a set encoder f infers an MDP embedding from a context drawn
from the same task as the transition; a state-action encoder E and a low-capacity
predictor P reconstruct r (and s' when transitions vary) from E(s, a) and the
embedding; super functions Q_S (and G_S, xi_S with BCQ) take the embedding as an
extra input and regress onto the fixed phase-1 targets of that task. Terms other than
the Q term are scaled to its magnitude. Everything trains jointly.
Acting: the embedding starts at zero each episode and is recomputed from the
episode's own transitions; actions by random shooting on Q_S (SAC phase 1) or BCQ's
procedure with G_S, xi_S and Q_S.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from bmrl_bench.algorithms import EnvSpec, LogFn, MetaTrainData, ModuleAlgorithm, config_to_dict, null_log
from bmrl_bench.config_checks import AT_LEAST_1, DISCOUNT, NON_NEGATIVE, POLYAK, POSITIVE, CheckedConfig
from bmrl_bench.data import Batch
from bmrl_bench.fsutil import atomic_write_bytes
from bmrl_bench.learners import bcq as bcq_learner
from bmrl_bench.learners import nn as nn_learner
from bmrl_bench.learners import optim, sampling
from bmrl_bench.learners import sac as sac_learner
from bmrl_bench.learners.optim import fused_adam, fused_step
from bmrl_bench.learners.sampling import TaskSampler, transition_row, transitions

# Bump when phase 1's training changes in this file (the learner modules are hashed as well):
# a cached phase 1 of another version is then trained again instead of being reused.
PHASE1_VERSION = 2


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TiMeConfig(CheckedConfig):
    phase1: str = "sac"
    """Batch RL learner of phase 1: 'sac' (Batch SAC, the paper's choice for PointGoal) or 'bcq' (MuJoCo)."""
    phase1_steps: int = 3000
    """Updates of each per-task phase-1 learner."""
    phase1_batch_size: int = 256
    """Minibatch per task in phase 1."""
    phase1_hidden: tuple[int, ...] = (256, 256)
    """Hidden sizes of the phase-1 SAC; with BCQ, of its critic and perturbation (official: 400-300)."""
    phase1_vae_hidden: tuple[int, ...] = (750, 750)
    """Hidden sizes of the phase-1 BCQ's generative model (official: 750-750)."""
    phase1_lr: float = 3e-4
    """Adam learning rate of the phase-1 learners (the paper's 3e-4; official BCQ: 1e-3)."""
    phase1_tau: float = 0.005
    """Polyak rate of the phase-1 target networks (official BCQ and SAC: 0.005)."""
    phase1_phi: float = 0.05
    """BCQ: largest perturbation xi may add to a decoded action (official: 0.05); tiMe's xi_S uses it too."""
    phase1_latent_clip: float = 0.5
    """BCQ: decoder latents are N(0, 1) clipped to +-this (official: 0.5), in phase 1, phase 2 and acting."""
    phase1_candidates: int = 10
    """BCQ: decoded actions per state in phase 1's critic target and when a teacher acts (official: 10)."""
    phase2_steps: int = 4000
    """Updates of phase 2 (the distillation)."""
    batch_size: int = 256
    """Phase-2 minibatch, split evenly over the meta-train tasks (stratified task sampling)."""
    embedding_dim: int = 32
    """Size of the inferred MDP identity."""
    context_size: int = 1
    """Transitions in a training context, all from the transition's own task (the paper: 1)."""
    shared_context: bool = False
    """One context per task and minibatch, shared by all of that task's transitions in it (as the
    authors' follow-up code MBML does); off: each transition draws its own (the paper)."""
    context_from: str = "task"
    """Where a training context's transitions come from. task: anywhere in the task's data (the paper).
    episode: an episode's prefix, the transitions from its start up to a random step, drawn uniformly
    within it, as the zero-shot protocol's context is the episode so far: a context narrow in state
    and velocity, whose ambiguous transitions the encoder must learn to pool (issue 17). both: each
    context one or the other, with equal odds (the offline-context protocol draws from anywhere)."""
    xi_input: str = "teacher"
    """BCQ phase 1: the decoded actions xi_S is trained to perturb; its target is always the teacher's
    candidate xi*(s, G*(s, z)). teacher: G*(s, z) (the paper), while at test xi_S perturbs G_S's.
    own: G_S(s, z) for the same z (no gradient into G_S), what xi_S perturbs at test, so it also
    corrects G_S's error. joint: the same with the gradient into G_S (the candidate trained end to end)."""
    q_at_candidates: bool = False
    """BCQ phase 1: Q_S is also fit at the teacher's candidate actions xi*(s, G*(s, z)), with the
    teacher's Q there as its target: at test Q_S ranks such candidates, not the data's actions."""
    distill_actions: bool = False
    """BCQ phase 1: also distill each teacher's chosen action (the best of its candidates by its Q1,
    computed once per transition like the Q targets) into an actor pi_S(s, embedding), and act with
    it. Off: the paper's G_S / xi_S candidates ranked by Q_S."""
    test_context: int = 0
    """At test, the embedding pools the episode's most recent `test_context` transitions (0: all of them)."""
    f_hidden: tuple[int, ...] = (256,)
    """Set encoder f: per-transition MLP, mean-pooled over the context."""
    e_hidden: tuple[int, ...] = (256,)
    """State-action encoder E hidden sizes."""
    e_out: int = 256
    """State-action encoder E output size."""
    p_hidden: tuple[int, ...] = (256,)
    """Predictor P hidden sizes (low capacity, so the embedding must carry the task)."""
    q_hidden: tuple[int, ...] = (256, 256)
    """Super value function Q_S hidden sizes."""
    g_hidden: tuple[int, ...] = (750, 750)
    """Super generator G_S hidden sizes (BCQ phase 1 only)."""
    xi_hidden: tuple[int, ...] = (400, 300)
    """Super perturbation xi_S hidden sizes (BCQ phase 1 only)."""
    normalize_context: bool = False
    """Standardize f's input (s, a, r, s') with the meta-train data's mean and std, so that small
    reward differences, which carry the task on PointGoal, are not drowned by position scale."""
    bounded_embedding: bool = False
    """Squash the embedding with tanh, so contexts unlike the data cannot push Q_S far off its domain."""
    predict_next_state: bool = False
    """P also predicts s'. Off: all our families vary only the reward, as in the paper."""
    scale_losses: bool = True
    """Scale every loss term to the magnitude of the Q_S term (appendix B)."""
    use_predictor: bool = True
    """Train E and P (ablation: off)."""
    shooting_actions: int = 100
    """Random shooting: uniform candidate actions scored by Q_S (SAC phase 1)."""
    bcq_candidates: int = 10
    """Candidates from G_S, perturbed by xi_S, scored by Q_S (BCQ phase 1)."""
    lr: float = 3e-4
    """Adam learning rate of phase 2 (the paper's, for every network; phase 1's is `phase1_lr`)."""
    lr_schedule: str = "constant"
    """Phase 2's learning rate over its steps. constant: `lr` throughout (the paper). cosine: from `lr`
    down to 0 at the last step, so that the weights tiMe acts with are not one noisy step of Adam."""
    gamma: float = 0.99
    """Discount of the phase-1 learners."""
    log_every: int = 100
    """Report training metrics every this many updates."""

    RANGES = {"phase1_steps": AT_LEAST_1, "phase1_batch_size": AT_LEAST_1, "phase1_hidden": AT_LEAST_1,
              "phase1_vae_hidden": AT_LEAST_1, "phase1_lr": POSITIVE, "phase1_tau": POLYAK,
              "phase1_phi": NON_NEGATIVE, "phase1_latent_clip": POSITIVE, "phase1_candidates": AT_LEAST_1,
              "phase2_steps": AT_LEAST_1, "batch_size": AT_LEAST_1,
              "embedding_dim": AT_LEAST_1, "context_size": AT_LEAST_1, "test_context": NON_NEGATIVE,
              "f_hidden": AT_LEAST_1, "e_hidden": AT_LEAST_1, "e_out": AT_LEAST_1, "p_hidden": AT_LEAST_1,
              "q_hidden": AT_LEAST_1, "g_hidden": AT_LEAST_1, "xi_hidden": AT_LEAST_1, "shooting_actions": AT_LEAST_1,
              "bcq_candidates": AT_LEAST_1, "lr": POSITIVE, "gamma": DISCOUNT, "log_every": AT_LEAST_1}
    CHOICES = {"phase1": ("sac", "bcq"), "context_from": ("task", "episode", "both"),
               "xi_input": ("teacher", "own", "joint"), "lr_schedule": ("constant", "cosine")}


# Sized for 2 CPU cores: phase-1 BCQ at 256-256 instead of 400-300 / 750-750 (about a quarter
# of the FLOPs per update), fewer updates; the paper's sizes are the `paper-*` configs.
_LITE_MUJOCO = TiMeConfig(
    phase1="bcq", phase1_steps=3_000, phase1_batch_size=100, phase1_hidden=(256, 256), phase1_vae_hidden=(256, 256),
    phase2_steps=3_000, batch_size=64,
    embedding_dim=16, f_hidden=(256, 256), e_hidden=(256, 256), e_out=16, p_hidden=(16,),
    q_hidden=(256, 256, 256), g_hidden=(256, 256, 256), xi_hidden=(256, 256),
)
# halfcheetah-vel-lite (issue 17): with official BCQ knobs the teachers stay near the data's mean
# action and their values far from converged after 3k updates (they score barely above standing
# still). Measured on 8 variants (docs/time-analysis.md, phase 1 that learns): Adam 1e-3 (official
# BCQ's rate), target rate 0.02 and perturbation range 0.5 for 15k updates bring every teacher past
# its own task's behaviour level (last 10 episodes). The official knobs stay as `*-official-bcq`.
# Phase 2 passes it on only with more of it (docs/time-analysis.md, phase 2 that passes it on): at
# the paper's Adam 3e-4 and 3k steps G_S and xi_S regress the teachers' actions to about a third of
# their variance and tiMe stands still whatever the teachers; Adam 1e-3 for 10k steps of 256
# transitions (32 per task) distills them (the paper: 3e-4 for every network).
_LITE_HALFCHEETAH_TASK_CONTEXT = dataclasses.replace(
    _LITE_MUJOCO, phase1_steps=15_000, phase1_lr=1e-3, phase1_tau=0.02, phase1_phi=0.5,
    phase2_steps=10_000, batch_size=256, lr=1e-3,
)
# Zero-shot, the context is the episode so far: transitions of one velocity, each ambiguous
# (|v - v_target| fixes v_target only up to a side). Trained on single transitions drawn anywhere in
# the task's data, the pooled embedding drifts towards the cheetah's own velocity and it runs too
# slow (docs/time-analysis.md, "identification from the episode"); contexts of 4 transitions from an
# episode's prefix teach the encoder to pool such contexts (the paper: 1 transition from anywhere).
# G_S and xi_S 512 wide (256 before): neighbouring teachers propose candidates farther apart than
# one teacher's spread over its latents, and at 256 the distilled candidates missed the teacher's by a
# third to half of that spread; the misses left seeds standing in a crouch on slow targets
# (docs/time-analysis.md, "the distilled candidates"; 512: the same IQM, no seed left standing).
_LITE_HALFCHEETAH = dataclasses.replace(_LITE_HALFCHEETAH_TASK_CONTEXT, context_size=4, context_from="episode",
                                        g_hidden=(512, 512, 512), xi_hidden=(512, 512))
CONFIGS: dict[str, TiMeConfig] = {
    # Appendix B, toy: Q_S 2x256, embedding 32, context 1, f 1x256, E 1x256 -> 256, P 1x256, 100 shots.
    # 30k distillation steps and a test context of the latest transition (training contexts are
    # single transitions too): with 4k steps and the whole episode pooled, goals 0 and 180 are
    # mis-identified (README, tiMe ablations).
    "pointgoal": TiMeConfig(phase2_steps=30_000, test_context=1),
    "paper-toy": TiMeConfig(),
    "halfcheetah-vel-lite": _LITE_HALFCHEETAH,
    "halfcheetah-vel-lite-task-context": _LITE_HALFCHEETAH_TASK_CONTEXT,  # the config before episode contexts
    "halfcheetah-vel-lite-official-bcq": _LITE_MUJOCO,
    # Official knobs (halfcheetah-vel-lite's diverge here), 15k phase-1 updates: the teachers' Q reaches
    # its Monte Carlo value on the fast targets (14 : 99 at 3k on target 0) and they pass the behaviour
    # data on 4 train tasks of 5, against 1 at 3k (docs/time-analysis.md, hopper-vel-lite; 0.101 -> 0.195).
    "hopper-vel-lite": dataclasses.replace(_LITE_MUJOCO, phase1_steps=15_000),
    "hopper-vel-lite-official-bcq": _LITE_MUJOCO,
    # Appendix B, HalfCheetah: embedding 64, f 7x512, E 7x512 -> 64, P 1x64, Q_S 8x512, G_S 7x750, xi_S 7x400, batch 64.
    "halfcheetah-vel": TiMeConfig(
        phase1="bcq", phase1_hidden=(400, 300), phase1_steps=300_000, phase1_batch_size=100, phase2_steps=1_000_000,
        batch_size=64,
        embedding_dim=64, f_hidden=(512,) * 7, e_hidden=(512,) * 7, e_out=64, p_hidden=(64,),
        q_hidden=(512,) * 8, g_hidden=(750,) * 7, xi_hidden=(400,) * 7,
    ),
    # Appendix B, Hopper: embedding 8, f 3x256, E 4x16 -> 8, P 2x4, Q_S 8x128, batch 32 (G_S, xi_S: BCQ's).
    "hopper-vel": TiMeConfig(
        phase1="bcq", phase1_hidden=(400, 300), phase1_steps=300_000, phase1_batch_size=100, phase2_steps=1_000_000,
        batch_size=32,
        embedding_dim=8, f_hidden=(256,) * 3, e_hidden=(16,) * 4, e_out=8, p_hidden=(4, 4),
        q_hidden=(128,) * 8,
    ),
}
CONFIGS["paper-halfcheetah"] = CONFIGS["halfcheetah-vel"]
CONFIGS["paper-hopper"] = CONFIGS["hopper-vel"]
CONFIGS["default"] = CONFIGS["paper-toy"]  # the paper's toy settings, for a suite of no family above


# ----------------------------------------------------------------------------- networks
def mlp(inp: int, hidden: Sequence[int], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(inp, h), nn.ReLU()]
        inp = h
    layers.append(nn.Linear(inp, out))
    return nn.Sequential(*layers)


class SetEncoder(nn.Module):
    """f: context (..., c, 2o+a+1) -> embedding (..., d); mean-pooled, so any context size works.

    `shift` and `scale` (buffers, saved with the weights) standardize the input; identity unless
    `normalize_context` set them from the data."""

    def __init__(self, transition_dim: int, hidden: Sequence[int], embedding_dim: int, bounded: bool = False) -> None:
        super().__init__()
        self.net = mlp(transition_dim, hidden, embedding_dim)
        self.bounded = bounded
        self.register_buffer("shift", torch.zeros(transition_dim))
        self.register_buffer("scale", torch.ones(transition_dim))

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        emb = self.net((context - self.shift) / self.scale).mean(dim=-2)
        return torch.tanh(emb) if self.bounded else emb


class TiMeNetworks(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, c: TiMeConfig) -> None:
        super().__init__()
        d = c.embedding_dim
        self.f = SetEncoder(2 * obs_dim + act_dim + 1, c.f_hidden, d, bounded=c.bounded_embedding)
        self.e = mlp(obs_dim + act_dim, c.e_hidden, c.e_out)
        self.p = mlp(c.e_out + d, c.p_hidden, 1 + (obs_dim if c.predict_next_state else 0))
        self.q = mlp(obs_dim + act_dim + d, c.q_hidden, 1)
        if c.phase1 == "bcq":
            self.g = mlp(obs_dim + latent_dim + d, c.g_hidden, act_dim)
            self.xi = mlp(obs_dim + act_dim + d, c.xi_hidden, act_dim)
            if c.distill_actions:
                self.pi = mlp(obs_dim + d, c.g_hidden, act_dim)

    def q_value(self, s: torch.Tensor, a: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.q(torch.cat([s, a, emb], -1)).squeeze(-1)

    def action(self, s: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """pi_S: the distilled teachers' action (`distill_actions`)."""
        return torch.tanh(self.pi(torch.cat([s, emb], -1)))

    def generate(self, s: torch.Tensor, z: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.g(torch.cat([s, z, emb], -1)))

    def perturb(self, s: torch.Tensor, a: torch.Tensor, emb: torch.Tensor, phi: float) -> torch.Tensor:
        return (a + phi * torch.tanh(self.xi(torch.cat([s, a, emb], -1)))).clamp(-1.0, 1.0)


# ----------------------------------------------------------------------------- algorithm
def cache_root() -> Path:
    return Path(os.environ.get("BMRL_BENCH_CACHE", Path.home() / ".cache" / "bmrl-bench"))


def phase1_code_version(phase1: str) -> str:
    """`PHASE1_VERSION` and a hash of the sources phase 1 runs (its learner, the layers, Adam, the sampler)."""
    learner = sac_learner if phase1 == "sac" else bcq_learner
    modules: list[ModuleType] = [learner, nn_learner, optim, sampling]
    digest = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in modules)).hexdigest()[:16]
    return f"{PHASE1_VERSION}-{digest}"


def episode_starts(batch: Batch) -> np.ndarray:
    """(N,) int64: for each transition, in `TaskSampler`'s order (sorted by task, stable), the row of
    its episode's first transition. Episodes end at a termination or a timeout, and at a task's end."""
    order = np.argsort(batch.task_index, kind="stable")
    ends = (batch.terminals[order] > 0) | (batch.timeouts[order] > 0)
    task = batch.task_index[order]
    first = np.ones(len(order), bool)
    first[1:] = ends[:-1] | (task[1:] != task[:-1])
    return np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))


@torch.no_grad()
def own_rows(fn: Callable[[torch.Tensor], torch.Tensor], sampler: TaskSampler, chunk: int = 4096) -> torch.Tensor:
    """`fn` applied to every transition's row index under its own task's member, in sampler order.

    `fn` maps indices (K, c), row k in task k's slice, to values (K, c, ...); chunks of c rows per
    task keep memory flat, and a task shorter than the chunk repeats its last row (not kept)."""
    counts, offsets = sampler.counts, sampler.offsets
    longest = int(counts.max())
    out: torch.Tensor | None = None
    for start in range(0, longest, chunk):
        j = torch.arange(start, min(start + chunk, longest), device=counts.device)
        valid = j.view(1, -1) < counts.view(-1, 1)  # (K, c): task k has a j-th transition
        idx = offsets.view(-1, 1) + torch.minimum(j.view(1, -1), counts.view(-1, 1) - 1)
        values = torch.as_tensor(fn(idx), device=counts.device)
        if out is None:
            out = torch.empty((int(counts.sum()), *values.shape[2:]), dtype=values.dtype, device=counts.device)
        out[idx[valid]] = values[valid]
    assert out is not None
    return out


def own_q_values(learner: Any, sampler: TaskSampler, chunk: int = 4096) -> torch.Tensor:
    """Q*_k(s, a) of every transition under its own task's phase-1 learner, (N,) in sampler order.

    The phase-1 learners are frozen, so the distillation target of a transition never
    changes: computing it once here spares phase 2 a forward pass of K critics per step.
    """
    t = sampler.t
    return own_rows(lambda idx: learner.q_value(t["observations"][idx], t["actions"][idx]), sampler, chunk)


def own_actions(learner: Any, sampler: TaskSampler, chunk: int = 4096) -> torch.Tensor:
    """Each transition's state acted on by its own task's BCQ teacher (best of its candidates by Q1),
    (N, act_dim) in sampler order; one draw per state from the learner's own generator."""
    return own_rows(lambda idx: learner.act(sampler.t["observations"][idx]), sampler, chunk)


class _TiMeAgent:
    def __init__(self, algo: TiMe) -> None:
        self.algo = algo
        self.rng = torch.Generator().manual_seed(algo.seed)
        self.context: list[np.ndarray] = []
        self.embedding = torch.zeros(algo.config.embedding_dim)

    def reset(self) -> None:
        self.context.clear()
        self.embedding = torch.zeros(self.algo.config.embedding_dim)  # the paper: zero at episode start

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminal: bool) -> None:
        self.context.append(transition_row(obs, action, reward, next_obs))
        n = self.algo.config.test_context
        recent = torch.as_tensor(np.stack(self.context[-n:] if n > 0 else self.context))
        with torch.no_grad():
            self.embedding = self.algo.nets.f(recent)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        c, spec, nets = self.algo.config, self.algo.spec, self.algo.nets
        if c.phase1 == "bcq" and c.distill_actions:
            return nets.action(torch.as_tensor(obs, dtype=torch.float32), self.embedding).numpy()
        if c.phase1 == "bcq":
            n = c.bcq_candidates
            s = torch.as_tensor(obs, dtype=torch.float32).expand(n, -1)
            emb = self.embedding.expand(n, -1)
            clip = c.phase1_latent_clip
            z = torch.randn(n, self.algo.latent_dim, generator=self.rng).clamp(-clip, clip)
            cand = nets.perturb(s, nets.generate(s, z, emb), emb, self.algo.phi)
        else:
            n = c.shooting_actions
            s = torch.as_tensor(obs, dtype=torch.float32).expand(n, -1)
            emb = self.embedding.expand(n, -1)
            cand = torch.rand(n, spec.act_dim, generator=self.rng) * 2.0 - 1.0
        return cand[nets.q_value(s, cand, emb).argmax()].numpy()


class TiMe(ModuleAlgorithm):
    name: ClassVar[str] = "time"
    config_cls: ClassVar[type] = TiMeConfig
    configs: ClassVar[dict[str, Any]] = CONFIGS

    def __init__(self, config: TiMeConfig, spec: EnvSpec, seed: int, device: str = "cpu") -> None:
        super().__init__(config, spec, seed, device)
        self.phi = config.phase1_phi  # BCQ's perturbation range, the same in phase 1, phase 2 and acting
        self.latent_dim = 2 * spec.act_dim
        torch.manual_seed(seed)
        self.nets = TiMeNetworks(spec.obs_dim, spec.act_dim, self.latent_dim, config).to(device)

    # -- phase 1 ----------------------------------------------------------------
    def _phase1_learner(self, k: int) -> Any:
        c = self.config
        if c.phase1 == "sac":
            return sac_learner.BatchedSAC(
                k, self.spec.obs_dim, self.spec.act_dim,
                sac_learner.SACConfig(hidden=tuple(c.phase1_hidden), lr=c.phase1_lr, gamma=c.gamma, tau=c.phase1_tau,
                                      batch_size=c.phase1_batch_size, device=self.device), seed=self.seed)
        return bcq_learner.BatchedBCQ(
            k, self.spec.obs_dim, self.spec.act_dim,
            bcq_learner.BCQConfig(actor_hidden=tuple(c.phase1_hidden), critic_hidden=tuple(c.phase1_hidden),
                                  vae_hidden=tuple(c.phase1_vae_hidden), lr=c.phase1_lr, gamma=c.gamma,
                                  tau=c.phase1_tau, phi=c.phase1_phi, latent_clip=c.phase1_latent_clip,
                                  n_action_samples=c.phase1_candidates,
                                  batch_size=c.phase1_batch_size, device=self.device), seed=self.seed)

    def phase1_key(self, data: MetaTrainData, checksums: Sequence[str]) -> str:
        c = self.config
        key = {"suite": data.suite, "checksums": list(checksums), "phase1": c.phase1, "steps": c.phase1_steps,
               "batch": c.phase1_batch_size, "hidden": list(c.phase1_hidden), "vae": list(c.phase1_vae_hidden),
               "lr": c.phase1_lr, "gamma": c.gamma, "tau": c.phase1_tau, "phi": c.phase1_phi,
               "latent_clip": c.phase1_latent_clip, "candidates": c.phase1_candidates,
               "seed": self.seed, "tasks": data.num_tasks, "format": 1, "code": phase1_code_version(c.phase1),
               "device": torch.device(self.device).type}  # a GPU's rounding differs: its teachers are its own
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]

    def phase1_cache_path(self, data: MetaTrainData) -> Path:
        """Where phase 1's learners for `data` under this config and seed are cached."""
        checksum = hashlib.sha256(data.batch.observations.tobytes() + data.batch.rewards.tobytes()).hexdigest()
        return cache_root() / "phase1" / self.phase1_key(data, [checksum]) / "weights.safetensors"

    @staticmethod
    def save_phase1(learner: Any, path: Path) -> None:
        from safetensors.torch import save

        atomic_write_bytes(path, save({k: v.contiguous() for k, v in learner.state_dict().items()}))

    def phase1_generator(self) -> torch.Generator:
        """The random stream of phase 1's minibatches."""
        return torch.Generator(device=self.device).manual_seed(self.seed)

    def phase1_update(self, learner: Any, sampler: TaskSampler, gen: torch.Generator) -> dict[str, float]:
        """One update of every phase-1 learner, each on a minibatch of its own task."""
        return learner.update(sampler.gather(sampler.indices((self.config.phase1_batch_size,), gen)))

    def load_phase1(self, data: MetaTrainData, path: Path | None = None) -> Any | None:
        """The phase-1 learners (the teachers) cached for `data` under this config and seed, or read
        from `path`; None when there is no such file."""
        from safetensors.torch import load_file

        path = self.phase1_cache_path(data) if path is None else path
        if not path.exists():
            return None
        learner = self._phase1_learner(data.num_tasks)
        learner.load_state_dict(load_file(str(path)))
        return learner

    def train_phase1(self, data: MetaTrainData, sampler: TaskSampler, log: LogFn) -> Any:
        cached = self.load_phase1(data)
        if cached is not None:
            log(f"phase 1 ({self.config.phase1} x{data.num_tasks}, cached)", 1, 1, {})
            return cached
        learner = self._phase1_learner(data.num_tasks)
        path = self.phase1_cache_path(data)
        gen = self.phase1_generator()
        total = self.config.phase1_steps
        for step in range(1, total + 1):
            metrics = self.phase1_update(learner, sampler, gen)
            if step % self.config.log_every == 0 or step == total:
                log(f"phase 1 ({self.config.phase1} x{data.num_tasks})", step, total, metrics)
        self.save_phase1(learner, path)
        return learner

    # -- phase 2 ----------------------------------------------------------------
    def phase2_loss(
        self, learner: Any, sampler: TaskSampler, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        c, k = self.config, sampler.k
        m = max(1, c.batch_size // k)
        b = sampler.gather(sampler.indices((m,), gen))  # (K, m, ...)
        # same task as the transition; with shared_context one draw per task, broadcast over its m rows
        ctx = sampler.gather(self.context_indices(sampler, 1 if c.shared_context else m, gen))
        s, a = b["observations"], b["actions"]
        q_target = b["q_target"]  # (K, m): task k's own Q*_k, fixed since phase 1 ended
        with torch.no_grad():
            if c.phase1 == "bcq":
                clip = c.phase1_latent_clip
                z = torch.randn((k, m, self.latent_dim), generator=gen, device=s.device).clamp(-clip, clip)
                g_target = learner.generate(s, z)
                xi_target = learner.perturb(s, g_target)
        emb = self.nets.f(transitions(ctx["observations"], ctx["actions"], ctx["rewards"], ctx["next_observations"]))
        if c.shared_context:
            emb = emb.expand(k, m, emb.shape[-1])
        terms = {"q": ((self.nets.q_value(s, a, emb) - q_target) ** 2).mean()}
        if c.use_predictor:
            pred = self.nets.p(torch.cat([self.nets.e(torch.cat([s, a], -1)), emb], -1))
            terms["r"] = ((pred[..., 0] - b["rewards"]) ** 2).mean()
            if c.predict_next_state:
                terms["s_next"] = ((pred[..., 1:] - b["next_observations"]) ** 2).sum(-1).mean()
        if c.phase1 == "bcq":
            g_student = self.nets.generate(s, z, emb)
            terms["g"] = ((g_student - g_target) ** 2).sum(-1).mean()
            decoded = {"teacher": g_target, "own": g_student.detach(), "joint": g_student}[c.xi_input]
            terms["xi"] = ((self.nets.perturb(s, decoded, emb, self.phi) - xi_target) ** 2).sum(-1).mean()
            if c.distill_actions:
                terms["pi"] = ((self.nets.action(s, emb) - b["teacher_action"]) ** 2).sum(-1).mean()
            if c.q_at_candidates:
                with torch.no_grad():
                    q_cand = learner.q_value(s, xi_target)
                terms["q_cand"] = ((self.nets.q_value(s, xi_target, emb) - q_cand) ** 2).mean()
        loss = terms["q"]
        for name, term in terms.items():
            if name != "q":
                scale = (terms["q"].detach() / term.detach().clamp_min(1e-8)) if c.scale_losses else 1.0
                loss = loss + scale * term
        return loss, {f"loss_{n}": t.detach() for n, t in terms.items()}

    def context_indices(self, sampler: TaskSampler, draws: int, gen: torch.Generator) -> torch.Tensor:
        """(K, draws, context_size) rows of training contexts, each from one task (`context_from`)."""
        c = self.config
        if c.context_from == "task":
            return sampler.indices((draws, c.context_size), gen)
        end = sampler.indices((draws,), gen)  # the prefix's last step, uniform over the task's steps
        start = self.episode_start[end]
        u = torch.rand((sampler.k, draws, c.context_size), generator=gen, device=end.device)
        prefix = start.unsqueeze(-1) + (u * (end - start + 1).unsqueeze(-1)).long()
        if c.context_from == "episode":
            return prefix
        anywhere = sampler.indices((draws, c.context_size), gen)
        coin = torch.rand((sampler.k, draws, 1), generator=gen, device=end.device) < 0.5
        return torch.where(coin, prefix, anywhere)

    def phase2_generator(self) -> torch.Generator:
        """The random stream of phase 2 (minibatches, contexts, BCQ latents)."""
        return torch.Generator(device=self.device).manual_seed(self.seed + 1)

    def phase2_update(self, learner: Any, sampler: TaskSampler, gen: torch.Generator, opt: torch.optim.Optimizer,
                      params: list[nn.Parameter]) -> dict[str, torch.Tensor]:
        """One distillation step: the loss on a fresh minibatch, one backward, one fused Adam step."""
        loss, metrics = self.phase2_loss(learner, sampler, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        fused_step(opt, params)
        return metrics

    def phase2_lr(self, step: int) -> float:
        """The learning rate of phase 2's update `step` (1 to phase2_steps) under `lr_schedule`."""
        c = self.config
        if c.lr_schedule == "constant":
            return c.lr
        return 0.5 * c.lr * (1.0 + math.cos(math.pi * (step - 1) / c.phase2_steps))

    def prepare_phase2(self, data: MetaTrainData, sampler: TaskSampler, learner: Any) -> None:
        """What phase 2 reads besides the data, computed once: each transition's fixed targets (its own
        task's Q*, and the teacher's chosen action when `distill_actions`) and its episode's first row."""
        sampler.t["q_target"] = own_q_values(learner, sampler)
        if self.config.phase1 == "bcq" and self.config.distill_actions:
            sampler.t["teacher_action"] = own_actions(learner, sampler)
        self.episode_start = torch.as_tensor(episode_starts(data.batch), device=self.device)

    def context_embedding(self, batch: Batch, rows: np.ndarray) -> torch.Tensor:
        """The embedding (d,) of a context made of `batch`'s transitions `rows`, as the agent computes it
        after observing them."""
        with torch.no_grad():
            return self.nets.f(transitions(*(torch.as_tensor(x[rows]) for x in (
                batch.observations, batch.actions, batch.rewards, batch.next_observations))))

    def fit(self, data: MetaTrainData, log: LogFn = null_log) -> None:
        sampler = TaskSampler(data.batch, data.num_tasks, self.device)
        if self.config.normalize_context:
            t = sampler.t
            ctx = transitions(t["observations"], t["actions"], t["rewards"], t["next_observations"])
            self.nets.f.shift.copy_(ctx.mean(0))
            self.nets.f.scale.copy_(ctx.std(0).clamp_min(1e-3))
        learner = self.train_phase1(data, sampler, log)
        self.prepare_phase2(data, sampler, learner)
        params = list(self.nets.parameters())
        opt = fused_adam(params, self.config.lr)
        gen = self.phase2_generator()
        total = self.config.phase2_steps
        for step in range(1, total + 1):
            opt.param_groups[0]["lr"] = self.phase2_lr(step)
            metrics = self.phase2_update(learner, sampler, gen, opt, params)
            if step % self.config.log_every == 0 or step == total:
                log("phase 2 (distillation)", step, total, {k: float(v) for k, v in metrics.items()})

    # -- benchmark (`algorithms.BenchSteps`) -----------------------------------
    def bench_steps(self, data: MetaTrainData) -> dict[str, Any]:
        """One update of phase 1 (all K learners) and one of phase 2 per call, through `fit`'s methods.

        Phase 1's learners start untrained and phase 2 distils from them (the arithmetic per step does
        not depend on the weights); nothing is read from or written to the phase-1 cache."""
        learner = self._phase1_learner(data.num_tasks)
        sampler1, gen1 = TaskSampler(data.batch, data.num_tasks, self.device), self.phase1_generator()
        sampler2 = TaskSampler(data.batch, data.num_tasks, self.device)
        self.prepare_phase2(data, sampler2, learner)
        params = list(self.nets.parameters())
        opt, gen2 = fused_adam(params, self.config.lr), self.phase2_generator()
        return {"phase 1": lambda: self.phase1_update(learner, sampler1, gen1),
                "phase 2": lambda: self.phase2_update(learner, sampler2, gen2, opt, params)}

    # -- acting and checkpoints -------------------------------------------------
    def make_agent(self) -> _TiMeAgent:
        self.nets.eval()
        return _TiMeAgent(self)



__all__ = ["CONFIGS", "PHASE1_VERSION", "TaskSampler", "TiMe", "TiMeConfig", "config_to_dict", "phase1_code_version"]
