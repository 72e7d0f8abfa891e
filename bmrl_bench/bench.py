"""`bmrl-bench bench`: training throughput of our learners against d3rlpy's, side by side.

Everything is measured in ONE process and ONE run, interleaved: each repeat runs every case
for `min_time` seconds, in an order rotated by one per repeat, and each row reports the
median over repeats. Machines that run other work at the same time (a dataset build, a
colleague's job) therefore slow every implementation alike, and the ratios stay meaningful
even when the absolute numbers do not.

Cases, all on identical synthetic data (random arrays of HalfCheetah's shapes: obs 17,
act 6; throughput does not depend on the values) and identical configurations:
- fp32 matmul GFLOP/s at 1 thread and at `threads` threads: the ground every FLOP bound uses;
- BCQ at the official sizes (critic and perturbation 400-300, VAE 750-750, 10 action samples,
  batch 100, Adam 3e-4): our `BatchedBCQ` with K=1 and K members against d3rlpy's `BCQ`
  (`n_action_samples=10`), driven through `algo.update(TransitionMiniBatch)`;
- BCQ at the sizes tiMe's phase 1 uses on the recipe suite (`BCQ lite`, when they differ from
  the official ones), K=1 and K = its meta-train tasks, against d3rlpy's BCQ at those sizes;
- SAC 256-256, batch 256: our `BatchedSAC` with K=1, K=16 (and the suite's K for the recipe)
  against d3rlpy's `SAC` (one agent per update: agent-updates/s);
- what a training loop does besides updating: sampling minibatches, acting, env steps.
Updates are timed on pre-built minibatches (d3rlpy: numpy `TransitionMiniBatch`, converted by
its `update`; ours: tensors already on the device), so the update rows compare learners only.

Each case also records its rate per CPU-second of the process (`per_cpu_s`): at one thread that
is the speed of an undisturbed core, so its ratios hold even when other processes take turns on
the cores; `best` keeps the least disturbed repeat.

FLOPs per update are counted from the layer sizes (`mlp_flops`): `2 * in * out` per row per
linear layer forward, the same again for the weight gradient of a trained layer and for the
input gradient where one is needed; biases and elementwise work are not counted. The BCQ count
is 3.06 GFLOP at the official sizes. The fraction of the FLOP bound of a row is
`updates/s * FLOPs per update / matmul FLOP/s` (matmul at the row's thread count).

The recipe rows are COMPUTED from the measured rates, not timed end to end: data collection
(one online SAC per task, 1 update per env step, plus the family-wide expert) and tiMe's
phase 1 (one BCQ per meta-train task) of a suite card, ours (all tasks batched) against the
same recipe with d3rlpy learners (one learner at a time).
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["BenchRow", "bcq_update_flops", "bench_info", "mlp_flops", "row_notes", "rows_table", "run_bench",
           "sac_update_flops", "write_json"]

OBS_DIM, ACT_DIM = 17, 6  # HalfCheetah
RECIPE_SUITE = "halfcheetah-vel-lite"


@dataclass
class BenchRow:
    """One line of the benchmark table."""

    section: str
    """matmul | bcq | sac | loop (sampling, acting, env) | recipe"""
    name: str
    impl: str
    """ours | d3rlpy | torch | gymnasium"""
    members: int
    """K: agents trained together by one update (1 for d3rlpy)."""
    value: float
    """Median over repeats, in `unit`."""
    unit: str
    """agent-updates/s (K agents updated once = K), GFLOP/s, calls/s, steps/s or min."""
    gflop_per_update: float | None = None
    """Counted FLOPs of one agent's update (see `mlp_flops`)."""
    bound_fraction: float | None = None
    """value * gflop_per_update / matmul GFLOP/s at the same thread count."""
    vs_d3rlpy: float | None = None
    """ours / d3rlpy on the same config: median over repeats of the ratio within a repeat (the two ran
    seconds apart). Recipe rows: d3rlpy time / our time."""
    vs_k1: float | None = None
    """this row / the same learner with K=1 (agent-updates/s), paired like `vs_d3rlpy`."""
    threads: int = 1
    spread: tuple[float, float] | None = None
    """(min, max) of `value` over repeats."""
    best: float | None = None
    """The best repeat (the least disturbed by other processes on a busy machine)."""
    vs_d3rlpy_best: float | None = None
    """best / d3rlpy's best."""
    per_cpu_s: float | None = None
    """`value` per CPU-second of this process (median): at 1 thread, the speed of an undisturbed core."""
    vs_d3rlpy_cpu: float | None = None
    """per_cpu_s / d3rlpy's per_cpu_s: the ratio of work per core, insensitive to other processes."""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------- FLOP counting
