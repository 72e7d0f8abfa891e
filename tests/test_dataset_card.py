"""`bmrl-bench datasets card`: the page shows card.json's numbers, which are the datasets' and the published ones."""
from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bmrl_bench import dataset_card
from bmrl_bench.data import read_episodes, read_metadata
from bmrl_bench.dataset_card import plots
from bmrl_bench.dataset_card.page import num
from bmrl_bench.families import pointgoal_optimal_return
from bmrl_bench.published import card_page, publish_local_build, read_published, suite_reference
from bmrl_bench.suites import get_card
from tests.conftest import TESTS, TINY
from tests.test_leaderboard_page import Browser, chromedriver, chromium

PNGS = ("tasks.png", "expert.png", "returns.png", "behaviour.png")


@pytest.fixture
def cards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the tiny card, so a test may publish it or change its description."""
    folder = tmp_path / "cards"
    folder.mkdir()
    shutil.copy(TESTS / "cards" / f"{TINY}.toml", folder)
    monkeypatch.setenv("BMRL_BENCH_CARDS", str(folder))
    return folder


def write(out: Path) -> tuple[dict, str]:
    dataset_card.write_card(suite=TINY, out=out)
    return json.loads((out / "card.json").read_text()), (out / "index.html").read_text()


def test_the_card_holds_the_published_and_metadata_numbers(tiny_suite: Path, cards: Path, tmp_path: Path) -> None:
    publish_local_build(TINY)
    card = get_card(TINY)
    published = read_published(card)
    data, page = write(tmp_path / "card")

    assert sorted(p.name for p in (tmp_path / "card").iterdir()) == sorted(["card.json", "index.html", *PNGS])
    assert data["suite"]["name"] == TINY and data["suite"]["published_file"] == f"{TINY}.published.json"
    assert [t["split"] for t in data["tasks"]] == ["train", "train", "test"]
    assert [t["param"] for t in data["tasks"]] == [0.0, 180.0, 90.0]
    assert (data["suite"]["num_train_tasks"], data["suite"]["num_test_tasks"]) == (2, 1)
    assert [d["tier"] for d in data["datasets"]] == ["replay"] * 3
    for t, d in zip(data["tasks"], data["datasets"]):
        dataset_id = card.dataset_id(t["index"])
        meta = read_metadata(dataset_id)
        returns = read_episodes(dataset_id).episode_returns()
        # the reference scores are exactly the metadata's and the published file's
        assert (t["ref_min"], t["ref_max"]) == (meta["ref_min_score"], meta["ref_max_score"])
        assert (t["published"]["ref_min"], t["published"]["ref_max"]) == (published[dataset_id]["ref_min"],
                                                                          published[dataset_id]["ref_max"])
        assert t["ref_max_source"] == meta["bmrl_ref_max_source"]
        assert t["ref_min"] == pytest.approx(np.mean(meta["bmrl_reference_returns"]["random"]), abs=1e-9)
        assert t["optimal_return"] == pointgoal_optimal_return(t["param"], 20)
        assert d["dataset_id"] == dataset_id
        assert d["checksum"] == d["published_checksum"] == meta["bmrl_checksum"]
        assert d["episode_returns"] == returns.tolist()
        assert d["episode_returns"] == pytest.approx(meta["bmrl_behaviour_episode_returns"], abs=1e-9)  # summed apart
        assert (d["episodes"], d["transitions"]) == (len(returns), card.behaviour.steps_per_task)
        assert d["returns"]["mean"] == pytest.approx(returns.mean())
        # ... and the page shows them
        row = (f"<td>{num(t['ref_min'])}</td><td>{num(t['ref_max'])}</td>"
               f"<td>{html.escape(t['ref_max_source'])}</td>")
        assert row in page
        assert f"<code>{dataset_id}</code>" in page and f"<code>{d['checksum']}</code>" in page
        assert f"<td>{num(d['returns']['median'])}</td>" in page
    assert page.count("= published") == 3 and page.count("<td>same</td>") == 3
    # one row per task in each of the four task tables (tasks, datasets, references, returns)
    assert page.count('<tr class="train">') == 4 * 2 and page.count('<tr class="test">') == 4 * 1

    expert = read_metadata(card.dataset_id(0))["bmrl_expert"]
    assert data["expert"]["curve"] == [list(c) for c in expert["curve"]]
    assert data["expert"]["recipe"] == card.expert.model_dump()
    for step, ret in expert["curve"]:
        assert f"<tr><td>{step:,}</td><td>{num(ret)}</td></tr>" in page
    assert data["behaviour"]["recipe"]["steps_per_task"] == card.behaviour.steps_per_task
    for name in PNGS:
        assert f'<img src="{name}"' in page


def test_the_card_shows_every_tier_built_or_published_and_names_those_not_built(
        tiny_suite: Path, cards: Path, tmp_path: Path) -> None:
    from bmrl_bench.builder import build_suite

    card = get_card(TINY)
    for tier in ("random", "expert"):
        build_suite(TINY, tier=tier)
    publish_local_build(TINY, "random")
    publish_local_build(TINY, "expert")
    shutil.rmtree(tiny_suite / card.dataset_id(1, "expert"))  # expert: published, no longer built here
    data, page = write(tmp_path / "card")

    status = {t["tier"]: t["status"] for t in data["tiers"]}
    assert status == {"replay": "built", "random": "built", "medium": "not built",
                      "expert": "published, not built here", "medium-expert": "not built"}
    tiers = {t["tier"]: t for t in data["tiers"]}
    assert tiers["random"]["published_file"] == f"{TINY}.random.published.json"
    assert tiers["random"]["policy"] == read_metadata(card.dataset_id(0, "random"))["bmrl_tier"]["policy"]["policy"]
    assert (tiers["expert"]["missing"], tiers["medium"]["missing"]) == (1, 3)
    assert [(d["tier"], d["task_index"]) for d in data["datasets"]] == [
        (t, i) for t in ("replay", "random", "expert") for i in range(3)]
    published = read_published(card, "random")
    for d in (d for d in data["datasets"] if d["tier"] == "random"):
        episodes = read_episodes(d["dataset_id"])
        assert d["dataset_id"] == card.dataset_id(d["task_index"], "random")
        assert d["checksum"] == d["published_checksum"] == published[d["dataset_id"]]["checksum"]
        assert (d["episodes"], d["transitions"]) == (len(episodes.lengths), card.behaviour.steps_per_task)
        assert d["episode_returns"] == episodes.episode_returns().tolist()
        assert f"<td>{num(d['returns']['median'])}</td>" in page
    expert_published = read_published(card, "expert")
    for d in (d for d in data["datasets"] if d["tier"] == "expert"):
        assert not d["built"] and "episodes" not in d
        assert d["published_checksum"] == expert_published[d["dataset_id"]]["checksum"]
        assert f"<code>{d['dataset_id']}</code>" in page and f"<code>{d['published_checksum']}</code>" in page

    # one returns plot per tier built here, the same y range on each
    assert data["figures"]["returns"] == "returns.png" and data["figures"]["returns-random"] == "returns-random.png"
    assert not any(k.startswith(("returns-expert", "returns-medium")) for k in data["figures"])
    assert sorted(p.name for p in (tmp_path / "card").iterdir()) == sorted(["card.json", "index.html", *PNGS,
                                                                            "returns-random.png"])
    assert '<img src="returns-random.png"' in page
    assert 'id="tiers-not-built">Not built: medium, medium-expert.</p>' in page
    assert "<code>bmrl-bench datasets build tiny-pointgoal --tier medium</code>" in page
    assert page.count("published, not built here") == 1 + 3  # the tier's line and its 3 rows
    # rows: tasks and references (replay), datasets (3 tiers), returns (the 2 tiers built)
    assert page.count('<tr class="train">') == (2 + 3 + 2) * 2 and page.count('<tr class="test">') == 2 + 3 + 2


def test_pngs_are_valid_and_small(tiny_suite: Path, tmp_path: Path) -> None:
    from PIL import Image

    write(tmp_path / "card")
    for name in PNGS:
        path = tmp_path / "card" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as im:
            im.verify()
        assert path.stat().st_size < 150_000


def test_a_published_file_that_differs_is_shown(tiny_suite: Path, cards: Path, tmp_path: Path) -> None:
    path = publish_local_build(TINY)
    raw = json.loads(path.read_text())
    first = get_card(TINY).dataset_id(0)
    raw["datasets"][first].update(ref_max=-1.5, checksum="0" * 64)
    path.write_text(json.dumps(raw))
    data, page = write(tmp_path / "card")
    assert data["tasks"][0]["published"]["ref_max"] == -1.5
    assert data["tasks"][0]["ref_max"] != -1.5  # the card's own numbers stay the build's
    assert f"<td>{num(data['tasks'][0]['ref_min'])} / -1.50</td>" in page
    assert page.count("DIFFERS from published") == 1


def test_names_and_descriptions_are_escaped(tiny_suite: Path, cards: Path, tmp_path: Path) -> None:
    toml = cards / f"{TINY}.toml"
    nasty = '<script>alert("x")</script> & <b>co</b>'
    toml.write_text(toml.read_text().replace('description = "Test-only', f"description = '{nasty} Test-only", 1)
                    .replace('tiny SAC."', "tiny SAC.'", 1))
    data, page = write(tmp_path / "card")
    assert data["suite"]["description"].startswith(nasty)
    assert html.escape(nasty) in page
    assert "<script>" not in page and "<b>co</b>" not in page


def test_a_build_without_an_expert_record_says_so(tiny_suite: Path, tmp_path: Path) -> None:
    for dataset_id in get_card(TINY).dataset_ids():
        path = tiny_suite / dataset_id / "data" / "metadata.json"
        meta = json.loads(path.read_text())
        del meta["bmrl_expert"]
        path.write_text(json.dumps(meta))
    data, page = write(tmp_path / "card")
    assert data["expert"] is None and data["figures"]["expert"] is None
    assert 'id="no-expert-record"' in page and "expert.png" not in page
    assert not (tmp_path / "card" / "expert.png").exists()


def test_a_failed_write_leaves_the_earlier_card(tiny_suite: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cards" / "card"
    write(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("disk full")

    with monkeypatch.context() as mp:
        mp.setattr(plots, "returns_plot", broken)
        with pytest.raises(RuntimeError):
            write(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["card"]  # no staging folder left behind
    write(out)  # and a second write replaces the first, byte for byte the same
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_the_board_links_each_suites_card() -> None:
    page = card_page(get_card("pointgoal-3"))
    assert page == Path(__file__).resolve().parents[1] / "docs" / "cards" / "pointgoal-3" / "index.html"
    assert suite_reference("pointgoal-3", 0).card_page == page


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bmrl_bench.cli", "datasets", "card", *args], cwd=cwd,
                          env=os.environ.copy(), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "says"), [
    (["nope"], "unknown suite 'nope'"),
    ([TINY], f"suite {TINY} is not built"),  # the autouse Minari root is empty
    ([TINY, "--out", "FILE"], "--out FILE is a file"),
    ([TINY, "--out", "FULL"], "--out FULL holds other files"),
])
def test_bad_inputs_are_one_line(args: list[str], says: str, tmp_path: Path) -> None:
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "FULL").mkdir()
    (tmp_path / "FULL" / "notes.txt").write_text("mine")
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    if "not built" in says:
        assert f"`bmrl-bench datasets build {TINY}`" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE", "FULL"]  # nothing written
    assert (tmp_path / "FULL" / "notes.txt").read_text() == "mine"


def test_the_command_writes_the_card(tiny_suite: Path, tmp_path: Path) -> None:
    proc = run_cli([TINY, "--out", "c"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c" / "index.html").is_file() and "wrote" in proc.stdout


@pytest.mark.skipif(chromium() is None, reason="headless Chromium not installed")
def test_the_card_renders_in_headless_chromium(tiny_suite: Path, tmp_path: Path) -> None:
    from bmrl_bench.builder import build_suite

    build_suite(TINY, tier="random")  # a second tier: its rows and its returns plot
    write(tmp_path / "card")
    proc = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", (tmp_path / "card" / "index.html").as_uri()],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for table in ("suite-facts", "tasks-table", "datasets-table", "references-table", "expert-curve", "returns-table"):
        assert f'<table id="{table}"' in proc.stdout
    if chromedriver() is None:
        return
    browser = Browser(tmp_path)
    try:
        browser.open(tmp_path / "card" / "index.html")
        # every image decoded, nothing wider than a 1280 px window
        assert browser.js("return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)") == [True] * 5
        assert browser.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth") == 0
        assert browser.js("return document.querySelectorAll('#references-table tbody tr').length") == 3
        assert browser.js("return document.querySelectorAll('#datasets-table tbody tr').length") == 2 * 3
        assert browser.js("return document.querySelectorAll('#tiers li').length") == 5
    finally:
        browser.close()


def test_publish_records_the_expert_behind_the_references(tiny_suite: Path, cards: Path) -> None:
    import hashlib

    from bmrl_bench.builder.policies import expert_dir
    from bmrl_bench.data import datasets_root
    from bmrl_bench.published import published_expert

    card = get_card(TINY)
    assert published_expert(card) is None  # nothing published yet
    publish_local_build(TINY)
    d = expert_dir(card, datasets_root())
    config = json.loads((d / "config.json").read_text())
    record = published_expert(card)
    assert record == {"steps": config["training"]["steps"],
                      "weights_sha256": hashlib.sha256((d / "weights.safetensors").read_bytes()).hexdigest()}
    assert record["steps"] > 0 and len(record["weights_sha256"]) == 64


def test_a_build_says_whether_the_saved_expert_is_the_published_one(tiny_suite: Path, cards: Path) -> None:
    from bmrl_bench.published import published_path, saved_expert_note

    assert "no published expert is on record for tiny-pointgoal" in saved_expert_note(TINY)
    path = publish_local_build(TINY)
    assert saved_expert_note(TINY).endswith(f"the published expert (its weights' sha256 matches {path.name})")
    data = json.loads(path.read_text())
    data["expert"]["weights_sha256"] = "0" * 64  # another expert was published
    path.write_text(json.dumps(data))
    note = saved_expert_note(TINY)
    assert "NOT the published expert" in note and "published 000000000000" in note
    assert published_path(get_card(TINY)) == path
