"""Tier datasets (`random`, `medium`, `expert`, `medium-expert`): roll-outs of saved policies, no new training.

Each task of a rollout tier gets `behaviour.steps_per_task` transitions, as its `replay` dataset
has: whole episodes one after another, the last one truncated where the count is reached (as
the replay buffer's last episode is). The policies:

- `random`: uniform actions in [-1, 1]^act_dim, from `numpy.random.default_rng(episode seed)`.
- `expert`: the suite's family-wide expert (the one saved by the build, `builder/policies.py`),
  told the task, acting stochastically (its squashed Gaussian, drawn from a torch generator
  seeded with the episode seed), as D4RL's tiers sample their SAC policies.
- `medium`: the same expert's actor as it was at one of its checks (`builder/snapshots.py`):
  the check whose return is closest to `MEDIUM_FRACTION` (40%) of the way from the random
  policy's return on the same checks (same tasks, same env seeds) to the last check's return;
  the earlier check on a tie.
- `medium-expert`: the task's `medium` episodes, then its `expert` episodes: D4RL's
  concatenation, so twice the transitions of the other tiers.

Seeds: episode e of task i in tier t resets its env with
`1_000_000_000 * behaviour.seed + 70_000_000 + 10_000_000 * code(t) + 100_000 * i + e`
(code: random 0, medium 1, expert 2), which lies below the evaluation seeds (100M +) and above the
reference (50M +) and expert-check (60M +) ones. The same seed draws the episode's actions.
Every episode is reset with its own seed, recorded per episode by Minari (`episode.seed`) and as
runs `[[first seed, episodes], ...]` in the metadata (`bmrl_tier.episode_seeds`), so `datasets
verify --replay` replays any episode alone. Reference scores are the task's `replay` ones (one
normalizer per task, whatever the data): copied from its metadata with the expert record, so a
changed expert recipe makes the tier stale as it makes `replay` stale.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bmrl_bench.builder.expert import EXPERT_CHECK_SEED
from bmrl_bench.builder.policies import expert_files
from bmrl_bench.builder.reference_scores import BuildError
from bmrl_bench.builder.snapshots import CheckSnapshots, load_snapshots, save_snapshots
from bmrl_bench.builder.units import ExpertResult, ExpertUnit, UnitCache, run_build_unit
from bmrl_bench.builder.writer import References, write_task_dataset
from bmrl_bench.collect import evaluate_policy, random_policy, task_feature, with_task
from bmrl_bench.data import Episodes, content_checksum, dataset_status, read_episodes, read_metadata
from bmrl_bench.errors import BmrlError, ChecksumMismatchError
from bmrl_bench.executor import Executor, ProgressFn, Resources, UnitProgressFn, report
from bmrl_bench.families import Family, get_family
from bmrl_bench.runtime import torch_threads
from bmrl_bench.suites import SuiteCard
from bmrl_bench.tiers import DEFAULT_TIER, ROLLOUT_TIERS, TIERS, UNION_TIERS, check_tier

TIER_SEED = 70_000_000
TIER_SEED_BLOCK = 10_000_000  # per tier: 100 tasks x TASK_SEED_STRIDE
TASK_SEED_STRIDE = 100_000  # episodes of one task at most
CARD_SEED_STRIDE = 1_000_000_000  # per behaviour.seed
TIER_CODE = {"random": 0, "medium": 1, "expert": 2}
MEDIUM_FRACTION = 0.4
SEED_FORMULA = ("1_000_000_000 * behaviour.seed + 70_000_000 + 10_000_000 * code(tier) + 100_000 * task + episode "
                "(code: random 0, medium 1, expert 2)")


class MediumNeedsExpertError(BmrlError):
    """The saved expert has no check snapshots, so the medium tier has no policy."""


def first_seed(card: SuiteCard, tier: str, index: int) -> int:
    """The reset seed of episode 0 of task `index` in rollout tier `tier`; episode e gets this + e."""
    tier_block = TIER_SEED + TIER_SEED_BLOCK * TIER_CODE[tier]
    return CARD_SEED_STRIDE * card.behaviour.seed + tier_block + TASK_SEED_STRIDE * index


def episode_seeds(runs: list[list[int]]) -> list[int]:
    """Every episode's reset seed from the runs `[[first seed, episodes], ...]` a tier dataset records."""
    return [first + e for first, count in runs for e in range(count)]


