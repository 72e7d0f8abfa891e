"""Every number a suite's dataset card shows, gathered into one plain dict (what `card.json` holds).

Read from the built datasets (their Minari metadata and episodes, checksums recomputed)
and from the suite's published files (`datasets/<suite>.published.json`, and
`<suite>.<tier>.published.json` per other tier); nothing is recomputed by rolling a policy
out. Per-task facts (split, parameter, reference scores, return bounds) sit in `tasks`, shared
by every tier; per-dataset facts sit in `datasets`, one record per task and data tier that is
built here or published; `tiers` says of every tier whether it is built, only published, or neither.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bmrl_bench.builder.reference_scores import REFERENCE_SEED
from bmrl_bench.data import content_checksum, dataset_dir, read_episodes, read_metadata
from bmrl_bench.errors import BmrlError, DatasetCorruptError, DatasetMissingError
from bmrl_bench.families import Family, get_family, pointgoal_optimal_return
from bmrl_bench.published import published_path, read_published
from bmrl_bench.suites import SuiteCard
from bmrl_bench.tiers import DEFAULT_TIER, TIERS, build_command

CARD_FORMAT = 2  # bump when the layout of card.json changes (2: every tier, each with its status)
# What each tier's data is, in a sentence; the rollout tiers add their policy from the metadata.
TIER_TEXT = TIERS | {
    DEFAULT_TIER: "the paper's data: the whole replay buffer of one online SAC trained on the task "
                  "(a uniform-random warm-up, then the SAC's own actions as it learns)",
}
# A tier's status on the card: its datasets are read (built here), only its published file is
# known (published), or neither.
BUILT, PUBLISHED, NOT_BUILT = "built", "published, not built here", "not built"


def missing_datasets(card: SuiteCard, root: Path, tier: str = DEFAULT_TIER) -> list[str]:
    """Dataset ids of `card` in `tier` with no data or metadata file under `root` (a cheap presence check)."""
    return [d for d in card.dataset_ids(tier)
            if not all((dataset_dir(d, root) / "data" / f).is_file() for f in ("metadata.json", "main_data.hdf5"))]


def require_built(card: SuiteCard, root: Path) -> None:
    missing = missing_datasets(card, root)
    if missing:
        raise DatasetMissingError(
            f"suite {card.name} is not built in {root} ({len(missing)} of {card.num_tasks} datasets missing, "
            f"first {missing[0]}); run `bmrl-bench datasets build {card.name}`")


def _returns_summary(returns: np.ndarray) -> dict[str, float]:
    q1, median, q3 = np.percentile(returns, [25, 50, 75])
    return {"min": float(returns.min()), "q1": float(q1), "median": float(median), "mean": float(returns.mean()),
            "q3": float(q3), "max": float(returns.max()), "std": float(returns.std())}


def _act_dim(meta: dict[str, Any]) -> int:
    space = meta["action_space"]
    return int(np.prod((json.loads(space) if isinstance(space, str) else space)["shape"]))


def reference_sources(card: SuiteCard, family: Family, act_dim: int) -> dict[str, str]:
    """What each reference policy is, in one sentence (builder/reference_scores.py, collect.py)."""
    params = card.train_tasks + card.test_tasks
    optimal = ({"optimal": f"the task's analytic optimum: the best return any policy can get in {card.episode_length} "
                           "steps (no learned policy can beat it)"} if family.optimal_return is not None else {})
    return optimal | {
        "random": f"a uniform random policy (each of the {act_dim} action coordinates uniform in [-1, 1])",
        "behaviour": "the task's behaviour SAC (the final actor of the online SAC whose replay buffer is the "
                     "dataset), acting deterministically",
        "expert": f"the family-wide expert (one SAC that sees {family.param_name} in its observation, trained on "
                  f"tasks drawn uniformly from [{min(params):g}, {max(params):g}]), acting deterministically",
    }


def reference_rule(card: SuiteCard) -> dict[str, str]:
    """How ref_min and ref_max are made from the reference returns (reference_scores.reference_range)."""
    n = card.reference_episodes
    seeds = f"reset seeds {REFERENCE_SEED:,} + 1000 x task index + 0..{n - 1}, the same for every policy"
    learned = ("of whichever of the behaviour SAC and the family-wide expert scored higher on that task "
               f"(the mean return over the same {n} episodes)")
    if get_family(card.family).optimal_return is not None:
        ref_max = f"the task's analytic optimum (source: optimal); the return {learned} is shown beside it"
    else:
        ref_max = f"the return {learned}; its source is named per task"
    return {"ref_min": f"the mean return of the uniform random policy over {n} episodes ({seeds})", "ref_max": ref_max}


def _expert(card: SuiteCard, family: Family, metas: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The family-wide expert's record as the datasets' references were made with (None: not recorded)."""
    records = [m.get("bmrl_expert") for m in metas]
    if not records[0]:
        return None
    record = dict(records[0])
    params = card.train_tasks + card.test_tasks
    recipe = record.get("recipe", {})
    # Older records omit the check tasks: the mean-plateau rule checks `eval_tasks` evenly spaced ones.
    checks = record.get("check_params") or [float(p) for p in np.linspace(min(params), max(params),
                                                                           recipe.get("eval_tasks", 5))]
    bound = [family.return_bounds(card.episode_length, p)[1] for p in checks]
    optimum = ([pointgoal_optimal_return(p, card.episode_length) for p in checks]
               if family.name == "pointgoal" else None)
    return {
        "recipe": recipe,
        "steps": record.get("steps"),
        "converged": record.get("converged"),
        "stop_reason": record.get("stop_reason", ""),
        "curve": [[int(s), float(r)] for s, r in record.get("curve", [])],
        "task_curve": record.get("task_curve", []),
        "check_params": checks,
        "check_upper_bound": float(np.mean(bound)),  # mean over the check tasks, as the curve is
        "check_optimum": None if optimum is None else float(np.mean(optimum)),
        "same_for_every_dataset": all(r == records[0] for r in records),
        "card_recipe_matches": recipe == card.expert.model_dump(),
    }


