"""Dataset tiers (data quality, in the D4RL / Minari sense) and their place in a dataset id.

| tier | what a task's dataset holds |
|---|---|
| `replay` | the behaviour SAC's whole replay buffer (the tiMe paper's data; the default) |
| `random` | the uniform random policy |
| `medium` | a snapshot of the family-wide expert at about 40% of the way from random to its final return |
| `expert` | the family-wide expert (the one behind `ref_max`) acting on the task |
| `medium-expert` | `medium` then `expert`, concatenated as D4RL does (twice the transitions) |

Ids: the tier is a suffix of the dataset name, `bmrl/<suite>/task-<ii>-<tier>-v<version>`, and
`replay` keeps today's `bmrl/<suite>/task-<ii>-v<version>`, so every published id, checksum and
result keeps its meaning. Minari 0.5.4 parses an id as `(namespace/)name(-vN)`
(`minari.dataset.minari_dataset.parse_dataset_id`): the namespace stays `bmrl/<suite>` and the
name becomes `task-<ii>-<tier>`, as Minari names its own tiers (`mujoco/hopper/expert-v0`,
`D4RL/door/expert-v2`). A suffix of the suite (`bmrl/<suite>-expert/...`) was not chosen: suite
names hold hyphens, so `pointgoal-3-expert` could be a suite of its own, and a suite's tiers
would no longer share one namespace folder (its expert, its namespace metadata).

This module only names things: it imports no data, Minari or torch.
"""
from __future__ import annotations

from bmrl_bench.errors import BmrlError, DatasetMissingError

DEFAULT_TIER = "replay"  # as `bmrl_bench.results.DEFAULT_TIER`: a file or command without a tier means it
TIERS: dict[str, str] = {
    "replay": "the behaviour SAC's whole replay buffer (the paper's data)",
    "random": "the uniform random policy",
    "medium": "a snapshot of the family-wide expert at about 40% of the way from random to its final return",
    "expert": "the family-wide expert",
    "medium-expert": "medium then expert, concatenated (D4RL's medium-expert: twice the transitions)",
}
# Tiers whose episodes are roll-outs of one policy (medium-expert is made of two of them).
ROLLOUT_TIERS = ("random", "medium", "expert")
UNION_TIERS: dict[str, tuple[str, ...]] = {"medium-expert": ("medium", "expert")}
TIER_ALTERNATIVES = "|".join(TIERS)  # for the id pattern: longer names need no ordering (the -v anchors them)


class UnknownTierError(BmrlError):
    pass


class TierNotBuiltError(DatasetMissingError):
    """A tier the suite has not built here (its datasets are missing)."""


def check_tier(tier: str) -> str:
    """`tier` if it is a known tier; else one line naming the known ones."""
    if tier not in TIERS:
        raise UnknownTierError(f"unknown tier '{tier}'; known tiers: {', '.join(TIERS)}")
    return tier


def tier_suffix(tier: str) -> str:
    """What the tier adds to a dataset name: nothing for `replay`, `-<tier>` for the others."""
    return "" if check_tier(tier) == DEFAULT_TIER else f"-{tier}"


def build_command(suite: str, tier: str = DEFAULT_TIER) -> str:
    return f"`bmrl-bench datasets build {suite}" + ("" if tier == DEFAULT_TIER else f" --tier {tier}") + "`"


def not_built(suite: str, tier: str, missing: int, total: int) -> TierNotBuiltError:
    return TierNotBuiltError(
        f"suite {suite} has not built its {tier} tier here ({missing} of {total} datasets missing); "
        f"run {build_command(suite, tier)}"
    )