# ---------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class TierPolicy:
    """What a rollout tier acts with: the random policy (`actor` None) or an expert actor (its weights)."""

    act_dim: int
    actor: dict[str, np.ndarray] | None = None  # `BatchedSAC.actor_state(0)` of the expert or a snapshot
    obs_dim: int = 0  # the actor's input: the env's observation and the task feature
    hidden: tuple[int, ...] = ()
    record: dict[str, Any] = field(default_factory=dict)  # what the metadata says about the policy


def _acting(policy: TierPolicy, family: Family, param: float) -> Callable[[int], Callable[[np.ndarray], np.ndarray]]:
    """`start(episode seed)` -> `act(obs)`: the tier's policy, its randomness seeded per episode."""
    if policy.actor is None:
        def start_random(seed: int) -> Callable[[np.ndarray], np.ndarray]:
            rng = np.random.default_rng(seed)
            return lambda obs: rng.uniform(-1.0, 1.0, size=policy.act_dim).astype(np.float32)
        return start_random
    import torch

    from bmrl_bench.learners.sac import BatchedSAC, SACConfig

    sac = BatchedSAC(1, policy.obs_dim, policy.act_dim, SACConfig(hidden=policy.hidden), seed=0)
    sac.actor.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in policy.actor.items()})
    feature = task_feature(family, param)

    def start_actor(seed: int) -> Callable[[np.ndarray], np.ndarray]:
        sac.generator.manual_seed(seed)
        return lambda obs: sac.act(with_task(np.asarray(obs), feature)[None], deterministic=False)[0].astype(np.float32)
    return start_actor


def rollout_task(card: SuiteCard, family: Family, index: int, tier: str, policy: TierPolicy,
                 progress: Callable[[int, int], None] | None = None) -> tuple[Episodes, int]:
    """`behaviour.steps_per_task` transitions of task `index` under `policy`, episode e reset with
    `first_seed + e`; (the episodes, the first seed)."""
    param = card.task_param(index)
    total = card.behaviour.steps_per_task
    seed0 = first_seed(card, tier, index)
    start = _acting(policy, family, param)
    env = family.make(param, max_episode_steps=card.episode_length)
    obs_parts: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    rewards: list[float] = []
    terms: list[bool] = []
    truncs: list[bool] = []
    lengths: list[int] = []
    steps = 0
    try:
        while steps < total:
            e = len(lengths)
            if e >= TASK_SEED_STRIDE:
                raise BuildError(f"{card.dataset_id(index, tier)}: more than {TASK_SEED_STRIDE} episodes; "
                                 "lower behaviour.steps_per_task in the suite card")
            obs, _ = env.reset(seed=seed0 + e)
            act = start(seed0 + e)
            episode_obs = [np.asarray(obs, dtype=np.float32)]
            n = 0
            while True:
                a = act(obs)
                obs, r, term, trunc, _ = env.step(a)
                steps += 1
                n += 1
                last = steps == total
                actions.append(a)
                rewards.append(float(r))
                terms.append(bool(term))
                truncs.append(bool(trunc) or (last and not term))  # Minari needs a closed last episode
                episode_obs.append(np.asarray(obs, dtype=np.float32))
                if term or trunc or last:
                    break
            obs_parts.append(np.stack(episode_obs))
            lengths.append(n)
            if progress is not None:
                progress(steps, total)
    finally:
        env.close()
    episodes = Episodes(
        observations=np.concatenate(obs_parts), actions=np.stack(actions).astype(np.float32),
        rewards=np.asarray(rewards, dtype=np.float64), terminations=np.asarray(terms, dtype=bool),
        truncations=np.asarray(truncs, dtype=bool), lengths=np.asarray(lengths, dtype=np.int64))
    return episodes, seed0