def _read_checked(card: SuiteCard, dataset_id: str, tier: str, root: Path) -> tuple[dict[str, Any], Any]:
    """A dataset's metadata and episodes, its content checksum recomputed and matched."""
    meta = read_metadata(dataset_id, root)
    episodes = read_episodes(dataset_id, root)
    if content_checksum(episodes) != meta["bmrl_checksum"]:
        raise DatasetCorruptError(f"dataset {dataset_id} is damaged: its content checksum does not match its "
                                  f"metadata; rebuild it with {build_command(card.name, tier)}")
    return meta, episodes


def _built_record(tier: str, index: int, dataset_id: str, meta: dict[str, Any], episodes: Any,
                  published: dict[str, dict]) -> dict[str, Any]:
    pub = published.get(dataset_id)
    returns = episodes.episode_returns()
    return {
        "tier": tier,
        "task_index": index,
        "dataset_id": dataset_id,
        "built": True,
        "checksum": meta["bmrl_checksum"],
        "published_checksum": None if pub is None else pub["checksum"],
        "episodes": int(len(episodes.lengths)),
        "transitions": int(episodes.lengths.sum()),
        "returns": _returns_summary(returns),
        "episode_returns": [float(r) for r in returns],  # in collection order (replay: the behaviour learning curve)
    }


