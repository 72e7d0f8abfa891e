from __future__ import annotations

from pathlib import Path

import pytest

from bmrl_bench.errors import CardError, DatasetIdError, UnknownSuiteError
from bmrl_bench.suites import get_card, list_suites, parse_dataset_id

PACKAGED = ["halfcheetah-vel", "halfcheetah-vel-lite", "hopper-vel", "hopper-vel-lite", "pointgoal-3",
            "pointgoal-semicircle"]


def test_every_packaged_suite_card_loads() -> None:
    assert set(PACKAGED) <= set(list_suites())
    for name in PACKAGED:
        card = get_card(name)
        assert card.name == name
        assert card.dataset_id(0) == f"bmrl/{name}/task-00-v0"


def test_paper_scales() -> None:
    hc = get_card("halfcheetah-vel")
    assert len(hc.train_tasks) == 29 and hc.train_tasks[0] == 0.0 and hc.train_tasks[-1] == 1.5
    assert hc.test_tasks == [0.475, 1.075, 1.475]
    assert hc.episode_length == 200 and hc.behaviour.steps_per_task == 60_000
    hop = get_card("hopper-vel")
    assert len(hop.train_tasks) == 16 and hop.train_tasks[-1] == 2.35
    assert hop.test_tasks == [0.2, 1.1, 2.0]
    assert hop.episode_length == 1000 and hop.behaviour.steps_per_task == 1_000_000
    p3 = get_card("pointgoal-3")
    # Three goals splitting the semicircle into two equal arcs; test goals = train goals.
    assert p3.train_tasks == [0.0, 90.0, 180.0] and p3.test_tasks == p3.train_tasks
    semi = get_card("pointgoal-semicircle")
    assert not set(semi.test_tasks) & set(semi.train_tasks)


def test_task_numbering_train_first() -> None:
    card = get_card("pointgoal-semicircle")
    assert card.task_split(0) == "train"
    assert card.task_split(len(card.train_tasks)) == "test"
    assert card.task_param(len(card.train_tasks)) == card.test_tasks[0]


def test_unknown_suite_names_the_known_ones() -> None:
    with pytest.raises(UnknownSuiteError, match="unknown suite 'nope'.*pointgoal-3"):
        get_card("nope")


@pytest.mark.parametrize(
    ("dataset_id", "match"),
    [
        ("bmrl/pointgoal-3/task-00", "no version suffix"),
        ("pointgoal-3/task-00-v0", "not a bmrl-bench dataset id"),
        ("bmrl/pointgoal-3/task-0-v0", "not a bmrl-bench dataset id"),
        ("bmrl/pointgoal-3/task-00-v7", "version v0"),
        ("bmrl/pointgoal-3/task-42-v0", "tasks 0..5"),
    ],
)
def test_bad_dataset_ids(dataset_id: str, match: str) -> None:
    with pytest.raises(DatasetIdError, match=match):
        parse_dataset_id(dataset_id)


def test_unknown_suite_in_id() -> None:
    with pytest.raises(UnknownSuiteError):
        parse_dataset_id("bmrl/nope/task-00-v0")


def test_good_dataset_id() -> None:
    assert parse_dataset_id("bmrl/pointgoal-3/task-04-v0") == ("pointgoal-3", 4, 0)


def test_bad_card_gets_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (Path(__file__).parent / "cards" / "tiny-pointgoal.toml").read_text()
    (tmp_path / "broken.toml").write_text(text.replace('name = "tiny-pointgoal"', 'name = "broken"\nbogus = 1'))
    monkeypatch.setenv("BMRL_BENCH_CARDS", str(tmp_path))
    with pytest.raises(CardError, match="bogus") as e:
        get_card("broken")
    assert "\n" not in str(e.value)
