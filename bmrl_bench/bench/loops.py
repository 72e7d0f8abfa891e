"""Every training loop the repo runs, run as `fit` or the build runs it: the `training` rows of the bench.

For each suite of `LOOP_SUITES` (the default job's pointgoal-3 and halfcheetah-vel-lite), under each
algorithm's named config for that suite, found through the registry as `eval` finds it:
- `time`: tiMe's phase 1 (its K per-task learners in one update) and phase 2 (one distillation step),
  through `TiMe.bench_steps` (`algorithms.BenchSteps`);
- `pearl`: one PEARL update (`Pearl.bench_steps`);
- `batch-sac`: one Batch SAC update: its own `fit`, timed between the calls of its probe callback
  (`algorithms.ProbedFit`);
- `expert`: the family-wide expert, `builder.expert.train_expert` on the card's recipe (its `num_envs` envs
  stepping, one K=1 SAC update per env step), timed between its progress reports;
- `collection`: the behaviour SAC, `collect.collect_behaviour` on the card's first shard (all its tasks
  in one batched SAC, one env step per task and one update per loop step), timed likewise.
The algorithms train on random data of the suite's shapes and sizes (meta-train tasks x the card's
transitions per task): a step's arithmetic does not depend on the values. The build's loops run their
card's recipe with a shorter budget: no convergence checks, and the behaviour SAC acts from the first step.

A loop timed between its own reports (`Marks`) leaves its set-up, and everything before its first report,
out: for the expert (`builder.expert.train_expert` reports every 400 env steps), 400 env steps of random warm-up.
FLOPs per update are counted over real updates (`flops.counted_flops`, `Marks(count=True)`).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bmrl_bench.bench.flops import counted_flops
from bmrl_bench.bench.timing import Case, Timed

LOOP_SUITES = ("pointgoal-3", "halfcheetah-vel-lite")
GROUPS = ("time", "pearl", "batch-sac", "expert", "collection")
EXPERT_REPORT_EVERY = 400  # env steps between builder.expert.train_expert's progress reports

# A loop that runs `n` timed updates and calls its argument at each of its progress reports with the count
# of steps so far (collection: loop steps; expert: env steps; Batch SAC: updates).
LoopRun = Callable[[int, Callable[[int], None]], None]


@dataclass
class Loop:
    """One training row: its case (timed with the others) and what the row says about it."""

    group: str
    """What `--only` selects: one of `GROUPS`."""
    name: str
    suite: str
    members: int
    """K: agents (tasks) one update trains."""
    case: Case
    flops: float
    """Counted FLOPs of one update (the case's unit)."""
    note: str
    d3rlpy: str | None = None
    """The d3rlpy case that runs the same algorithm at the same sizes and shapes, if any."""


class Marks:
    """A loop's own progress callback as a stopwatch: wall time, CPU time and (with `count`) FLOPs at each call.

    The window runs from the first call to the last. Counting starts at the first call (FlopCounterMode
    makes every op slow: the updates before the window run at full speed); `close()` ends it."""

    def __init__(self, count: bool = False) -> None:
        self.count = count
        self.points: list[tuple[int, float, float, float]] = []
        self._counter: Any = None

    def __call__(self, step: int) -> None:
        if self.count and self._counter is None:
            from torch.utils.flop_counter import FlopCounterMode

            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        flops = float(self._counter.get_total_flops()) if self._counter is not None else 0.0
        self.points.append((step, time.perf_counter(), time.process_time(), flops))

    def close(self) -> None:
        if self._counter is not None:
            self._counter.__exit__(None, None, None)

    def window(self, per_step: float) -> tuple[Timed, float]:
        """(updates timed, their wall and CPU seconds), FLOPs per update; `per_step` updates per counted step."""
        if len(self.points) < 2:
            raise RuntimeError("the loop reported fewer than twice: nothing to time")
        (s0, w0, c0, f0), (s1, w1, c1, f1) = self.points[0], self.points[-1]
        count = (s1 - s0) * per_step
        return Timed(count, w1 - w0, c1 - c0), (f1 - f0) / count


def run_marked(run: LoopRun, n: int, per_step: float, count: bool = False) -> tuple[Timed, float]:
    marks = Marks(count)
    try:
        run(n, marks)
    finally:
        marks.close()
    return marks.window(per_step)


def self_timed_case(key: str, run: LoopRun, per_step: float, threads: int, min_time: float,
                    first: int) -> tuple[Case, float]:
    """A case that runs the loop once per repeat, sized to about `min_time` seconds; and its counted FLOPs
    per update (that counting run, `first` steps, also warms the loop up)."""
    import torch

    torch.set_num_threads(threads)
    _, flops = run_marked(run, first, per_step, count=True)
    size = {"n": first}

    def step() -> Timed:
        t, _ = run_marked(run, size["n"], per_step)
        size["n"] = max(first, round(size["n"] * min_time / max(t.wall, 1e-9)))
        return t

    return Case(key, step, 1, threads, self_timed=True), flops


# ----------------------------------------------------------------------------- synthetic meta-train data
def family_dims(family_name: str) -> tuple[int, int]:
    from bmrl_bench.families import get_family

    family = get_family(family_name)
    env = family.make(family.param_range[0])
    dims = int(env.observation_space.shape[0]), int(env.action_space.shape[0])
    env.close()
    return dims


def random_meta_train(card: Any, rng: np.random.Generator) -> Any:
    """Random MetaTrainData of the card's shapes: its meta-train tasks x `steps_per_task` transitions."""
    from bmrl_bench.algorithms import EnvSpec, MetaTrainData
    from bmrl_bench.data import Batch

    obs_dim, act_dim = family_dims(card.family)
    tasks, per_task, f = len(card.train_tasks), card.behaviour.steps_per_task, np.float32
    n = tasks * per_task
    timeouts = np.zeros(n, f)
    timeouts[card.episode_length - 1 :: card.episode_length] = 1.0
    batch = Batch(observations=rng.standard_normal((n, obs_dim)).astype(f),
                  actions=rng.uniform(-1, 1, (n, act_dim)).astype(f), rewards=rng.standard_normal(n).astype(f),
                  next_observations=rng.standard_normal((n, obs_dim)).astype(f), terminals=np.zeros(n, f),
                  timeouts=timeouts, task_index=np.repeat(np.arange(tasks), per_task).astype(np.int64))
    spec = EnvSpec(family=card.family, obs_dim=obs_dim, act_dim=act_dim, episode_length=card.episode_length)
    return MetaTrainData(spec=spec, batch=batch, num_tasks=tasks, suite=card.name)


def _registered(name: str, card: Any) -> tuple[type, str, Any]:
    from bmrl_bench.algorithms import get_algorithm, resolve_config

    cls = get_algorithm(name)
    config_name, config = resolve_config(cls, card.name, card.family, None, None)
    return cls, config_name, config


def _dash(sizes: Sequence[int]) -> str:
    return "-".join(str(x) for x in sizes)


# ----------------------------------------------------------------------------- the loops
def training_loops(groups: Sequence[str], device: str, threads: int, min_time: float, quick: bool,
                   say: Callable[[str], None], suites: Sequence[str] = LOOP_SUITES) -> list[Loop]:
    """Every loop of `groups` on every suite of `suites`, with its counted FLOPs; the torch threads are left
    at `threads`."""
    import torch

    from bmrl_bench.suites import get_card

    torch.set_num_threads(threads)
    loops: list[Loop] = []
    for suite in suites:
        card = get_card(suite)
        rng = np.random.default_rng(0)
        data = random_meta_train(card, rng) if {"time", "pearl", "batch-sac"} & set(groups) else None
        if "time" in groups:
            say(f"tiMe on {suite}")
            loops += _time_loops(card, data, device, threads)
        if "pearl" in groups:
            say(f"PEARL on {suite}")
            loops.append(_pearl_loop(card, data, device, threads))
        if "batch-sac" in groups:
            say(f"Batch SAC on {suite}")
            loops.append(_batch_sac_loop(card, data, device, threads, min_time, quick))
        if "expert" in groups:
            say(f"expert on {suite}")
            loops.append(_expert_loop(card, threads, min_time, quick))
        if "collection" in groups:
            say(f"behaviour collection on {suite}")
            loops.append(_collection_loop(card, threads, min_time, quick))
    return loops


def _stepped_case(key: str, step: Callable[[], object], threads: int) -> tuple[Case, float]:
    step()  # first call: allocations, lazy initialisation
    return Case(key, step, 1, threads), counted_flops(step)


def _time_loops(card: Any, data: Any, device: str, threads: int) -> list[Loop]:
    cls, config_name, c = _registered("time", card)
    steps = cls(c, data.spec, 0, device).bench_steps(data)
    k = data.num_tasks
    if c.phase1 == "sac":
        p1 = f"Batch SAC x{k} (BatchedSAC K={k}), {_dash(c.phase1_hidden)}, batch {c.phase1_batch_size}"
    else:
        p1 = (f"BCQ x{k} (BatchedBCQ K={k}), critic and perturbation {_dash(c.phase1_hidden)}, VAE "
              f"{_dash(c.phase1_vae_hidden)}, batch {c.phase1_batch_size}")
    p2 = (f"f {_dash(c.f_hidden)}, E {_dash(c.e_hidden)}->{c.e_out}, P {_dash(c.p_hidden)}, Q_S {_dash(c.q_hidden)}"
          + (f", G_S {_dash(c.g_hidden)}, xi_S {_dash(c.xi_hidden)}" if c.phase1 == "bcq" else "")
          + f", batch {c.batch_size} over {k} tasks")
    where = f"config '{config_name}'; TiMe.bench_steps (sampling included)"
    loops = []
    for loop_name, members, what in (("phase 1", k, p1), ("phase 2", 1, p2)):
        case, flops = _stepped_case(f"time {loop_name} {card.name}", steps[loop_name], threads)
        d3 = "d3p1bcq" if loop_name == "phase 1" and c.phase1 == "bcq" and card.family == "halfcheetah-vel" else None
        loops.append(Loop("time", f"tiMe {loop_name} {card.name}", card.name, members, case, flops,
                          f"{what}; {where}", d3))
    return loops


def _pearl_loop(card: Any, data: Any, device: str, threads: int) -> Loop:
    cls, config_name, c = _registered("pearl", card)
    step = cls(c, data.spec, 0, device).bench_steps(data)["update"]
    case, flops = _stepped_case(f"pearl {card.name}", step, threads)
    return Loop("pearl", f"PEARL {card.name}", card.name, c.meta_batch, case, flops,
                f"{c.meta_batch} tasks x (context {c.context_size} + batch {c.batch_size}), encoder "
                f"{_dash(c.encoder_hidden)}, actor and critics {_dash(c.hidden)}, latent {c.latent_dim}; "
                f"config '{config_name}'; Pearl.bench_steps (sampling included)")


def _batch_sac_loop(card: Any, data: Any, device: str, threads: int, min_time: float, quick: bool) -> Loop:
    cls, config_name, c = _registered("batch-sac", card)

    def run(n: int, mark: Callable[[int], None]) -> None:
        algo = cls(dataclasses.replace(c, steps=n + 1), data.spec, 0, device)
        algo.fit(data, callback=lambda step, _learner: mark(step), callback_every=1)

    case, flops = self_timed_case(f"batch-sac {card.name}", run, 1, threads, min_time, 3 if quick else 20)
    same_as_d3 = card.family == "halfcheetah-vel" and tuple(c.hidden) == tuple(card.behaviour.hidden) \
        and c.batch_size == card.behaviour.batch_size
    return Loop("batch-sac", f"Batch SAC {card.name}", card.name, 1, case, flops,
                f"{_dash(c.hidden)}, batch {c.batch_size} pooled over tasks; config '{config_name}'; its fit "
                "(sampling included), timed between its probe callbacks", "d3sac" if same_as_d3 else None)


def _expert_loop(card: Any, threads: int, min_time: float, quick: bool) -> Loop:
    from bmrl_bench.builder.expert import train_expert
    from bmrl_bench.families import get_family

    family, ex = get_family(card.family), card.expert
    params = card.train_tasks + card.test_tasks
    first = -(-EXPERT_REPORT_EVERY // ex.num_envs) * ex.num_envs  # env steps at its first report

    def run(n: int, mark: Callable[[int], None]) -> None:
        end = first + n * ex.num_envs
        # Random actions and no updates up to the first report (train_expert's warm-up is min_steps // 10),
        # and no convergence checks. model_copy skips the validator's min_steps <= max_steps: with the
        # checks off, min_steps sets only the warm-up.
        recipe = ex.model_copy(update={"min_steps": 10 * first, "max_steps": end, "eval_every": end + 1})
        train_expert(family, min(params), max(params), card.episode_length, recipe,
                     progress=lambda step, _total, _recent: mark(step))

    case, flops = self_timed_case(f"expert {card.name}", run, ex.updates_per_step, threads, min_time,
                                  2 if quick else 10)
    return Loop("expert", f"expert SAC {card.name}", card.name, 1, case, flops,
                f"builder.expert.train_expert: {ex.num_envs} envs stepping, K=1 SAC {_dash(ex.hidden)}, batch "
                f"{ex.batch_size}, {ex.updates_per_step} update per env step; one update = one env step, 1/"
                f"{ex.num_envs} of a batched act, one SAC update; convergence checks off")


def _collection_loop(card: Any, threads: int, min_time: float, quick: bool) -> Loop:
    from bmrl_bench.collect import collect_behaviour
    from bmrl_bench.families import get_family

    family, beh = get_family(card.family), card.behaviour
    params = [card.task_param(i) for i in card.shards()[0]]

    def run(n: int, mark: Callable[[int], None]) -> None:
        recipe = beh.model_copy(update={"steps_per_task": n + 1, "learning_starts": 0})
        collect_behaviour(family, params, card.episode_length, recipe, progress=lambda step, _t, _r: mark(step))

    case, flops = self_timed_case(f"collection {card.name}", run, 1, threads, min_time, 2 if quick else 10)
    k = len(params)
    return Loop("collection", f"behaviour collection {card.name}", card.name, k, case, flops,
                f"collect.collect_behaviour on shard 0 ({k} tasks): SAC K={k} {_dash(beh.hidden)}, batch "
                f"{beh.batch_size}; one update = one loop step: {k} env steps, one batched act, "
                f"{beh.updates_per_step} batched update(s) of all {k}")