def _tier_datasets(card: SuiteCard, tier: str, root: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the tier's entry, its dataset records): every task's numbers where the tier is built here, the
    published checksums where only its published file is, nothing where neither."""
    published = read_published(card, tier)
    missing = missing_datasets(card, root, tier)
    entry: dict[str, Any] = {"tier": tier, "about": TIER_TEXT[tier], "policy": None,
                             "published_file": published_path(card, tier).name if published else None,
                             "missing": len(missing), "build_command": build_command(card.name, tier).strip("`")}
    if not missing:
        records = []
        for i, dataset_id in enumerate(card.dataset_ids(tier)):
            meta, episodes = _read_checked(card, dataset_id, tier, root)
            records.append(_built_record(tier, i, dataset_id, meta, episodes, published))
            if i == 0 and "bmrl_tier" in meta:  # what the roll-outs acted with (one policy for every task)
                entry["policy"] = meta["bmrl_tier"]["policy"].get("policy")
        return entry | {"status": BUILT}, records
    if not published:
        return entry | {"status": NOT_BUILT}, []
    return entry | {"status": PUBLISHED}, [
        {"tier": tier, "task_index": i, "dataset_id": d, "built": False, "checksum": None,
         "published_checksum": published[d]["checksum"] if d in published else None}
        for i, d in enumerate(card.dataset_ids(tier))]


def card_data(card: SuiteCard, root: Path) -> dict[str, Any]:
    """The card's content (JSON-ready); the replay tier must be built (`require_built`) and intact, every other
    tier is read where it is built."""
    family = get_family(card.family)
    require_built(card, root)
    published = read_published(card)
    metas = [read_metadata(d, root) for d in card.dataset_ids()]  # their episodes are checked with their tier
    tasks = []
    for i, meta in enumerate(metas):
        param = float(meta["bmrl_task_param"])
        pub = published.get(card.dataset_id(i))
        refs = meta.get("bmrl_reference_returns", {})
        tasks.append({
            "index": i,
            "split": meta["bmrl_split"],
            "param": param,
            "ref_min": float(meta["ref_min_score"]),
            "ref_max": float(meta["ref_max_score"]),
            "ref_min_source": "random",
            "ref_max_source": meta.get("bmrl_ref_max_source"),
            "reference_means": {k: float(np.mean(v)) for k, v in refs.items()},
            "reference_episodes": {k: len(v) for k, v in refs.items()},
            "published": None if pub is None else {"ref_min": float(pub["ref_min"]), "ref_max": float(pub["ref_max"]),
                                                   "checksum": pub["checksum"]},
            "return_bounds": list(family.return_bounds(card.episode_length, param)),
            "optimal_return": pointgoal_optimal_return(param, card.episode_length) if family.name == "pointgoal"
            else None,
        })
    tiers, datasets = [], []
    for tier in TIERS:
        entry, records = _tier_datasets(card, tier, root)
        tiers.append(entry)
        datasets += records
    behaviour = metas[0].get("bmrl_behaviour", {})
    first = metas[0]
    if any(m.get("bmrl_behaviour") != behaviour for m in metas):
        raise BmrlError(f"the datasets of {card.name} record different behaviour recipes; rebuild with "
                        f"`bmrl-bench datasets build {card.name} --force`")
    return {
        "format": CARD_FORMAT,
        "suite": {
            "name": card.name,
            "version": card.version,
            "family": family.name,
            "description": card.description,
            "env_id": family.env_id,
            "param_name": family.param_name,
            "param_unit": family.param_unit,
            "param_range": list(family.param_range),
            "episode_length": card.episode_length,
            "transitions_per_task": card.behaviour.steps_per_task,
            "num_train_tasks": len(card.train_tasks),
            "num_test_tasks": len(card.test_tasks),
            "reference_episodes": card.reference_episodes,
            "eval_episodes": card.eval_episodes,
            "published_file": published_path(card).name if published else None,
            "bmrl_version": first.get("bmrl_version"),
            "minari_version": first.get("minari_version"),
        },
        "tiers": tiers,
        "behaviour": {"recipe": behaviour,
                      "card_recipe_matches": {k: v for k, v in behaviour.items() if k != "algorithm"}
                      == card.behaviour.model_dump(exclude_none=True)},
        "reference_rule": reference_rule(card),
        "reference_sources": reference_sources(card, family, _act_dim(first)),
        "expert": _expert(card, family, metas),
        "tasks": tasks,
        "datasets": datasets,
    }