def mlp_flops(
    sizes: Sequence[int], rows: int, *, weight_grad: bool = False, input_grad: bool = False,
    first_input_grad: bool = False,
) -> int:
    """Matmul FLOPs of a linear stack `sizes[0] -> ... -> sizes[-1]` on `rows` inputs.

    Forward `2 * in * out * rows` per layer; `weight_grad` adds the same per layer (dW = x^T g);
    `input_grad` adds it for every layer but the first (the gradient flows back through the
    net), `first_input_grad` for the first too (the input itself needs a gradient).
    """
    per_layer = [2 * a * b * rows for a, b in zip(sizes[:-1], sizes[1:])]
    total = sum(per_layer)
    if weight_grad:
        total += sum(per_layer)
    if input_grad or first_input_grad:
        total += sum(per_layer[1:])
    if first_input_grad:
        total += per_layer[0]
    return total


def bcq_update_flops(
    obs_dim: int, act_dim: int, batch: int, n_action_samples: int = 10,
    actor_hidden: Sequence[int] = (400, 300), critic_hidden: Sequence[int] = (400, 300),
    vae_hidden: Sequence[int] = (750, 750), latent_dim: int | None = None,
) -> int:
    """FLOPs of one BCQ update of one agent (official order: VAE, critics, perturbation actor)."""
    o, a = obs_dim, act_dim
    lat = latent_dim if latent_dim is not None else 2 * a
    enc = [o + a, *vae_hidden, 2 * lat]
    dec = [o + lat, *vae_hidden, a]
    actor = [o + a, *actor_hidden, a]
    critic = [o + a, *critic_hidden, 1]
    n = batch * n_action_samples
    return (
        # VAE: encoder trained (its input needs no gradient); decoder trained and its input (z) does.
        mlp_flops(enc, batch, weight_grad=True, input_grad=True)
        + mlp_flops(dec, batch, weight_grad=True, first_input_grad=True)
        # critic target on n decoded actions per next state: decoder, target actor, 2 target critics
        + mlp_flops(dec, n) + mlp_flops(actor, n) + 2 * mlp_flops(critic, n)
        # two critics trained on the batch
        + 2 * mlp_flops(critic, batch, weight_grad=True, input_grad=True)
        # actor step: decoder (no grad), actor trained, Q1 on its action (gradient to the action only)
        + mlp_flops(dec, batch) + mlp_flops(actor, batch, weight_grad=True, input_grad=True)
        + mlp_flops(critic, batch, first_input_grad=True)
    )


def sac_update_flops(obs_dim: int, act_dim: int, batch: int, hidden: Sequence[int] = (256, 256)) -> int:
    """FLOPs of one SAC update of one agent (critics, actor, temperature; two critics)."""
    actor = [obs_dim, *hidden, 2 * act_dim]
    critic = [obs_dim + act_dim, *hidden, 1]
    return (
        # target: actor on s', two target critics
        mlp_flops(actor, batch) + 2 * mlp_flops(critic, batch)
        # two critics trained
        + 2 * mlp_flops(critic, batch, weight_grad=True, input_grad=True)
        # actor trained through both critics (critic weights frozen: gradient to the action only)
        + mlp_flops(actor, batch, weight_grad=True, input_grad=True)
        + 2 * mlp_flops(critic, batch, first_input_grad=True)
    )


# ------------------------------------------------------------------------------- timing
@dataclass
class _Case:
    key: str
    step: Callable[[], object]
    units: float  # what one call counts for (agent-updates, FLOPs, calls, env steps)
    threads: int
    samples: list[float] = field(default_factory=list)  # units per wall second, one per repeat
    cpu_samples: list[float] = field(default_factory=list)  # units per CPU-second of this process

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return max(self.samples)

    @property
    def per_cpu_s(self) -> float:
        return statistics.median(self.cpu_samples)

    def paired(self, other: _Case) -> float:
        """Median over repeats of this case's rate / the other's in the same repeat."""
        return statistics.median(a / b for a, b in zip(self.samples, other.samples))


