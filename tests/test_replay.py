"""Stored episodes replay bit-exactly in their recovered env; a changed value is named; bad --replay is one line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import pytest
from typer.testing import CliRunner

from bmrl_bench.cli import app
from bmrl_bench.data import read_episodes, read_metadata
from bmrl_bench.replay import Mismatch, replay_dataset, replay_suite, reset_seed, spread
from bmrl_bench.suites import get_card

from .conftest import TESTS, TINY

# MuJoCo suites small enough to build in seconds. Three tasks in shards of two, and a behaviour seed
# other than 0, so that both parts of the reset seed (seed * 1000 + place in shard) are exercised.
MUJOCO_CARD = """
name = "{name}"
version = 0
family = "{family}"
description = "Test-only {family} suite for replays."
episode_length = {length}
train_tasks = [0.5, 1.5]
test_tasks = [1.0]
reference_episodes = 10
eval_episodes = 1

[behaviour]
steps_per_task = 300
learning_starts = 150
hidden = [16, 16]
batch_size = 16
updates_per_step = 1
seed = 3
tasks_per_shard = 2

[expert]
min_steps = 100
max_steps = 100
eval_every = 50
eval_tasks = 2
num_envs = 2
hidden = [16, 16]
batch_size = 16
updates_per_step = 1
seed = 1
"""
CHEETAH = "tiny-cheetah-replay"
HOPPER = "tiny-hopper-replay"  # random actions make the hopper fall: episodes that terminate early


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """BMRL_BENCH_CARDS for the tiny test cards and the two MuJoCo cards above."""
    folder = tmp_path_factory.mktemp("replay-cards")
    (folder / f"{CHEETAH}.toml").write_text(MUJOCO_CARD.format(name=CHEETAH, family="halfcheetah-vel", length=50))
    (folder / f"{HOPPER}.toml").write_text(MUJOCO_CARD.format(name=HOPPER, family="hopper-vel", length=60))
    return os.pathsep.join([str(TESTS / "cards"), str(folder)])


@pytest.fixture(scope="module")
def built(cards: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny PointGoal suite and the two MuJoCo suites, built once into one Minari root (read-only)."""
    from bmrl_bench.builder import build_suite

    root = tmp_path_factory.mktemp("replay-built")
    with pytest.MonkeyPatch.context() as mp:  # a module fixture cannot take `monkeypatch`
        mp.setenv("BMRL_BENCH_CARDS", cards)
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        for name in (TINY, CHEETAH, HOPPER):
            build_suite(name)
    return root