# ---------------------------------------------------------------------------- units


@dataclass(frozen=True)
class TierUnit:
    """Roll out one task of a rollout tier; the policy comes as the shared input."""

    card: SuiteCard
    tier: str
    index: int

    @property
    def label(self) -> str:
        return f"{self.tier} task {self.index:02d}"


@dataclass
class TierResult:
    episodes: Episodes
    first_seed: int
    seconds: float


def run_tier_unit(unit: TierUnit, shared: TierPolicy) -> TierResult:
    """One task's roll-outs; one torch thread, as every build unit (the same bytes on every executor)."""
    t0 = time.perf_counter()
    phase = f"{unit.tier} roll-outs"
    with torch_threads(1):
        episodes, seed0 = rollout_task(unit.card, get_family(unit.card.family), unit.index, unit.tier, shared,
                                       lambda done, total: report(done, total, "", phase=phase))
    return TierResult(episodes, seed0, time.perf_counter() - t0)


# ---------------------------------------------------------------------------- the medium snapshot


def random_check_return(family: Family, card: SuiteCard, check_params: list[float]) -> float:
    """The uniform random policy's return on the expert's checks: the same tasks, episodes and env seeds."""
    recipe, length = card.expert, card.episode_length
    act_dim = int(family.make(check_params[0]).action_space.shape[0])
    if recipe.stop_rule == "every-task":
        per_task = [np.mean(evaluate_policy(family, p, length, random_policy(act_dim, EXPERT_CHECK_SEED + 1000 * j),
                                            recipe.check_episodes, EXPERT_CHECK_SEED + 1000 * j))
                    for j, p in enumerate(check_params)]
    else:
        per_task = [evaluate_policy(family, p, length, random_policy(act_dim, EXPERT_CHECK_SEED + j), 1,
                                    EXPERT_CHECK_SEED + j)[0] for j, p in enumerate(check_params)]
    return float(np.mean(per_task))


def pick_medium(curve: list[tuple[int, float]], random_return: float,
                fraction: float = MEDIUM_FRACTION) -> tuple[int, float, float]:
    """(check step, its return, the target): the check closest to `fraction` of the way from
    `random_return` to the last check's return; the earliest on a tie."""
    final = curve[-1][1]
    target = random_return + fraction * (final - random_return)
    step, ret = min(curve, key=lambda c: (abs(c[1] - target), c[0]))
    return step, ret, target


def _medium_policy(card: SuiteCard, family: Family, snaps: CheckSnapshots, config: dict[str, Any]) -> TierPolicy:
    random_return = random_check_return(family, card, snaps.check_params)
    candidates = [(s, r) for s, r in snaps.curve if s in snaps.weights]
    step, ret, target = pick_medium(candidates, random_return)
    record = {"policy": f"the family-wide expert's actor at its check at step {step}", "check_step": step,
              "check_return": ret, "target_return": target, "random_check_return": random_return,
              "final_check_return": candidates[-1][1], "fraction": MEDIUM_FRACTION,
              "actions": "sampled (squashed Gaussian), torch generator seeded with the episode seed"}
    return TierPolicy(config["act_dim"], snaps.weights[step], config["obs_dim"], tuple(config["hidden"]), record)


