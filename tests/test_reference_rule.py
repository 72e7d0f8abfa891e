"""ref_max's rule: the analytic optimum where a family knows it (PointGoal), else the better learned policy;
an old build's references are rewritten under the new rule without collecting its data again."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from bmrl_bench import data as data_mod
from bmrl_bench.builder import STALE_REFERENCE_RULE, BuildError, build_suite, verify_suite
from bmrl_bench.builder.reference_scores import reference_range
from bmrl_bench.data import STALE_TIER_REFERENCES, dataset_dir, dataset_status, read_metadata
from bmrl_bench.families import FAMILIES, get_family, pointgoal_optimal_return
from bmrl_bench.suites import get_card

TINY = "tiny-pointgoal"
REFS = {"random": [-200.0, -180.0], "behaviour": [-60.0, -50.0], "expert": [-70.0, -58.0]}


def test_only_pointgoal_has_an_analytic_optimum() -> None:
    assert FAMILIES["pointgoal"].optimal_return is pointgoal_optimal_return
    assert FAMILIES["pointgoal"].ref_max_rule == "optimal"
    for name in ("halfcheetah-vel", "hopper-vel"):
        assert FAMILIES[name].optimal_return is None and FAMILIES[name].ref_max_rule == "learned"


def test_reference_range_takes_the_optimum_and_keeps_the_best_learned_policy() -> None:
    # No optimum (HalfCheetah, Hopper): as before, the better learned policy.
    assert tuple(reference_range("d", REFS)) == (-190.0, -55.0, "behaviour", "behaviour", -55.0)
    assert reference_range("d", REFS | {"expert": [-40.0, -44.0]})[1:3] == (-42.0, "expert")
    # With one: ref_max is the optimum, the better learned policy is recorded beside it.
    assert tuple(reference_range("d", REFS, -45.0)) == (-190.0, -45.0, "optimal", "behaviour", -55.0)
    # A build whose learned policies never beat the random one still fails, optimum or not.
    with pytest.raises(BuildError, match="no learned policy beat the random one"):
        reference_range("d", REFS | {"behaviour": [-300.0], "expert": [-250.0]}, -45.0)


def test_pointgoal_ref_max_is_the_analytic_optimum(tiny_suite: Path) -> None:
    card = get_card(TINY)
    for i in range(card.num_tasks):
        meta = read_metadata(card.dataset_id(i))
        assert meta["ref_max_score"] == pointgoal_optimal_return(card.task_param(i), card.episode_length)
        assert (meta["bmrl_ref_max_source"], meta["bmrl_ref_max_rule"]) == ("optimal", "optimal")
        refs = meta["bmrl_reference_returns"]
        learned = meta["bmrl_ref_max_learned"]
        assert learned["return"] == max(np.mean(refs["behaviour"]), np.mean(refs["expert"]))
        assert learned["return"] == pytest.approx(np.mean(refs[learned["source"]]))
        assert meta["ref_min_score"] == pytest.approx(np.mean(refs["random"]))
        # No learned policy beats the optimum (float32 positions: within 1e-4).
        assert learned["return"] <= meta["ref_max_score"] + 1e-4


def test_the_rule_of_old_datasets_is_learned(tiny_suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Metadata without a rule was built under "learned": fine for a family without an optimum, stale with one."""
    card = get_card(TINY)
    _as_an_old_build(card.dataset_id(0))
    assert dataset_status(card, 0, tiny_suite) == STALE_REFERENCE_RULE
    assert dataset_status(card, 1, tiny_suite) == "ok"
    learned = dataclasses.replace(get_family("pointgoal"), optimal_return=None)
    monkeypatch.setattr(data_mod, "get_family", lambda name: learned)
    assert dataset_status(card, 0, tiny_suite) == "ok"
    assert dataset_status(card, 1, tiny_suite) == STALE_REFERENCE_RULE  # built under "optimal"


def test_an_old_build_gets_the_optimum_without_collecting_again(tiny_suite: Path) -> None:
    card = get_card(TINY)
    ids = [card.dataset_id(i) for i in range(card.num_tasks)]
    tier_ids = [card.dataset_id(i, "random") for i in range(card.num_tasks)]
    build_suite(TINY, tier="random")
    new = {d: read_metadata(d) for d in ids + tier_ids}
    for d in ids + tier_ids:  # every dataset as the build before the rule wrote it
        _as_an_old_build(d)
    old = {d: read_metadata(d) for d in ids + tier_ids}
    assert all(old[d]["ref_max_score"] < new[d]["ref_max_score"] for d in ids)
    assert {row.status for row in verify_suite(TINY)} == {STALE_REFERENCE_RULE}

    report = build_suite(TINY)
    assert report.units_run == [] and report.built == ids  # no expert, no behaviour shard: references only
    assert {row.status for row in verify_suite(TINY)} == {"ok"}
    for d in ids:
        meta = read_metadata(d)
        assert meta["bmrl_checksum"] == old[d]["bmrl_checksum"]
        assert meta["bmrl_reference_returns"] == old[d]["bmrl_reference_returns"]  # the same policies, same seeds
        for key in ("ref_min_score", "ref_max_score", "bmrl_ref_max_source", "bmrl_ref_max_rule",
                    "bmrl_ref_max_learned"):
            assert meta[key] == new[d][key]
    # The tier datasets carry the replay references: they follow with a tier build, same roll-outs.
    assert {dataset_status(card, i, tiny_suite, "random") for i in range(card.num_tasks)} == {STALE_TIER_REFERENCES}
    assert build_suite(TINY, tier="random").built == tier_ids
    for d in tier_ids:
        meta = read_metadata(d)
        assert meta["bmrl_checksum"] == old[d]["bmrl_checksum"]
        for key in ("ref_min_score", "ref_max_score", "bmrl_ref_max_source", "bmrl_ref_max_rule",
                    "bmrl_ref_max_learned"):
            assert meta[key] == new[d][key]


def _as_an_old_build(dataset_id: str) -> None:
    """Rewrite a dataset's metadata as a build before the ref_max rule wrote it: ref_max the better learned policy."""
    path = dataset_dir(dataset_id) / "data" / "metadata.json"
    meta = json.loads(path.read_text())
    learned = meta.pop("bmrl_ref_max_learned")
    del meta["bmrl_ref_max_rule"]
    meta["ref_max_score"], meta["bmrl_ref_max_source"] = learned["return"], learned["source"]
    path.write_text(json.dumps(meta))
