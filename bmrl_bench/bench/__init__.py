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
- what a training loop does besides updating: sampling minibatches, acting, env steps;
- every training loop the repo runs (`loops`, the `training` rows), as `fit` or the build runs it, on
  pointgoal-3 and halfcheetah-vel-lite: tiMe phase 1 and phase 2, PEARL, Batch SAC, the family-wide
  expert and the behaviour collection; their sampling (and env steps) included.
The learner rows time updates on pre-built minibatches (d3rlpy: numpy `TransitionMiniBatch`, converted
by its `update`; ours: tensors already on the device), so they compare learners only.
`only` (`--only`) picks groups of rows (`run.GROUPS`); the matmul ground is always measured.

Each case also records its rate per CPU-second of the process (`per_cpu_s`): at one thread that
is the speed of an undisturbed core, so its ratios hold even when other processes take turns on
the cores; `best` keeps the least disturbed repeat.

FLOPs per update are counted by torch (`torch.utils.flop_counter.FlopCounterMode`) over real
updates of each row's own code, d3rlpy's included: matmuls forward and backward; elementwise work
(activations, losses, Adam's step), reductions and sampling are not counted (`flops.COUNTED`).
The hand sums from the layer sizes (`mlp_flops`, `sac_update_flops`, `bcq_update_flops`) check
the counts in the tests. The fraction of the FLOP bound of a row is
`updates/s * FLOPs per update / matmul FLOP/s` (matmul at the row's thread count), and its
achieved GFLOP/s is `updates/s * FLOPs per update`.

The recipe rows are COMPUTED from the measured rates, not timed end to end: data collection
(one online SAC per task, 1 update per env step, plus the family-wide expert) and tiMe's
phase 1 (one BCQ per meta-train task) of a suite card, ours (all tasks batched) against the
same recipe with d3rlpy learners (one learner at a time).

Modules: `flops` (FLOP counts), `timing` (interleaved repeats), `cases` (synthetic batches,
samplers, d3rlpy's learners), `loops` (the training loops), `run` (`bench`, the entry point, and `run_bench`, its rows),
`report` (rows, table, JSON, `BenchReport`).
"""
from __future__ import annotations

from bmrl_bench.bench.flops import bcq_update_flops, counted_flops, mlp_flops, sac_update_flops
from bmrl_bench.bench.report import BenchReport, BenchRow, bench_info, row_notes, rows_table, write_json
from bmrl_bench.bench.run import GROUPS, bench, run_bench

__all__ = ["GROUPS", "BenchReport", "BenchRow", "bcq_update_flops", "bench", "bench_info", "counted_flops",
           "mlp_flops", "row_notes", "rows_table", "run_bench", "sac_update_flops", "write_json"]