def _retrain_for_snapshots(card: SuiteCard, root: Path, state: dict[str, np.ndarray], executor: Executor,
                           unit_progress: UnitProgressFn | None) -> None:
    """Train the expert again from its card (the same weights, bit for bit) to keep its check snapshots."""
    unit = ExpertUnit(card, checkpoint=UnitCache(card, root).expert_checkpoint())
    result: ExpertResult = executor.map(run_build_unit, [unit], name=f"build {card.name}: expert snapshots",
                                        labels=[unit.label], resources=Resources(num_cpus=1),
                                        progress=unit_progress)[0]
    if set(result.state) != set(state) or not all(np.array_equal(result.state[k], state[k]) for k in state):
        raise BuildError(f"re-training the expert of {card.name} gave other weights than the saved ones (another "
                         f"machine kind or code version); rebuild the suite with `bmrl-bench datasets build "
                         f"{card.name} --force`, then its tiers")
    save_snapshots(card, root, result.snapshots, result.training)


def tier_policy(card: SuiteCard, tier: str, root: Path, *, force: bool = False, executor: Executor | None = None,
                unit_progress: UnitProgressFn | None = None, units_run: list[str] | None = None) -> TierPolicy:
    """The policy of rollout tier `tier`, from what the suite's build saved (the replay tier must be built).

    `medium` with `force` and no snapshots re-trains the expert for them (`units_run` gets its label)."""
    family = get_family(card.family)
    files = expert_files(card, root)
    if files is None:
        raise BuildError(f"suite {card.name} has no expert saved from its card's recipe; "
                         f"run `bmrl-bench datasets build {card.name}` first")
    state, config = files
    if tier == "random":
        return TierPolicy(config["act_dim"], record={"policy": "uniform random in [-1, 1]^act_dim",
                                                     "actions": "numpy default_rng(episode seed).uniform"})
    if tier == "expert":
        actor = {k[len("actor."):]: v for k, v in state.items() if k.startswith("actor.")}
        record = {"policy": f"the family-wide expert ({config['training']['steps']} env steps)",
                  "actions": "sampled (squashed Gaussian), torch generator seeded with the episode seed"}
        return TierPolicy(config["act_dim"], actor, config["obs_dim"], tuple(config["hidden"]), record)
    snaps = load_snapshots(card, root)
    if snaps is None or not snaps.weights:
        if not force or executor is None:
            raise MediumNeedsExpertError(
                f"the expert of {card.name} was saved without its check snapshots (built before they were kept), so "
                f"the medium tier has no policy; re-train it with `bmrl-bench datasets build {card.name} --tier medium "
                "--force` (the same weights, bit for bit, plus its snapshots)")
        _retrain_for_snapshots(card, root, state, executor, unit_progress)
        if units_run is not None:
            units_run.append(ExpertUnit.label)
        snaps = load_snapshots(card, root)
        assert snaps is not None
    return _medium_policy(card, family, snaps, config)


# ---------------------------------------------------------------------------- writing


def write_tier_dataset(card: SuiteCard, family: Family, index: int, tier: str, episodes: Episodes,
                       seed_runs: list[list[int]], policy_record: dict[str, Any], root: Path) -> Path:
    """Publish task `index` of `tier`: its episodes (each with its reset seed) and the replay tier's references."""
    references = References.recorded(read_metadata(card.dataset_id(index), root))
    tier_metadata = {
        "bmrl_tier": {"name": tier, "description": TIERS[tier], "episode_seeds": seed_runs,
                      "seed_formula": SEED_FORMULA, "policy": policy_record},
        "bmrl_behaviour": {"algorithm": f"{tier} tier", "steps": int(episodes.lengths.sum())},
    }
    return write_task_dataset(card, family, index, tier, episodes, references, tier_metadata, root,
                              seeds=episode_seeds(seed_runs))


