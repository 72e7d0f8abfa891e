"""Reference returns of one task, and the score range (`ref_min_score`, `ref_max_score`) they give.

Three policies run `card.reference_episodes` episodes each on the task, on the same
episode seeds: a uniform random policy (`ref_min`), the task's behaviour SAC and the
family-wide expert. `ref_max` is the task's analytic optimum where the family knows it
(`Family.optimal_return`: PointGoal; no learned policy can beat it, source "optimal"), else
the better of the two learned policies (`Family.ref_max_rule`). The learned policies'
returns are recorded beside it either way.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bmrl_bench.builder.policies import family_obs_dim
from bmrl_bench.collect import evaluate_policy, expert_policy, random_policy
from bmrl_bench.errors import BmrlError
from bmrl_bench.families import Family
from bmrl_bench.suites import SuiteCard

# Reference-score episodes use their own seed range, disjoint from training and evaluation.
REFERENCE_SEED = 50_000_000


class BuildError(BmrlError):
    pass


def reference_returns(
    card: SuiteCard, family: Family, index: int, actor_state: dict[str, np.ndarray], expert: object, act_dim: int
) -> dict[str, list[float]]:
    """{"random", "behaviour", "expert"}: each policy's episode returns on task `index`."""
    import torch

    from bmrl_bench.learners.sac import load_member_actor

    param = card.task_param(index)
    n, seed = card.reference_episodes, REFERENCE_SEED + 1000 * index
    state = {k: torch.from_numpy(np.array(v)) for k, v in actor_state.items()}
    behaviour = load_member_actor(state, family_obs_dim(family), act_dim, card.behaviour.hidden)
    length = card.episode_length
    return {
        "random": evaluate_policy(family, param, length, random_policy(act_dim, seed), n, seed).tolist(),
        "behaviour": evaluate_policy(family, param, length, behaviour, n, seed).tolist(),
        "expert": evaluate_policy(family, param, length, expert_policy(expert, family, param), n, seed).tolist(),
    }


class ReferenceRange(NamedTuple):
    ref_min: float
    ref_max: float
    source: str  # where ref_max comes from: "optimal", "behaviour" or "expert"
    learned_source: str  # the better learned policy ("behaviour" or "expert") ...
    learned_max: float  # ... and its mean return (= ref_max unless the source is "optimal")


def reference_range(dataset_id: str, refs: dict[str, list[float]], optimum: float | None = None) -> ReferenceRange:
    """The task's score range: ref_max is `optimum` if given (source "optimal"), else the better learned policy's
    mean return. BuildError if no learned policy beat the random one (its data would teach nothing)."""
    ref_min = float(np.mean(refs["random"]))
    learned_source = max(("behaviour", "expert"), key=lambda k: float(np.mean(refs[k])))
    learned_max = float(np.mean(refs[learned_source]))
    if not learned_max > ref_min:
        raise BuildError(
            f"{dataset_id}: no learned policy beat the random one (best {learned_max:.2f} <= ref_min {ref_min:.2f}); "
            "raise behaviour.steps_per_task or expert.max_steps in the suite card"
        )
    if optimum is None:
        return ReferenceRange(ref_min, learned_max, learned_source, learned_source, learned_max)
    return ReferenceRange(ref_min, float(optimum), "optimal", learned_source, learned_max)