def _measure(cases: Sequence[_Case], repeats: int, min_time: float, min_calls: int, warmup: int,
             sync: Callable[[], None]) -> None:
    """Interleaved timing: every repeat runs every case once, rotating the order each repeat."""
    import torch

    for c in cases:
        torch.set_num_threads(c.threads)
        for _ in range(warmup):
            c.step()
    sync()
    for r in range(repeats):
        shift = r % len(cases)
        for c in [*cases[shift:], *cases[:shift]]:
            torch.set_num_threads(c.threads)
            calls, t0, c0 = 0, time.perf_counter(), time.process_time()
            while calls < min_calls or time.perf_counter() - t0 < min_time:
                c.step()
                calls += 1
            sync()
            c.samples.append(calls * c.units / (time.perf_counter() - t0))
            c.cpu_samples.append(calls * c.units / max(time.process_time() - c0, 1e-9))


# ------------------------------------------------------------------------------- case builders
def _torch_batch(rng: np.random.Generator, k: int, b: int, device: str) -> dict[str, Any]:
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


def _d3rlpy_batch(d3rlpy: Any, batch: dict[str, Any]) -> Any:
    """Member 0 of one of our batches as d3rlpy's numpy minibatch (the same transitions)."""
    def col(x: Any) -> np.ndarray:
        return np.ascontiguousarray(x[0].cpu().numpy().reshape(x.shape[1], -1))

    b = batch["rewards"].shape[1]
    return d3rlpy.dataset.TransitionMiniBatch(
        observations=col(batch["observations"]), actions=col(batch["actions"]), rewards=col(batch["rewards"]),
        next_observations=col(batch["next_observations"]), next_actions=col(batch["actions"]),
        terminals=col(batch["terminals"]), intervals=np.ones((b, 1), np.float32), transitions=[],
    )


def _cycle(fn: Callable[[Any], object], items: Sequence[Any]) -> Callable[[], object]:
    state = {"i": 0}

    def step() -> object:
        i = state["i"]
        state["i"] = i + 1
        return fn(items[i % len(items)])

    return step


def _d3rlpy_device(device: str) -> str:
    return "cuda:0" if device == "cuda" else device


def _random_flat_batch(rng: np.random.Generator, tasks: int, per_task: int, episode: int) -> Any:
    from bmrl_bench.data import Batch

    n, f = tasks * per_task, np.float32
    timeouts = np.zeros(n, f)
    timeouts[episode - 1 :: episode] = 1.0
    obs = rng.standard_normal((n, OBS_DIM)).astype(f)
    nxt = np.roll(obs, -1, axis=0)  # consecutive rows continue an episode (d3rlpy layout check)
    return Batch(observations=obs, actions=rng.uniform(-1, 1, (n, ACT_DIM)).astype(f), rewards=rng.standard_normal(n).astype(f),
                 next_observations=nxt, terminals=np.zeros(n, f), timeouts=timeouts,
                 task_index=np.repeat(np.arange(tasks), per_task).astype(np.int64))


def _env_rate(family_name: str, episode: int, min_time: float) -> float:
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