def _read_checked(card: SuiteCard, index: int, tier: str, root: Path) -> tuple[Episodes, list[list[int]]]:
    """A built task of `tier`, its checksum verified, with its seed runs."""
    dataset_id = card.dataset_id(index, tier)
    meta = read_metadata(dataset_id, root)
    episodes = read_episodes(dataset_id, root)
    if content_checksum(episodes) != meta["bmrl_checksum"]:
        raise ChecksumMismatchError(f"dataset {dataset_id} does not match its checksum; rebuild it with "
                                    f"`bmrl-bench datasets build {card.name} --tier {tier} --force`")
    return episodes, [list(run) for run in meta["bmrl_tier"]["episode_seeds"]]


def concatenate(parts: list[Episodes]) -> Episodes:
    return Episodes(**{k: np.concatenate([getattr(p, k) for p in parts])
                       for k in ("observations", "actions", "rewards", "terminations", "truncations", "lengths")})


# ---------------------------------------------------------------------------- the build


@dataclass
class TierBuild:
    """What `build_tier` did: the dataset ids it wrote and skipped, seconds per phase."""

    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    units_run: list[str] = field(default_factory=list)


def build_tier(card: SuiteCard, tier: str, root: Path, *, force: bool, executor: Executor,
               progress: ProgressFn | None, unit_progress: UnitProgressFn | None) -> TierBuild:
    """Write the missing or damaged datasets of `tier` (all of them with `force`); the replay tier must be built."""
    check_tier(tier)
    assert tier != DEFAULT_TIER, "the replay tier is builder.pipeline's"
    family = get_family(card.family)
    out = TierBuild()
    todo = [i for i in range(card.num_tasks) if force or dataset_status(card, i, root, tier) != "ok"]
    out.skipped = [card.dataset_id(i, tier) for i in range(card.num_tasks) if i not in todo]
    if tier in UNION_TIERS:
        for part in UNION_TIERS[tier]:  # each part as it is (built if missing), then their union
            sub = build_tier(card, part, root, force=False, executor=executor, progress=progress,
                             unit_progress=unit_progress)
            out.units_run += sub.units_run
            for k, v in sub.seconds.items():
                out.seconds[f"{part} {k}"] = v
        t0 = time.perf_counter()
        for index in todo:
            read = [_read_checked(card, index, part, root) for part in UNION_TIERS[tier]]
            record = {"policy": " then ".join(UNION_TIERS[tier]) + " (D4RL's concatenation)",
                      "parts": {part: read_metadata(card.dataset_id(index, part), root)["bmrl_tier"]["policy"]
                                for part in UNION_TIERS[tier]}}
            write_tier_dataset(card, family, index, tier, concatenate([e for e, _ in read]),
                               [run for _, runs in read for run in runs], record, root)
            out.built.append(card.dataset_id(index, tier))
        out.seconds["write"] = time.perf_counter() - t0
        return out
    assert tier in ROLLOUT_TIERS
    if not todo:
        return out
    t0 = time.perf_counter()
    policy = tier_policy(card, tier, root, force=force, executor=executor, unit_progress=unit_progress,
                         units_run=out.units_run)
    out.seconds["policy"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    units = [TierUnit(card, tier, i) for i in todo]
    results: list[TierResult] = executor.map(
        run_tier_unit, units, name=f"build {card.name}: {tier} tier", labels=[u.label for u in units],
        resources=Resources(num_cpus=1), shared=policy, progress=unit_progress,
        hint=f"re-run `bmrl-bench datasets build {card.name} --tier {tier}` to resume")
    out.units_run += [u.label for u in units]
    out.seconds["roll-outs"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for n, (index, result) in enumerate(zip(todo, results)):
        runs = [[result.first_seed, len(result.episodes.lengths)]]
        write_tier_dataset(card, family, index, tier, result.episodes, runs, policy.record, root)
        out.built.append(card.dataset_id(index, tier))
        if progress is not None:
            returns = result.episodes.episode_returns()
            progress("write datasets", n + 1, len(todo),
                     f"{card.dataset_id(index, tier)} {len(returns)} episodes, mean return {np.mean(returns):.1f}")
    out.seconds["write"] = time.perf_counter() - t0
    return out
