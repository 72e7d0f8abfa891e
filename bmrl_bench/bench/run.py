"""`bench` (the rows, the machine, the JSON) and `run_bench`: build every case, time them interleaved, turn the
rates into rows (the recipe rows computed)."""
from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bmrl_bench.bench.cases import ACT_DIM, OBS_DIM, d3rlpy_cases, env_step_rate, task_sampler, torch_batch
from bmrl_bench.bench.flops import counted_flops
from bmrl_bench.bench.loops import GROUPS as LOOP_GROUPS
from bmrl_bench.bench.loops import Loop, training_loops
from bmrl_bench.bench.report import BenchReport, BenchRow, bench_info
from bmrl_bench.bench.timing import Case, available_cores, cycle, measure

RECIPE_SUITE = "halfcheetah-vel-lite"


GROUPS = ("learners", *LOOP_GROUPS)
"""What `only` selects: `learners` (BCQ and SAC against d3rlpy, sampling and acting, the recipe) and each
training loop of `loops.GROUPS`; the matmul ground is always measured."""


def bench(
    *,
    quick: bool = False,
    device: str = "cpu",
    threads: int | None = None,
    only: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
    runtime: Mapping[str, bool] | None = None,
    json_path: Path | None = None,
) -> BenchReport:
    """`bmrl-bench bench`: `run_bench`'s rows and `bench_info`'s machine, written to `json_path` if given.

    `runtime`: what the caller's process-wide settings (`bmrl_bench.runtime`, applied before torch loads)
    returned, recorded in the info as they are.
    """
    rows = run_bench(quick=quick, device=device, threads=threads, only=only, progress=progress)
    report = BenchReport(rows, bench_info(threads, device) | {"runtime": None if runtime is None else dict(runtime)})
    if json_path is not None:
        report.write_json(json_path)
    return report


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
    only: Sequence[str] | None = None,
) -> list[BenchRow]:
    """Measure our learners against d3rlpy's and every training loop (see the package docstring); rows in
    table order.

    `threads`: torch CPU threads of every learner and loop row (default: the cores this process may use);
    the matmul ground is measured at 1 thread and at `threads`. `quick` times each case briefly
    (seconds in all: a smoke test, not a measurement). `only`: groups of `GROUPS` (default: all).
    The torch thread count is restored after.
    """
    import torch

    from bmrl_bench.errors import BmrlError

    say = progress or (lambda msg: None)
    groups = list(only) if only else list(GROUPS)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise BmrlError(f"bench: unknown row group '{unknown[0]}'; groups: {', '.join(GROUPS)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BmrlError("--device cuda: torch sees no CUDA device here; run on a GPU machine or use --device cpu")
    cuda = device.startswith("cuda")
    threads = threads or available_cores()
    repeats = repeats or (2 if quick else 9)
    min_time = min_time if min_time is not None else (0.05 if quick else 1.0)
    min_calls = 1 if quick else 3
    warmup = 0 if quick else 3
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    old_threads = torch.get_num_threads()

    # matmul ground
    n_mm = 4096 if cuda else 1024
    mm_a = torch.randn(n_mm, n_mm, device=device)
    mm_b = torch.randn(n_mm, n_mm, device=device)
    mm_c = torch.empty(n_mm, n_mm, device=device)
    mm_threads = [threads] if cuda else sorted({1, threads})
    cases = [Case(f"mm{t}", lambda: torch.mm(mm_a, mm_b, out=mm_c), 2.0 * n_mm**3, t) for t in mm_threads]

    learners: _Learners | None = None
    try:
        if "learners" in groups:
            learners = _Learners(device, threads, bcq_members, sac_members, include_d3rlpy, say)
            cases += learners.cases
        training = training_loops([g for g in groups if g in LOOP_GROUPS], device, threads, min_time, quick, say)
        cases += [loop.case for loop in training]
        say(f"timing {len(cases)} cases x {repeats} repeats, interleaved")
        measure(cases, repeats, min_time, min_calls, warmup, sync)
        if learners is not None:
            say("env steps")
            learners.env_rate = statistics.median(
                env_step_rate(learners.card.family, learners.card.episode_length, min_time)
                for _ in range(3 if not quick else 1))
    finally:
        torch.set_num_threads(old_threads)

    by = {c.key: c for c in cases}
    rows = _matmul_rows(by, mm_threads)
    ground = by[f"mm{threads}"].median / 1e9 if f"mm{threads}" in by else by[f"mm{mm_threads[-1]}"].median / 1e9
    if learners is not None:
        rows += learners.rows(by, ground)
    rows += _training_rows(training, by, ground, threads)
    return rows


class _Learners:
    """The `learners` group: our BCQ and SAC at several K against d3rlpy's, sampling, acting, the recipe."""

    def __init__(self, device: str, threads: int, bcq_members: int, sac_members: int, include_d3rlpy: bool,
                 say: Callable[[str], None]) -> None:
        import torch

        from bmrl_bench.learners.bcq import BatchedBCQ, BCQConfig
        from bmrl_bench.learners.sac import BatchedReplay, BatchedSAC, SACConfig
        from bmrl_bench.suites import get_card

        rng = np.random.default_rng(0)
        self.threads, self.d3, self.sac_members, self.env_rate = threads, include_d3rlpy, sac_members, 0.0
        self.card = card = get_card(RECIPE_SUITE)
        beh = card.behaviour
        self.recipe_k = recipe_k = card.num_tasks
        sac_hidden, sac_batch = tuple(beh.hidden), beh.batch_size
        bcq_cfg = BCQConfig(lr=3e-4, batch_size=100, n_action_samples=10, device=device)
        sac_cfg = SACConfig(hidden=sac_hidden, lr=3e-4, batch_size=sac_batch, device=device)
        pool = 4  # distinct minibatches cycled through (no cache effects from reusing one)

        # tiMe's phase 1 on the recipe suite may use other BCQ sizes (the lite configs do): measured too
        phase1 = phase1_recipe(card)
        p1_cfg = BCQConfig(actor_hidden=phase1["actor_hidden"], critic_hidden=phase1["critic_hidden"],
                           vae_hidden=phase1["vae_hidden"], lr=phase1["lr"], gamma=phase1["gamma"],
                           batch_size=phase1["batch"], n_action_samples=10, device=device)
        same = _bcq_sizes(p1_cfg) == _bcq_sizes(bcq_cfg) and p1_cfg.batch_size == bcq_cfg.batch_size
        self.p1_key = p1_key = "bcq" if same else "p1bcq"
        self.flops: dict[str, float] = {}  # counted FLOPs of one agent's update, by case key prefix
        self.cases: list[Case] = []

        say("building learners")
        torch.set_num_threads(threads)
        self.ks = ks = {"bcq": sorted({1, bcq_members}), "sac": sorted({1, sac_members, recipe_k})}
        ks[p1_key] = sorted({*ks.get(p1_key, [1]), phase1["tasks"]})
        for key, cfg in (("bcq", bcq_cfg), ("p1bcq", p1_cfg)):
            for k in ks.get(key, []):
                learner = BatchedBCQ(k, OBS_DIM, ACT_DIM, cfg, seed=0)
                batches = [torch_batch(rng, k, cfg.batch_size, device) for _ in range(pool)]
                self._add(Case(f"{key}{k}", cycle(learner.update, batches), k, threads), key if k == 1 else None)
        for k in ks["sac"]:
            learner = BatchedSAC(k, OBS_DIM, ACT_DIM, sac_cfg, seed=0, device=device)
            batches = [torch_batch(rng, k, sac_batch, device) for _ in range(pool)]
            self._add(Case(f"sac{k}", cycle(learner.update, batches), k, threads), "sac" if k == 1 else None)
        # the rest of our training loops: replay sampling and acting (collection), task-stratified
        # sampling (tiMe's phase 1)
        replay = BatchedReplay(recipe_k, beh.steps_per_task, OBS_DIM, ACT_DIM, seed=0, device=device)
        replay.observations[:] = rng.standard_normal(replay.observations.shape)
        replay.size = beh.steps_per_task
        self.cases.append(Case("replay", lambda: replay.sample(sac_batch), 1, threads))
        actor = BatchedSAC(recipe_k, OBS_DIM, ACT_DIM, sac_cfg, seed=0, device=device)
        obs_k = rng.standard_normal((recipe_k, OBS_DIM)).astype(np.float32)
        self.cases.append(Case("act", lambda: actor.act(obs_k), 1, threads))
        sampler, gen = task_sampler(rng, phase1["tasks"], beh.steps_per_task, card.episode_length, device)
        self.cases.append(Case("gather", lambda: sampler.gather(sampler.indices((phase1["batch"],), gen)), 1,
                               threads))
        if include_d3rlpy:
            say("building d3rlpy learners")
            for c in d3rlpy_cases(rng, device, threads, bcq_cfg, sac_cfg, pool, card, p1_cfg if not same else None):
                self._add(c, c.key if c.key in ("d3bcq", "d3p1bcq", "d3sac") else None)

    def _add(self, case: Case, count_as: str | None) -> None:
        """Add a case; `count_as`: count the FLOPs of one call (one agent's update) under that key."""
        self.cases.append(case)
        if count_as is not None:
            case.step()  # first call: allocations, lazy initialisation
            self.flops[count_as] = counted_flops(case.step)

    def rows(self, by: dict[str, Case], ground: float) -> list[BenchRow]:
        from bmrl_bench.learners.bcq import BCQConfig

        card, threads, d3, p1 = self.card, self.threads, self.d3, phase1_recipe(self.card)
        rows: list[BenchRow] = []

        def learner_rows(key: str, label: str, shown: list[int], d3key: str, d3note: str) -> None:
            ref = by[d3key] if d3 else None
            k1 = by[f"{key}1"]
            f = self.flops[key]
            for k in shown:
                c = by[f"{key}{k}"]
                rows.append(BenchRow(
                    key, f"{label} ours K={k}", "ours", k, c.median, "agent-upd/s", f / 1e9,
                    c.median * f / 1e9 / ground, c.paired(ref) if ref else None, c.paired(k1) if k > 1 else None,
                    threads, _spread(c), c.best, c.best / ref.best if ref else None, c.per_cpu_s,
                    c.per_cpu_s / ref.per_cpu_s if ref else None, gflop_s=c.median * f / 1e9))
            if ref is not None:
                fd = self.flops[d3key]
                rows.append(BenchRow(key, f"{label} d3rlpy", "d3rlpy", 1, ref.median, "agent-upd/s", fd / 1e9,
                                     ref.median * fd / 1e9 / ground, None, None, threads, _spread(ref), ref.best,
                                     per_cpu_s=ref.per_cpu_s, gflop_s=ref.median * fd / 1e9,
                                     note=d3note + "; its own update's FLOPs, counted"))

        official = BCQConfig()
        learner_rows("bcq", "BCQ", self.ks["bcq"], "d3bcq", f"official sizes: {_sizes_text(official)}; "
                     "d3rlpy 2.8.1 BCQConfig(n_action_samples=10) through algo.update(batch)")
        if self.p1_key == "p1bcq":
            p1_cfg = BCQConfig(actor_hidden=p1["actor_hidden"], critic_hidden=p1["critic_hidden"],
                               vae_hidden=p1["vae_hidden"], lr=p1["lr"], batch_size=p1["batch"])
            learner_rows("p1bcq", "BCQ lite", self.ks["p1bcq"], "d3p1bcq",
                         f"tiMe's phase 1 for {card.name} (config '{p1['config']}'): {_sizes_text(p1_cfg)}")
        learner_rows("sac", "SAC", [k for k in self.ks["sac"] if k in (1, self.sac_members)], "d3sac",
                     "256-256, batch 256, Adam 3e-4; d3rlpy 2.8.1 SACConfig, one agent per algo.update(batch)")

        recipe_k = self.recipe_k
        loop = [("replay", "ours", f"replay sample (256) ours K={recipe_k}", "calls/s", recipe_k),
                ("act", "ours", f"SAC act ours K={recipe_k}", "calls/s", recipe_k),
                ("gather", "ours", f"phase-1 sample ({p1['batch']}) ours K={p1['tasks']}", "calls/s", p1["tasks"])]
        if d3:
            loop += [("d3replay", "d3rlpy", "replay sample (256) d3rlpy", "calls/s", 1),
                     ("d3act", "d3rlpy", "SAC act d3rlpy", "calls/s", 1)]
        for key, impl, name, unit, k in loop:
            c = by[key]
            rows.append(BenchRow("loop", name, impl, k, c.median, unit, threads=threads, spread=_spread(c),
                                 best=c.best, per_cpu_s=c.per_cpu_s))
        rows.append(BenchRow("loop", f"{card.family} env step", "gymnasium", 1, self.env_rate, "steps/s",
                             note="one plain env, random actions, resets included"))
        if d3:
            rows.extend(_recipe_rows(by, recipe_k, self.env_rate, card, self.p1_key, threads))
        return rows


def _spread(c: Case) -> tuple[float, float]:
    return (min(c.samples), max(c.samples))


def _matmul_rows(by: dict[str, Case], mm_threads: list[int]) -> list[BenchRow]:
    rows = []
    for t in mm_threads:
        c = by[f"mm{t}"]
        n = round((c.units / 2) ** (1 / 3))
        rows.append(BenchRow("matmul", f"matmul fp32 {n}^3", "torch", 1, c.median / 1e9, "GFLOP/s", threads=t,
                             spread=(min(c.samples) / 1e9, max(c.samples) / 1e9), best=c.best / 1e9,
                             per_cpu_s=c.per_cpu_s / 1e9))
    return rows


def _training_rows(training: list[Loop], by: dict[str, Case], ground: float, threads: int) -> list[BenchRow]:
    """One row per training loop: updates/s of the loop, its counted FLOPs, GFLOP/s and fraction of the bound;
    ours / d3rlpy (agent-updates/s, paired) where d3rlpy ran the same algorithm at the same sizes."""
    rows = []
    for loop in training:
        c, f = loop.case, loop.flops / 1e9
        ref = by.get(loop.d3rlpy) if loop.d3rlpy else None
        rows.append(BenchRow(
            "training", loop.name, "ours", loop.members, c.median, "upd/s", f, c.median * f / ground,
            vs_d3rlpy=loop.members * c.paired(ref) if ref else None, threads=threads, spread=_spread(c),
            best=c.best, vs_d3rlpy_best=loop.members * c.best / ref.best if ref else None, per_cpu_s=c.per_cpu_s,
            vs_d3rlpy_cpu=loop.members * c.per_cpu_s / ref.per_cpu_s if ref else None, gflop_s=c.median * f,
            note=loop.note))
    return rows


def phase1_recipe(card: Any) -> dict[str, Any]:
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


def _sizes_text(cfg: Any) -> str:
    def dash(h: Sequence[int]) -> str:
        return "-".join(str(x) for x in h)

    return (f"critic {dash(cfg.critic_hidden)}, perturbation {dash(cfg.actor_hidden)}, VAE {dash(cfg.vae_hidden)}, "
            f"{cfg.n_action_samples} action samples, batch {cfg.batch_size}, Adam {cfg.lr:g}")


def _recipe_rows(by: dict[str, Case], recipe_k: int, env_rate: float, card: Any, p1_key: str,
                 threads: int) -> list[BenchRow]:
    """Data collection + phase 1 of the card's recipe, computed from the measured rates (seconds)."""
    beh, ex = card.behaviour, card.expert
    ex_steps = ex.min_steps  # the expert's budget before its convergence checks may stop it
    p1 = phase1_recipe(card)
    k, steps, learn = recipe_k, beh.steps_per_task, beh.learning_starts
    upd_steps = (steps - learn) * beh.updates_per_step
    t = {key: 1.0 / c.median for key, c in by.items()}  # seconds per call (median rates)
    t_sac_k = recipe_k / by[f"sac{recipe_k}"].median  # one batched update of all K tasks
    warm = min(ex_steps // 10, 5000)  # builder.expert.train_expert's random warm-up
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
    recipe = (f"{card.name}: {k} tasks x {steps} env steps (SAC {'-'.join(map(str, beh.hidden))}, "
              f"batch {beh.batch_size}, "
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
                 note=f"COMPUTED likewise: {parts(d3_collect, d3_expert, d3_p1)}; "
                      "the same recipe, one d3rlpy learner at a time"),
    ]
