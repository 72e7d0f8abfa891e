"""Who proposes, who ranks: tiMe's BCQ candidates against its teacher's, on the teacher's own train task.

    bmrl-bench eval --algo time --suite halfcheetah-vel-lite --seeds 0 --checkpoints ckpt/
    python benchmarks/time_candidates.py --suite halfcheetah-vel-lite --checkpoints ckpt/ --seed 0 --tasks 1,2,6

A BCQ-phase-1 tiMe acts by proposing `bcq_candidates` actions (G_S, then xi_S) and taking the one
Q_S ranks best; its teacher does the same with G*, xi* and Q1*. On each chosen train task, with the
embedding of an offline context from the task's own data (200 transitions, as the offline-context
protocol draws them), six policies play `--episodes` episodes (the harness's episode seeds):
tiMe's candidates ranked by Q_S (tiMe itself), by the teacher's Q1, the teacher's candidates ranked
by Q_S, and by the teacher's Q1 (the teacher itself); then, ranked by Q_S, G_S's decoded actions
perturbed by the teacher's xi, and the teacher's G perturbed by xi_S. Both sides decode the same
latents. Where tiMe falls short of its teacher, the row says whether the proposals or the ranking
lose it, and which half of the proposal. Prints and writes normalized scores as JSON.

First, without playing, how far the distilled candidates are from the teacher's (`candidate_errors`):
on `--states` states of each task's data and the same latents, the squared distance (summed over
action dimensions) of G_S's decoded action from G*'s and of tiMe's candidate from the teacher's,
against the teacher's own spread over latents and the distance to the neighbouring task's teacher.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.time_distill import TiMe
from bmrl_bench.data import Suite, load_suite
from bmrl_bench.errors import CheckpointError
from bmrl_bench.fsutil import atomic_write_text
from bmrl_bench.harness import checkpoint_of, meta_train_data
from bmrl_bench.metrics import normalize
from bmrl_bench.protocols import PROTOCOLS, episode_seed

SIDES = ("time", "teacher")
# (generator, perturbation, ranker): the two pure policies, each side's whole proposal ranked by the
# other's Q, and the proposal's halves swapped under Q_S (which half of tiMe's proposal loses).
CELLS = [(g, x, r) for g, x in (("time", "time"), ("teacher", "teacher")) for r in SIDES] + [
    ("time", "teacher", "time"), ("teacher", "time", "time")]


def cell_name(generator: str, perturbation: str, ranker: str) -> str:
    if generator == perturbation:
        return f"{generator} proposes, {ranker} ranks"
    return f"{generator} G + {perturbation} xi, {ranker} ranks"


def every_member(x: torch.Tensor, k: int) -> torch.Tensor:
    """`x` repeated for each of the `k` teachers, `(...) -> (k, ...)`, as the batched learner takes it."""
    return x.unsqueeze(0).expand(k, *x.shape).contiguous()


def offline_embedding(algo: TiMe, batch: Any, rng: np.random.Generator) -> torch.Tensor:
    """tiMe's embedding (d,) of an offline context from `batch`, as the offline-context protocol draws it."""
    n_context = int(PROTOCOLS["offline-context"].constants["context_transitions"])
    return algo.context_embedding(batch, rng.integers(0, len(batch), size=n_context))


class Mixed:
    """Candidates decoded by one side's generator and perturbed by one side's xi, ranked by one side's Q;
    `member` is the task's teacher, `emb` tiMe's embedding."""

    def __init__(self, algo: TiMe, learner: Any, member: int, emb: torch.Tensor, generator: str, perturbation: str,
                 ranker: str) -> None:
        self.algo, self.learner, self.member, self.emb = algo, learner, member, emb
        self.generator, self.perturbation, self.ranker = generator, perturbation, ranker
        self.gen = torch.Generator().manual_seed(algo.seed)

    def _all_members(self, x: torch.Tensor) -> torch.Tensor:
        return every_member(x, self.learner.num_members)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        c, nets, n = self.algo.config, self.algo.nets, self.algo.config.bcq_candidates
        s = torch.as_tensor(obs, dtype=torch.float32).expand(n, -1)
        emb = self.emb.expand(n, -1)
        # one latent draw for either generator, so that the two sides decode the same z
        clip = c.phase1_latent_clip
        z = torch.randn(n, self.algo.latent_dim, generator=self.gen).clamp(-clip, clip)
        every = self._all_members(s)
        if self.generator == "time":
            decoded = nets.generate(s, z, emb)
        else:
            decoded = self.learner.generate(every, self._all_members(z))[self.member].float()
        if self.perturbation == "time":
            cand = nets.perturb(s, decoded, emb, self.algo.phi)
        else:
            cand = self.learner.perturb(every, self._all_members(decoded))[self.member].float()
        if self.ranker == "time":
            q = nets.q_value(s, cand, emb)
        else:
            q = self.learner.q_value(self._all_members(s), self._all_members(cand))[self.member]
        return cand[q.argmax()].numpy()


