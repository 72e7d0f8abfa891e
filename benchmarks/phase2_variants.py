"""tiMe's phase-2 step rate under config variants, interleaved in one process (issue 15, item 3).

Every variant steps through `TiMe.bench_steps` (the same `phase2_update` that `fit` runs) on the
suite's real meta-train data; each repeat runs every variant for `--seconds`, in turn, so machine
noise hits them alike. Rates are reported as ratios to the suite's named config.

    python benchmarks/phase2_variants.py --suite pointgoal-3
    python benchmarks/phase2_variants.py --suite pointgoal-3 --variant small=e_hidden=64,e_out=32,p_hidden=32
    python benchmarks/phase2_variants.py --suite pointgoal-3 --compile     # adds torch.compile of the loss

`--compile` wraps `phase2_loss` in `torch.compile` (inductor, C++ on CPU) and reports its compile
time beside its rate.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.time_distill import CONFIGS, TiMe, TiMeConfig, own_q_values  # noqa: E402
from bmrl_bench.cli_inputs import parse_overrides  # noqa: E402
from bmrl_bench.data import load_suite  # noqa: E402
from bmrl_bench.learners.optim import fused_adam, fused_step  # noqa: E402
from bmrl_bench.learners.sampling import TaskSampler  # noqa: E402
from bmrl_bench.meta_data import meta_train_data  # noqa: E402
from bmrl_bench.suites import get_card  # noqa: E402

# The variants measured for the default job (issue 15): the predictor path E/P is about 60% of a
# pointgoal phase-2 step's FLOPs; Q_S and the minibatch are the other levers.
DEFAULT_VARIANTS = {
    "e64-32 p32": "e_hidden=64,e_out=32,p_hidden=32",
    "e256-32 p32": "e_out=32,p_hidden=32",
    "batch 128": "batch_size=128",
    "q 128-128": "q_hidden=128;128",
}


def _config_for(suite: str) -> tuple[str, TiMeConfig]:
    family = get_card(suite).family
    name = suite if suite in CONFIGS else ("pointgoal" if family == "pointgoal" else "default")
    return name, CONFIGS[name]


def _variant(base: TiMeConfig, spec: str) -> TiMeConfig:
    """`field=value,field=value` (tuples with `;`) applied to `base`."""
    pairs = [tuple(p.split("=", 1)) for p in spec.split(",") if p]
    overrides = parse_overrides(TiMeConfig, [(k, v.replace(";", ",")) for k, v in pairs])
    return dataclasses.replace(base, **overrides)


def _compiled_step(algo: TiMe, data: Any) -> Callable[[], Any]:
    """`phase2_update` as `bench_steps` sets it up (untrained teachers, their fixed Q targets), the loss compiled."""
    learner = algo._phase1_learner(data.num_tasks)
    sampler = TaskSampler(data.batch, data.num_tasks, algo.device)
    sampler.t["q_target"] = own_q_values(learner, sampler)
    params = list(algo.nets.parameters())
    opt, gen = fused_adam(params, algo.config.lr), algo.phase2_generator()
    loss_fn = torch.compile(algo.phase2_loss, dynamic=False)

    def step() -> None:
        loss, _ = loss_fn(learner, sampler, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        fused_step(opt, params)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="pointgoal-3")
    parser.add_argument("--variant", action="append", default=[], help="name=field=value,... (repeatable)")
    parser.add_argument("--compile", action="store_true", help="also the config with torch.compile of the loss")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    name, base = _config_for(args.suite)
    data = meta_train_data(load_suite(args.suite))
    specs = dict(v.split("=", 1) for v in args.variant) if args.variant else DEFAULT_VARIANTS
    steps: dict[str, Callable[[], Any]] = {name: TiMe(base, data.spec, seed=0).bench_steps(data)["phase 2"]}
    for label, spec in specs.items():
        steps[label] = TiMe(_variant(base, spec), data.spec, seed=0).bench_steps(data)["phase 2"]
    compile_s = None
    if args.compile:
        start = time.perf_counter()
        steps["compiled"] = _compiled_step(TiMe(base, data.spec, seed=0), data)
        for _ in range(3):
            steps["compiled"]()
        compile_s = time.perf_counter() - start
    for step in steps.values():  # warm-up
        for _ in range(10):
            step()
    rates: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(args.repeats):
        for label, step in steps.items():
            start, n = time.perf_counter(), 0
            while time.perf_counter() - start < args.seconds:
                step()
                n += 1
            rates[label].append(n / (time.perf_counter() - start))
    ref = statistics.median(rates[name])
    rows = [{"variant": label, "spec": specs.get(label, ""), "updates_per_s": statistics.median(r),
             "x_config": statistics.median(r) / ref} for label, r in rates.items()]
    for row in rows:
        print(f"{row['variant']:<14} {row['updates_per_s']:8.1f} upd/s  x{row['x_config']:.2f}  {row['spec']}")
    if compile_s is not None:
        print(f"compile (first 3 steps): {compile_s:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"suite": args.suite, "config": name, "threads": args.threads,
                                         "compile_s": compile_s, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
