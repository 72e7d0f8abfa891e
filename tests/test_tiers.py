"""Dataset tiers: ids, loading, building from saved policies, bad inputs, results and the board."""
from __future__ import annotations

from pathlib import Path

import pytest

from bmrl_bench.data import load_suite
from bmrl_bench.errors import DatasetIdError
from bmrl_bench.suites import dataset_tier, get_card, parse_dataset_id
from bmrl_bench.tiers import TIERS, TierNotBuiltError, UnknownTierError

TINY = "tiny-pointgoal"


# ---------------------------------------------------------------------------- ids


def test_replay_ids_are_todays_and_every_tier_has_its_own() -> None:
    card = get_card(TINY)
    assert card.dataset_id(1) == card.dataset_id(1, "replay") == "bmrl/tiny-pointgoal/task-01-v0"
    assert card.dataset_ids() == [f"bmrl/tiny-pointgoal/task-{i:02d}-v0" for i in range(3)]
    assert card.dataset_id(2, "expert") == "bmrl/tiny-pointgoal/task-02-expert-v0"
    assert card.dataset_id(0, "medium-expert") == "bmrl/tiny-pointgoal/task-00-medium-expert-v0"
    ids = {t: card.dataset_ids(t) for t in TIERS}
    assert len({i for v in ids.values() for i in v}) == len(TIERS) * card.num_tasks  # no two tiers share an id


def test_every_tier_id_is_a_minari_id_in_the_suites_namespace() -> None:
    from minari.dataset.minari_dataset import parse_dataset_id as minari_parse

    card = get_card(TINY)
    for tier in TIERS:
        dataset_id = card.dataset_id(1, tier)
        namespace, name, version = minari_parse(dataset_id)
        assert namespace == "bmrl/tiny-pointgoal" and version == 0
        assert name == ("task-01" if tier == "replay" else f"task-01-{tier}")
        assert parse_dataset_id(dataset_id) == (TINY, 1, 0)
        assert dataset_tier(dataset_id) == tier


def test_bad_tiers_and_ids_are_one_line() -> None:
    card = get_card(TINY)
    with pytest.raises(UnknownTierError) as e:
        card.dataset_id(0, "mediocre")
    assert str(e.value) == "unknown tier 'mediocre'; known tiers: replay, random, medium, expert, medium-expert"
    with pytest.raises(DatasetIdError):
        parse_dataset_id("bmrl/tiny-pointgoal/task-00-mediocre-v0")


# ---------------------------------------------------------------------------- loading


def test_load_suite_refuses_an_unknown_tier_and_an_unbuilt_one_before_loading(tiny_suite: Path) -> None:
    assert load_suite(TINY).tier == "replay"
    with pytest.raises(UnknownTierError, match="known tiers: replay, random, medium, expert, medium-expert"):
        load_suite(TINY, tier="mediocre")
    with pytest.raises(TierNotBuiltError) as e:
        load_suite(TINY, tier="expert")
    assert str(e.value) == ("suite tiny-pointgoal has not built its expert tier here (3 of 3 datasets missing); "
                            "run `bmrl-bench datasets build tiny-pointgoal --tier expert`")
    assert "\n" not in str(e.value)