@torch.no_grad()
def candidate_errors(suite: Suite, algo: TiMe, learner: Any, tasks: list[int], states: int) -> list[dict[str, Any]]:
    """Per train task in `tasks`: G_S's and the whole candidate's squared error against the task's teacher
    (mean over `states` data states x one latent each), the teacher's candidate variance over latents
    (summed over dimensions) and the squared distance to the nearer neighbouring teacher's candidates."""
    c, k_all = algo.config, len(suite.train_tasks)
    rng = np.random.default_rng(episode_seed(algo.seed, 0, 998))
    gen = torch.Generator().manual_seed(algo.seed)
    rows = []
    for k in tasks:
        task = suite.train_tasks[k]
        batch = suite.train.task(task.index)
        emb = offline_embedding(algo, batch, rng).expand(states, -1)
        s = torch.as_tensor(batch.observations[rng.integers(0, len(batch), size=states)])
        z = torch.randn(states, algo.latent_dim, generator=gen).clamp(-c.phase1_latent_clip, c.phase1_latent_clip)
        every_s, every_z = every_member(s, k_all), every_member(z, k_all)
        decoded = learner.generate(every_s, every_z).float()  # (K, states, a): every teacher, same s and z
        candidates = learner.perturb(every_s, decoded).float()
        g_student = algo.nets.generate(s, z, emb)
        student = algo.nets.perturb(s, g_student, emb, algo.phi)
        sq = lambda x, y: float(((x - y) ** 2).sum(-1).mean())  # noqa: E731
        rows.append({"param": task.param, "g_error": sq(g_student, decoded[k]),
                     "candidate_error": sq(student, candidates[k]),
                     "teacher_spread": float(candidates[k].var(0).sum()),
                     "neighbour_gap": min((sq(candidates[j], candidates[k]) for j in (k - 1, k + 1)
                                             if 0 <= j < k_all), default=float("nan"))})
    return rows


def swap_report(suite: Suite, algo: TiMe, learner: Any, tasks: list[int], episodes: int) -> dict[str, Any]:
    """Normalized score of each `CELLS` policy on each train task in `tasks` (indices into train_tasks)."""
    rng = np.random.default_rng(episode_seed(algo.seed, 0, 997))
    rows = []
    for k in tasks:
        task = suite.train_tasks[k]
        batch = suite.train.task(task.index)
        emb = offline_embedding(algo, batch, rng)
        cells = {}
        for generator, perturbation, ranker in CELLS:
            agent = Mixed(algo, learner, k, emb, generator, perturbation, ranker)
            returns = []
            for e in range(episodes):
                env = suite.family.make(task.param, max_episode_steps=suite.card.episode_length)
                obs, _ = env.reset(seed=episode_seed(algo.seed, task.index, e))
                total, done = 0.0, False
                while not done:
                    obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
                    total, done = total + float(reward), terminated or truncated
                env.close()
                returns.append(total)
            cells[cell_name(generator, perturbation, ranker)] = round(
                float(normalize(np.mean(returns), task.ref_min, task.ref_max)), 3)
        rows.append({"param": task.param, "scores": cells})
        print(f"train {task.param:g}: " + "  ".join(f"{name} {v:.3f}" for name, v in cells.items()), flush=True)
    return {"suite": suite.name, "seed": algo.seed, "episodes": episodes, "tasks": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="halfcheetah-vel-lite")
    ap.add_argument("--checkpoints", type=Path, required=True, help="the --checkpoints folder of `eval --algo time`")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", default=None, help="comma-separated train-task positions (default: all)")
    ap.add_argument("--episodes", type=int, default=3, help="episodes per task and policy (0: errors only)")
    ap.add_argument("--states", type=int, default=512, help="data states per task for the candidate errors")
    ap.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = ap.parse_args()

    torch.set_num_threads(int(os.environ.get("BMRL_BENCH_THREADS", "1")))
    suite = load_suite(args.suite)
    try:
        algo = TiMe.load(checkpoint_of(args.checkpoints, TiMe.name, suite.name, args.seed))
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    if algo.config.phase1 != "bcq":
        raise SystemExit(f"error: this tiMe has a {algo.config.phase1} phase 1; candidates exist for bcq only")
    learner = algo.load_phase1(meta_train_data(suite))
    if learner is None:
        raise SystemExit("error: no phase-1 teachers in the cache; set BMRL_BENCH_CACHE as at training")
    tasks = list(range(len(suite.train_tasks))) if args.tasks is None else [int(t) for t in args.tasks.split(",")]
    errors = candidate_errors(suite, algo, learner, tasks, args.states)
    print("train task | G_S error | candidate error | teacher spread | neighbouring teacher")
    for e in errors:
        print(f"{e['param']:10.3f} | {e['g_error']:9.3f} | {e['candidate_error']:15.3f} | "
              f"{e['teacher_spread']:14.3f} | {e['neighbour_gap']:.3f}", flush=True)
    report = swap_report(suite, algo, learner, tasks, args.episodes) if args.episodes > 0 else {
        "suite": suite.name, "seed": algo.seed, "episodes": 0, "tasks": []}
    report["candidate_errors"] = errors
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(report, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