@pytest.fixture
def root(cards: str, built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the built suites, safe to damage; MINARI_DATASETS_PATH points at it."""
    copy = tmp_path / "minari-copy"
    shutil.copytree(built, copy)
    monkeypatch.setenv("BMRL_BENCH_CARDS", cards)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(copy))
    return copy


def test_spread_is_even_distinct_and_ends_at_the_last_episode() -> None:
    assert spread(100, 2) == [0, 99]
    assert spread(100, 5) == [0, 24, 49, 74, 99]
    assert spread(4, 3) == [0, 1, 3]
    assert spread(7, 1) == [0]
    assert spread(3, 10) == [0, 1, 2]
    for e in range(1, 40):
        for n in range(2, 45):
            got = spread(e, n)
            assert got == sorted(set(got)) and len(got) == min(e, n) and got[0] == 0 and got[-1] == e - 1


def test_reset_seed_is_the_collectors(root: Path) -> None:
    card = get_card(CHEETAH)
    # tasks_per_shard = 2: task 2 is the first of the second shard; behaviour seed 3.
    assert [reset_seed(read_metadata(card.dataset_id(i), root)) for i in range(3)] == [3000, 3001, 3000]
    assert reset_seed(read_metadata(get_card(TINY).dataset_id(2), root)) == 2  # one shard: the task index


@pytest.mark.parametrize("suite", [TINY, CHEETAH, HOPPER])
def test_every_stored_episode_replays_bit_exactly(root: Path, suite: str) -> None:
    card = get_card(suite)
    results = replay_suite(suite, 10**6)  # every episode of every task
    assert [r.dataset_id for r in results] == card.dataset_ids()
    for r in results:
        ep = read_episodes(r.dataset_id, root)
        assert r.problem is None, r.problem
        assert r.episodes == tuple(range(len(ep.lengths))) and r.steps == card.behaviour.steps_per_task
    if suite == HOPPER:  # the replays went through early terminations, and through time-limit cuts
        ep = read_episodes(card.dataset_id(0), root)
        assert ep.terminations.sum() >= 2 and (ep.lengths == card.episode_length).any()


def _poke(root: Path, dataset_id: str, episode: int, key: str, index: tuple[int, ...], value: float) -> float:
    """Overwrite one stored value (in the copy); return what was there."""
    with h5py.File(root / dataset_id / "data" / "main_data.hdf5", "r+") as f:
        arr = f[f"episode_{episode}"][key]
        old = float(arr[index])
        arr[index] = value
    return old


def test_a_changed_reward_is_named(root: Path) -> None:
    dataset_id = get_card(CHEETAH).dataset_id(2)
    last = len(read_episodes(dataset_id, root).lengths) - 1
    true = _poke(root, dataset_id, last, "rewards", (7,), -0.25)
    got = replay_dataset(dataset_id, 2, root)
    assert got.episodes == (0, last) and not got.ok
    assert got.mismatch == Mismatch(dataset_id, last, 7, "rewards", "-0.25", repr(true))
    assert str(got.mismatch) == f"{dataset_id}: episode {last}, step 7, rewards: stored -0.25 vs replayed {true!r}"


def test_a_changed_observation_is_named(root: Path) -> None:
    dataset_id = get_card(HOPPER).dataset_id(1)
    # Observation 3 of episode 1 is the one step 2 returns; component 4 of it.
    true = _poke(root, dataset_id, 1, "observations", (3, 4), 0.5)
    got = replay_dataset(dataset_id, 10**6, root)
    assert got.mismatch == Mismatch(dataset_id, 1, 2, "observations[4]", "0.5", repr(true))
    # The start state too: it comes from the recomputed reset seed, not from the stored observation.
    true0 = _poke(root, get_card(HOPPER).dataset_id(0), 0, "observations", (0, 0), 0.0)
    got0 = replay_dataset(get_card(HOPPER).dataset_id(0), 1, root)
    assert got0.mismatch == Mismatch(get_card(HOPPER).dataset_id(0), 0, None, "observations[0]", "0.0", repr(true0))


def test_cli_verify_replay_lines(root: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["datasets", "verify", CHEETAH, "--replay", "2"], env={"COLUMNS": "80"})
    assert ok.exit_code == 0, ok.output
    lines = ok.output.splitlines()
    assert [line for line in lines if line.startswith("replay ok   ")] == [
        line for line in lines if line.startswith("replay ")] and len(lines) == 3 + 3 + 1
    assert f"replay ok   {get_card(CHEETAH).dataset_id(0)}: 2 episodes, 100 steps bit-exact" in ok.output
    assert lines[-1] == f"{CHEETAH}: all 3 datasets verified, replays bit-exact."

    dataset_id = get_card(CHEETAH).dataset_id(1)
    _poke(root, dataset_id, 0, "rewards", (3,), -0.5)
    bad = runner.invoke(app, ["datasets", "verify", CHEETAH, "--replay", "2"], env={"COLUMNS": "80"})
    assert bad.exit_code == 1
    # The checksum says that the dataset changed; the replay says where.
    assert f"FAIL {dataset_id}: checksum mismatch" in bad.output
    assert f"replay FAIL {dataset_id}: episode 0, step 3, rewards: stored -0.5 vs replayed" in bad.output


BAD_COUNTS = ["0", "-1", "abc", "1.5", "", " ", "1e3", "1000001", "9" * 5000]


def _verify_with(value: str, folder: Path) -> subprocess.CompletedProcess:
    folder.mkdir()
    env = os.environ | {"MINARI_DATASETS_PATH": str(folder / "minari"), "BMRL_BENCH_CACHE": str(folder / "cache")}
    return subprocess.run([sys.executable, "-m", "bmrl_bench.cli", "datasets", "verify", "pointgoal-3",
                           "--replay", value], capture_output=True, text=True, env=env, cwd=folder, timeout=60)


def test_bad_replay_count_is_one_line_before_anything_loads(tmp_path: Path) -> None:
    # pointgoal-3 is not built here: a count that passed would fail later, on the missing datasets (exit 1).
    with ThreadPoolExecutor(max_workers=4) as pool:  # a fresh process each, as a user types it
        procs = list(pool.map(lambda iv: _verify_with(iv[1], tmp_path / f"case-{iv[0]}"), enumerate(BAD_COUNTS)))
    for value, proc in zip(BAD_COUNTS, procs, strict=True):
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        assert proc.returncode == 2, (value[:20], proc.stdout + proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: --replay "), lines
        assert lines[0].endswith("give the episodes to replay per dataset as a whole number from 1 to 1000000")
    assert all(list((tmp_path / f"case-{i}").iterdir()) == [] for i in range(len(BAD_COUNTS)))  # nothing written