# ------------------------------------------------------------------------------- the benchmark
def run_bench(
    quick: bool = False,
    device: str = "cpu",
    threads: int | None = None,
    bcq_members: int = 8,
    sac_members: int = 16,
    repeats: int | None = None,
    min_time: float | None = None,
    include_d3rlpy: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[BenchRow]:
    """Measure our learners against d3rlpy's (see the module docstring); rows in table order.

    `threads`: torch CPU threads of every learner row (default: the cores this process may use);
    the matmul ground is measured at 1 thread and at `threads`. `quick` times each case briefly
    (seconds in all: a smoke test, not a measurement). The torch thread count is restored after.
    """
    import torch

    from bmrl_bench.learners.bcq import BatchedBCQ, BCQConfig
    from bmrl_bench.learners.sac import BatchedReplay, BatchedSAC, SACConfig
    from bmrl_bench.suites import get_card

    say = progress or (lambda msg: None)
    if device.startswith("cuda") and not torch.cuda.is_available():
        from bmrl_bench.errors import BmrlError

        raise BmrlError("--device cuda: torch sees no CUDA device here; run on a GPU machine or use --device cpu")
    cuda = device.startswith("cuda")
    threads = threads or _available_cores()
    repeats = repeats or (2 if quick else 9)
    min_time = min_time if min_time is not None else (0.05 if quick else 1.0)
    min_calls = 1 if quick else 3
    warmup = 1 if quick else 3
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    old_threads = torch.get_num_threads()
    rng = np.random.default_rng(0)

    card = get_card(RECIPE_SUITE)
    beh = card.behaviour
    recipe_k = card.num_tasks
    sac_hidden, sac_batch = tuple(beh.hidden), beh.batch_size
    bcq_cfg = BCQConfig(lr=3e-4, batch_size=100, n_action_samples=10, device=device)
    sac_cfg = SACConfig(hidden=sac_hidden, lr=3e-4, batch_size=sac_batch, device=device)
    pool = 4  # distinct minibatches cycled through (no cache effects from reusing one)

    # tiMe's phase 1 on the recipe suite may use other BCQ sizes (the lite configs do): measured too
    phase1 = _phase1_recipe(card)
    p1_cfg = BCQConfig(actor_hidden=phase1["actor_hidden"], critic_hidden=phase1["critic_hidden"],
                       vae_hidden=phase1["vae_hidden"], lr=phase1["lr"], gamma=phase1["gamma"],
                       batch_size=phase1["batch"], n_action_samples=10, device=device)
    p1_key = "bcq" if _bcq_sizes(p1_cfg) == _bcq_sizes(bcq_cfg) and p1_cfg.batch_size == bcq_cfg.batch_size else "p1bcq"
    cases: list[_Case] = []
    flops = {"bcq": _bcq_flops(bcq_cfg), "p1bcq": _bcq_flops(p1_cfg),
             "sac": sac_update_flops(OBS_DIM, ACT_DIM, sac_batch, sac_hidden)}

    # matmul ground
    n_mm = 4096 if cuda else 1024
    mm_a = torch.randn(n_mm, n_mm, device=device)
    mm_b = torch.randn(n_mm, n_mm, device=device)
    mm_c = torch.empty(n_mm, n_mm, device=device)
    mm_threads = [threads] if cuda else sorted({1, threads})
    for t in mm_threads:
        cases.append(_Case(f"mm{t}", lambda: torch.mm(mm_a, mm_b, out=mm_c), 2.0 * n_mm**3, t))

    try:
        say("building learners")
        torch.set_num_threads(threads)
        # ours
        ks = {"bcq": sorted({1, bcq_members}), "sac": sorted({1, sac_members, recipe_k})}
        ks[p1_key] = sorted({*ks.get(p1_key, [1]), phase1["tasks"]})
        for key, cfg in (("bcq", bcq_cfg), ("p1bcq", p1_cfg)):
            for k in ks.get(key, []):
                learner = BatchedBCQ(k, OBS_DIM, ACT_DIM, cfg, seed=0)
                batches = [_torch_batch(rng, k, cfg.batch_size, device) for _ in range(pool)]
                cases.append(_Case(f"{key}{k}", _cycle(learner.update, batches), k, threads))
        for k in ks["sac"]:
            learner = BatchedSAC(k, OBS_DIM, ACT_DIM, sac_cfg, seed=0, device=device)
            batches = [_torch_batch(rng, k, sac_batch, device) for _ in range(pool)]
            cases.append(_Case(f"sac{k}", _cycle(learner.update, batches), k, threads))
        # the rest of our training loops: replay sampling and acting (collection), task-stratified
        # sampling (tiMe's phase 1)
        replay = BatchedReplay(recipe_k, beh.steps_per_task, OBS_DIM, ACT_DIM, seed=0, device=device)
        replay.observations[:] = rng.standard_normal(replay.observations.shape)
        replay.size = beh.steps_per_task
        cases.append(_Case("replay", lambda: replay.sample(sac_batch), 1, threads))
        actor = BatchedSAC(recipe_k, OBS_DIM, ACT_DIM, sac_cfg, seed=0, device=device)
        obs_k = rng.standard_normal((recipe_k, OBS_DIM)).astype(np.float32)
        cases.append(_Case("act", lambda: actor.act(obs_k), 1, threads))
        sampler, gen = _task_sampler(rng, phase1["tasks"], beh.steps_per_task, card.episode_length, device)
        cases.append(_Case("gather", lambda: sampler.gather(sampler.indices((phase1["batch"],), gen)), 1, threads))

        if include_d3rlpy:
            say("building d3rlpy learners")
            d3 = _d3rlpy_cases(rng, device, threads, bcq_cfg, sac_cfg, pool, card, p1_cfg if p1_key == "p1bcq" else None)
            cases.extend(d3)

        say(f"timing {len(cases)} cases x {repeats} repeats, interleaved")
        _measure(cases, repeats, min_time, min_calls, warmup, sync)
        say("env steps")
        env_rates = [_env_rate(card.family, card.episode_length, min_time) for _ in range(3 if not quick else 1)]
    finally:
        torch.set_num_threads(old_threads)

    by = {c.key: c for c in cases}
    env_rate = statistics.median(env_rates)
    return _rows(by, threads, mm_threads, flops, ks, sac_members, recipe_k, env_rate, card, include_d3rlpy, p1_key)


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _phase1_recipe(card: Any) -> dict[str, Any]:
    """tiMe's phase 1 (BCQ) for the card's suite, from tiMe's named config for it (found through the
    registry, as `eval` finds it): tasks, updates, batch, sizes."""
    from bmrl_bench.algorithms import config_name_for, get_algorithm

    time_cls = get_algorithm("time")
    name = config_name_for(time_cls, card.name, card.family)
    cfg = time_cls.configs[name]
    hidden = tuple(cfg.phase1_hidden)
    return {"tasks": len(card.train_tasks), "steps": cfg.phase1_steps, "batch": cfg.phase1_batch_size,
            "actor_hidden": hidden, "critic_hidden": hidden, "vae_hidden": tuple(cfg.phase1_vae_hidden),
            "lr": cfg.lr, "gamma": cfg.gamma, "config": name}


def _bcq_sizes(cfg: Any) -> tuple[tuple[int, ...], ...]:
    return tuple(cfg.actor_hidden), tuple(cfg.critic_hidden), tuple(cfg.vae_hidden)


def _bcq_flops(cfg: Any) -> int:
    return bcq_update_flops(OBS_DIM, ACT_DIM, cfg.batch_size, cfg.n_action_samples, cfg.actor_hidden,
                            cfg.critic_hidden, cfg.vae_hidden)


def _sizes_text(cfg: Any) -> str:
    def dash(h: Sequence[int]) -> str:
        return "-".join(str(x) for x in h)

    return (f"critic {dash(cfg.critic_hidden)}, perturbation {dash(cfg.actor_hidden)}, VAE {dash(cfg.vae_hidden)}, "
            f"{cfg.n_action_samples} action samples, batch {cfg.batch_size}, Adam {cfg.lr:g}")


def _task_sampler(rng: np.random.Generator, tasks: int, per_task: int, episode: int, device: str) -> tuple[Any, Any]:
    import torch

    from bmrl_bench.learners.sampling import TaskSampler

    batch = _random_flat_batch(rng, tasks, per_task, episode)
    return TaskSampler(batch, tasks, device), torch.Generator(device=device).manual_seed(0)


def _d3rlpy_bcq(cfg: Any, dev: str) -> Any:
    """d3rlpy's BCQ with the sizes and constants of our learner's `BCQConfig` `cfg`."""
    from bmrl_bench.learners.d3rlpy_data import d3rlpy_bcq_config

    bcq = d3rlpy_bcq_config(
        actor_lr=cfg.lr, critic_lr=cfg.lr, imitator_lr=cfg.lr, actor_hidden=cfg.actor_hidden, critic_hidden=cfg.critic_hidden,
        vae_hidden=cfg.vae_hidden, batch_size=cfg.batch_size, gamma=cfg.gamma, tau=cfg.tau, lam=cfg.lmbda,
        n_action_samples=cfg.n_action_samples, action_flexibility=cfg.phi, rl_start_step=0, beta=0.5,
    ).create(device=dev)
    bcq.create_impl((OBS_DIM,), ACT_DIM)
    return bcq


def _d3rlpy_cases(rng: np.random.Generator, device: str, threads: int, bcq_cfg: Any, sac_cfg: Any, pool: int,
                  card: Any, p1_cfg: Any | None = None) -> list[_Case]:
    """d3rlpy's BCQ and SAC on the same configs; its replay sampling and acting. Writes no files."""
    from bmrl_bench.learners.d3rlpy_data import batch_to_mdp_dataset, import_d3rlpy

    d3rlpy = import_d3rlpy()
    dev = _d3rlpy_device(device)
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
        return [_d3rlpy_batch(d3rlpy, _torch_batch(rng, 1, b, "cpu")) for _ in range(pool)]

    # d3rlpy's fit / fit_online sample each minibatch from a replay buffer, transition by transition
    buffer = batch_to_mdp_dataset(_random_flat_batch(rng, 1, card.behaviour.steps_per_task, card.episode_length))
    obs1 = rng.standard_normal((1, OBS_DIM)).astype(np.float32)
    p1_batch = (p1_cfg or bcq_cfg).batch_size
    cases = [
        _Case("d3bcq", _cycle(_d3rlpy_bcq(bcq_cfg, dev).update, batches(bcq_cfg.batch_size)), 1, threads),
        _Case("d3sac", _cycle(sac.update, batches(sac_cfg.batch_size)), 1, threads),
        _Case("d3replay", lambda: buffer.sample_transition_batch(sac_cfg.batch_size), 1, threads),
        _Case("d3replay_p1", lambda: buffer.sample_transition_batch(p1_batch), 1, threads),
        _Case("d3act", lambda: sac.sample_action(obs1), 1, threads),
    ]
    if p1_cfg is not None:
        cases.insert(1, _Case("d3p1bcq", _cycle(_d3rlpy_bcq(p1_cfg, dev).update, batches(p1_cfg.batch_size)), 1, threads))
    return cases


def _rows(by: dict[str, _Case], threads: int, mm_threads: list[int], flops: dict[str, int], ks: dict[str, list[int]],
          sac_members: int, recipe_k: int, env_rate: float, card: Any, d3: bool, p1_key: str) -> list[BenchRow]:
    from bmrl_bench.learners.bcq import BCQConfig

    rows: list[BenchRow] = []
    p1 = _phase1_recipe(card)

    def spread(c: _Case) -> tuple[float, float]:
        return (min(c.samples), max(c.samples))

    mm = {t: by[f"mm{t}"].median / 1e9 for t in mm_threads}
    for t in mm_threads:
        c = by[f"mm{t}"]
        n = round((c.units / 2) ** (1 / 3))
        rows.append(BenchRow("matmul", f"matmul fp32 {n}^3", "torch", 1, mm[t], "GFLOP/s", threads=t,
                             spread=(min(c.samples) / 1e9, max(c.samples) / 1e9), best=c.best / 1e9,
                             per_cpu_s=c.per_cpu_s / 1e9))
    ground = mm[threads] if threads in mm else mm[mm_threads[-1]]

    def learner_rows(key: str, label: str, shown: list[int], d3key: str, d3note: str) -> None:
        ref = by[d3key] if d3 else None
        k1 = by[f"{key}1"]
        f = flops[key]
        for k in shown:
            c = by[f"{key}{k}"]
            rows.append(BenchRow(
                key, f"{label} ours K={k}", "ours", k, c.median, "agent-upd/s", f / 1e9, c.median * f / 1e9 / ground,
                c.paired(ref) if ref else None, c.paired(k1) if k > 1 else None, threads, spread(c), c.best,
                c.best / ref.best if ref else None, c.per_cpu_s, c.per_cpu_s / ref.per_cpu_s if ref else None))
        if ref is not None:
            rows.append(BenchRow(key, f"{label} d3rlpy", "d3rlpy", 1, ref.median, "agent-upd/s", f / 1e9,
                                 ref.median * f / 1e9 / ground, None, None, threads, spread(ref), ref.best,
                                 per_cpu_s=ref.per_cpu_s, note=d3note))

    official = BCQConfig()
    learner_rows("bcq", "BCQ", ks["bcq"], "d3bcq", f"official sizes: {_sizes_text(official)}; "
                 "d3rlpy 2.8.1 BCQConfig(n_action_samples=10) through algo.update(batch)")
    if p1_key == "p1bcq":
        p1_cfg = BCQConfig(actor_hidden=p1["actor_hidden"], critic_hidden=p1["critic_hidden"], vae_hidden=p1["vae_hidden"],
                           lr=p1["lr"], batch_size=p1["batch"])
        learner_rows("p1bcq", "BCQ lite", ks["p1bcq"], "d3p1bcq",
                     f"tiMe's phase 1 for {card.name} (config '{p1['config']}'): {_sizes_text(p1_cfg)}")
    learner_rows("sac", "SAC", [k for k in ks["sac"] if k in (1, sac_members)], "d3sac",
                 "256-256, batch 256, Adam 3e-4; d3rlpy 2.8.1 SACConfig, one agent per algo.update(batch)")

    loop = [("replay", "ours", f"replay sample (256) ours K={recipe_k}", "calls/s", recipe_k),
            ("act", "ours", f"SAC act ours K={recipe_k}", "calls/s", recipe_k),
            ("gather", "ours", f"phase-1 sample ({p1['batch']}) ours K={p1['tasks']}", "calls/s", p1["tasks"])]
    if d3:
        loop += [("d3replay", "d3rlpy", "replay sample (256) d3rlpy", "calls/s", 1),
                 ("d3act", "d3rlpy", "SAC act d3rlpy", "calls/s", 1)]
    for key, impl, name, unit, k in loop:
        c = by[key]
        rows.append(BenchRow("loop", name, impl, k, c.median, unit, threads=threads, spread=spread(c), best=c.best,
                             per_cpu_s=c.per_cpu_s))
    rows.append(BenchRow("loop", f"{card.family} env step", "gymnasium", 1, env_rate, "steps/s",
                         note="one plain env, random actions, resets included"))

    if d3:
        rows.extend(_recipe_rows(by, recipe_k, env_rate, card, p1_key, threads))
    return rows


def _recipe_rows(by: dict[str, _Case], recipe_k: int, env_rate: float, card: Any, p1_key: str,
                 threads: int) -> list[BenchRow]:
    """Data collection + phase 1 of the card's recipe, computed from the measured rates (seconds)."""
    beh, ex = card.behaviour, card.expert
    ex_steps = ex.min_steps  # the expert's budget before its convergence checks may stop it
    p1 = _phase1_recipe(card)
    k, steps, learn = recipe_k, beh.steps_per_task, beh.learning_starts
    upd_steps = (steps - learn) * beh.updates_per_step
    t = {key: 1.0 / c.median for key, c in by.items()}  # seconds per call (median rates)
    t_sac_k = recipe_k / by[f"sac{recipe_k}"].median  # one batched update of all K tasks
    warm = min(ex_steps // 10, 5000)  # collect.train_expert's random warm-up
    # ours: all K tasks step together (K env steps, one batched act, one batched sample + update);
    # the expert (K=1) acts for its num_envs envs at once
    ours_collect = steps * k / env_rate + (steps - learn) * t["act"] + upd_steps * (t["replay"] + t_sac_k)
    ours_expert = (ex_steps / env_rate + (ex_steps - warm) / ex.num_envs * t["act"]
                   + (ex_steps - warm) * ex.updates_per_step * (t["replay"] + t["sac1"]))
    ours_p1 = p1["steps"] * (t["gather"] + p1["tasks"] / by[f"{p1_key}{p1['tasks']}"].median)
    # d3rlpy: one learner at a time; every env step acts, every update samples its minibatch
    d3_collect = k * (steps / env_rate + (steps - learn) * t["d3act"] + upd_steps * (t["d3replay"] + t["d3sac"]))
    d3_expert = (ex_steps / env_rate + (ex_steps - warm) * t["d3act"]
                 + (ex_steps - warm) * ex.updates_per_step * (t["d3replay"] + t["d3sac"]))
    d3_p1 = p1["tasks"] * p1["steps"] * (t["d3replay_p1"] + t[f"d3{p1_key}"])
    ours = ours_collect + ours_expert + ours_p1
    d3 = d3_collect + d3_expert + d3_p1
    recipe = (f"{card.name}: {k} tasks x {steps} env steps (SAC {'-'.join(map(str, beh.hidden))}, batch {beh.batch_size}, "
              f"{beh.updates_per_step} update/step after {learn}) + expert {ex_steps} steps + tiMe phase 1: BCQ "
              f"{'-'.join(map(str, p1['critic_hidden']))} / VAE {'-'.join(map(str, p1['vae_hidden']))}, "
              f"{p1['tasks']} tasks x {p1['steps']} updates, batch {p1['batch']}")

    def parts(c: float, e: float, p: float) -> str:
        return f"collection {c / 60:.1f} + expert {e / 60:.1f} + phase 1 {p / 60:.1f} min"

    return [
        BenchRow("recipe", "collection + phase 1 ours", "ours", k, ours / 60, "min", vs_d3rlpy=d3 / ours,
                 note=f"COMPUTED from the measured rates above (both at {threads} torch thread(s)), not timed: "
                      f"{parts(ours_collect, ours_expert, ours_p1)}; {recipe}"),
        BenchRow("recipe", "collection + phase 1 d3rlpy", "d3rlpy", 1, d3 / 60, "min",
                 note=f"COMPUTED likewise: {parts(d3_collect, d3_expert, d3_p1)}; the same recipe, one d3rlpy learner at a time"),
    ]


def bench_info(threads: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on (for the JSON next to the rows)."""
    import torch

    info: dict[str, Any] = {
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "processor": _cpu_model(), "cores": _available_cores(), "threads": threads or _available_cores(),
        "device": device, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", ""),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        from importlib.metadata import version

        info["d3rlpy"] = version("d3rlpy")
    except Exception:  # d3rlpy missing: the rows say so
        info["d3rlpy"] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# ------------------------------------------------------------------------------- output
def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def rows_table(rows: Sequence[BenchRow], info: dict[str, Any] | None = None) -> Any:
    """The rows as a rich Table (what the rows ran and how the recipe was computed: `row_notes`)."""
    from rich.table import Table

    title = "bmrl-bench bench"
    if info:
        title += (f" on {info.get('processor')}, {info.get('cores')} cores, device {info.get('device')}, "
                  f"torch {info.get('torch')}, d3rlpy {info.get('d3rlpy')}")
    table = Table(title=title, caption=(
        "value: median of interleaved repeats; bound: value x FLOPs per update / matmul GFLOP/s at the same threads; "
        "x d3rlpy: ours / d3rlpy, median of the ratios within a repeat (recipe: d3rlpy time / ours); best: ratio of "
        "the best repeats; CPU: ratio of updates per CPU-second (work per core, blind to other processes)"))
    for col in ("what", "thr", "value", "unit", "GFLOP/upd", "bound", "x d3rlpy", "best", "CPU", "x K=1"):
        table.add_column(col, justify="left" if col in ("what", "unit") else "right")
    for r in rows:
        table.add_row(
            r.name, str(r.threads) if r.section != "recipe" else "-", f"{r.value:,.0f}" if r.value >= 1000 else f"{r.value:.4g}",
            r.unit, _fmt(r.gflop_per_update, ".3f"), "-" if r.bound_fraction is None else f"{100 * r.bound_fraction:.0f}%",
            _fmt(r.vs_d3rlpy, ".2f"), _fmt(r.vs_d3rlpy_best, ".2f"), _fmt(r.vs_d3rlpy_cpu, ".2f"), _fmt(r.vs_k1, ".2f"),
        )
    return table


def row_notes(rows: Sequence[BenchRow]) -> list[str]:
    """One line per row that carries a note (what d3rlpy ran, how a recipe row was computed)."""
    return [f"{r.name}: {r.note}" for r in rows if r.note]


def write_json(path: Any, rows: Sequence[BenchRow], info: dict[str, Any]) -> None:
    """Rows and machine info as JSON, written atomically."""
    import json
    from pathlib import Path

    from bmrl_bench.fsutil import atomic_write_text

    atomic_write_text(Path(path), json.dumps({"info": info, "rows": [r.as_dict() for r in rows]}, indent=2) + "\n")
