"""Build -> load round trips through Minari itself, recover_environment, corruption detection."""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from bmrl_bench import data as data_mod
from bmrl_bench.builder import LOCKS, STALE_REFERENCES, build_suite, ensure_built, pipeline, verify_suite, writer
from bmrl_bench.data import NotATestTaskError, load_suite, read_episodes
from bmrl_bench.errors import ChecksumMismatchError, DatasetCorruptError, DatasetMissingError
from bmrl_bench.suites import get_card

TINY = "tiny-pointgoal"


def test_minari_loads_what_we_built(tiny_suite: Path) -> None:
    import minari

    card = get_card(TINY)
    assert set(minari.list_local_datasets()) == set(card.dataset_ids())
    ds = minari.load_dataset(card.dataset_id(0))
    assert ds.total_steps == card.behaviour.steps_per_task
    ours = read_episodes(card.dataset_id(0))
    obs = np.concatenate([ep.observations for ep in ds.iterate_episodes()])
    rew = np.concatenate([ep.rewards for ep in ds.iterate_episodes()])
    np.testing.assert_array_equal(obs, ours.observations)
    np.testing.assert_array_equal(rew, ours.rewards)
    # Minari's own normalization uses the reference scores we stored.
    assert minari.get_normalized_score(ds, np.array([ds.storage.metadata["ref_max_score"]]))[0] == pytest.approx(1.0)


def test_metadata_and_recover_environment(tiny_suite: Path) -> None:
    import minari

    card = get_card(TINY)
    for i in range(card.num_tasks):
        ds = minari.load_dataset(card.dataset_id(i))
        meta = ds.storage.metadata
        assert meta["bmrl_split"] == card.task_split(i)
        assert meta["bmrl_task_param"] == card.task_param(i)
        assert meta["bmrl_behaviour"]["steps_per_task"] == card.behaviour.steps_per_task
        assert len(meta["bmrl_checksum"]) == 64
        assert meta["ref_max_score"] > meta["ref_min_score"]
        assert len(meta["bmrl_reference_returns"]["random"]) >= 10
        env = ds.recover_environment()
        assert env.unwrapped.task_param == card.task_param(i)
        _, info = env.reset(seed=0)
        assert info["task_param"] == card.task_param(i)
    ns = json.loads((tiny_suite / "bmrl" / TINY / "namespace_metadata.json").read_text())
    assert ns["dataset_ids"] == card.dataset_ids()


def test_load_suite_gives_train_data_only(tiny_suite: Path) -> None:
    suite = load_suite(TINY)
    card = suite.card
    assert [t.split for t in suite.tasks] == ["train", "train", "test"]
    assert set(np.unique(suite.train.task_index)) == {0, 1}
    assert len(suite.train) == 2 * card.behaviour.steps_per_task
    # s' of step t is s of step t+1 inside an episode.
    t0 = suite.train.task(0)
    inside = t0.timeouts[:-1] == 0
    np.testing.assert_array_equal(t0.next_observations[:-1][inside], t0.observations[1:][inside])
    # PointGoal dynamics hold in the data: s' = s + clip(a).
    np.testing.assert_allclose(t0.next_observations, t0.observations + np.clip(t0.actions, -1, 1), atol=1e-5)
    assert "train_tasks=2" in repr(suite)


def test_rebuild_skips_verified_datasets(tiny_suite: Path) -> None:
    report = build_suite(TINY)
    assert report.built == [] and len(report.skipped) == 3


def test_ensure_built_builds_only_what_is_missing(tiny_suite: Path) -> None:
    card = get_card(TINY)
    assert ensure_built(TINY) is None  # all verified: no build at all
    os.rename(tiny_suite / card.dataset_id(2), tiny_suite / "elsewhere")
    report = ensure_built(card)
    assert report is not None and report.built == [card.dataset_id(2)]
    assert report.units_run == ["behaviour shard 0 (tasks 0-2)"]  # the expert is kept
    assert [r.status for r in verify_suite(TINY)] == ["ok"] * 3


def test_only_test_tasks_load_as_test_batches(tiny_suite: Path) -> None:
    suite = load_suite(TINY)
    assert len(suite.load_test_batch(2)) == suite.card.behaviour.steps_per_task
    with pytest.raises(NotATestTaskError, match="^task 0 of tiny-pointgoal is not a test task; .*test tasks: 2\\)$"):
        suite.load_test_batch(0)


def test_truncated_hdf5_is_named_by_verify(tiny_suite: Path) -> None:
    card = get_card(TINY)
    f = tiny_suite / card.dataset_id(1) / "data" / "main_data.hdf5"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    rows = {r.dataset_id: r.status for r in verify_suite(TINY)}
    assert rows[card.dataset_id(0)] == "ok"
    assert str(f) in rows[card.dataset_id(1)] and "damaged" in rows[card.dataset_id(1)]
    with pytest.raises(DatasetCorruptError, match="damaged"):
        load_suite(TINY)


def test_tampered_reward_fails_checksum(tiny_suite: Path) -> None:
    card = get_card(TINY)
    f = tiny_suite / card.dataset_id(0) / "data" / "main_data.hdf5"
    with h5py.File(f, "r+") as h:
        h["episode_0"]["rewards"][0] += 1.0
    with pytest.raises(ChecksumMismatchError, match="does not match its checksum"):
        load_suite(TINY)
    assert "checksum mismatch" in verify_suite(TINY)[0].status


def test_corrupt_metadata_and_missing_dataset(tiny_suite: Path) -> None:
    card = get_card(TINY)
    (tiny_suite / card.dataset_id(0) / "data" / "metadata.json").write_text('{"truncated": ')
    with pytest.raises(DatasetCorruptError, match="metadata"):
        load_suite(TINY)
    os.rename(tiny_suite / card.dataset_id(1), tiny_suite / "elsewhere")
    assert verify_suite(TINY)[1].status == "missing"
    with pytest.raises(DatasetMissingError, match="bmrl-bench datasets build tiny-pointgoal"):
        read_episodes(card.dataset_id(1))


def test_failed_build_publishes_nothing_and_rerun_finishes(monkeypatch: pytest.MonkeyPatch, _minari_root: Path) -> None:
    import minari

    real = pipeline.write_dataset
    calls = {"n": 0}

    def failing(*args, **kwargs):  # noqa: ANN002, ANN003
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the user pressed ctrl-C while task 1 was written
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "write_dataset", failing)
    with pytest.raises(KeyboardInterrupt):
        build_suite(TINY)
    card = get_card(TINY)
    assert list(minari.list_local_datasets()) == [card.dataset_id(0)]
    assert not (_minari_root / card.dataset_id(1)).exists()
    monkeypatch.setattr(pipeline, "write_dataset", real)
    report = build_suite(TINY)
    assert report.skipped == [card.dataset_id(0)]
    assert report.built == [card.dataset_id(1), card.dataset_id(2)]
    assert all(r.status == "ok" for r in verify_suite(TINY))
    staging = _minari_root / ".staging"
    assert not staging.exists() or {p.name for p in staging.iterdir()} <= {LOCKS}


def test_changed_expert_recipe_refreshes_references_only(tiny_suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bmrl_bench.data import read_metadata

    card = get_card(TINY)
    before = [read_metadata(card.dataset_id(i)) for i in range(card.num_tasks)]
    assert before[0]["bmrl_expert"]["recipe"] == card.expert.model_dump()
    changed = card.model_copy(update={"expert": card.expert.model_copy(update={"seed": card.expert.seed + 1})})
    for module in (data_mod, pipeline):  # verify_suite reads the card in data, the build in pipeline
        monkeypatch.setattr(module, "get_card", lambda name: changed)

    assert {row.status for row in verify_suite(TINY)} == {STALE_REFERENCES}
    report = build_suite(TINY)
    assert report.units_run == ["expert"]  # a new expert; no behaviour shard re-collected
    assert {row.status for row in verify_suite(TINY)} == {"ok"}
    for old, i in zip(before, range(card.num_tasks)):
        new = read_metadata(card.dataset_id(i))
        assert new["bmrl_checksum"] == old["bmrl_checksum"]
        assert new["bmrl_behaviour_episode_returns"] == old["bmrl_behaviour_episode_returns"]
        assert new["bmrl_reference_returns"]["random"] == old["bmrl_reference_returns"]["random"]
        assert new["bmrl_reference_returns"]["expert"] != old["bmrl_reference_returns"]["expert"]
        assert new["bmrl_expert"]["recipe"]["seed"] == card.expert.seed + 1


def test_clean_staging_spares_running_builds(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead, alive = int(done.stdout), os.getpid()
    staging = tmp_path / ".staging"
    for name in (f"{dead}-abc", f"{alive}-def", "units", "no-pid", LOCKS):
        (staging / name).mkdir(parents=True)
    writer.clean_staging(tmp_path)
    assert sorted(p.name for p in staging.iterdir()) == sorted([f"{alive}-def", "units", LOCKS])


def test_second_build_of_a_suite_waits_for_the_first(tiny_suite: Path) -> None:
    import fcntl
    import threading

    lock = tiny_suite / ".staging" / LOCKS / f"{TINY}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    reports: list[object] = []
    with open(lock, "a") as held:  # another build of the suite is running
        fcntl.flock(held, fcntl.LOCK_EX)
        second = threading.Thread(target=lambda: reports.append(build_suite(TINY)))
        second.start()
        second.join(timeout=1.0)
        assert second.is_alive() and not reports  # it waits instead of building beside the first
        fcntl.flock(held, fcntl.LOCK_UN)
    second.join(timeout=60)
    assert not second.is_alive()
    card = get_card(TINY)
    assert reports[0].built == [] and len(reports[0].skipped) == card.num_tasks  # the first one built it all


def test_references_from_another_expert_than_the_saved_one_are_refreshed(tiny_suite: Path) -> None:
    """Data beside a newer expert (say, a mirror's datasets and the published expert): the build recomputes the
    references with the saved expert, trains nothing, and keeps the transitions."""
    from safetensors.numpy import load_file, save_file

    from bmrl_bench.builder.policies import expert_dir
    from bmrl_bench.data import STALE_EXPERT, read_metadata

    card = get_card(TINY)
    before = [read_metadata(card.dataset_id(i)) for i in range(card.num_tasks)]
    d = expert_dir(card, tiny_suite)
    weights = load_file(str(d / "weights.safetensors"))
    weights = {k: v + np.float32(0.05) if k.startswith("actor.") else v for k, v in weights.items()}
    save_file(weights, str(d / "weights.safetensors"))
    config = json.loads((d / "config.json").read_text())
    config["training"]["steps"] += 1000  # the newer expert trained longer
    (d / "config.json").write_text(json.dumps(config))

    assert {row.status for row in verify_suite(TINY)} == {STALE_EXPERT}
    report = build_suite(TINY)
    assert report.units_run == []  # no expert trained, no behaviour shard collected
    assert {row.status for row in verify_suite(TINY)} == {"ok"}
    for old, i in zip(before, range(card.num_tasks)):
        new = read_metadata(card.dataset_id(i))
        assert new["bmrl_checksum"] == old["bmrl_checksum"]
        assert new["bmrl_expert"]["steps"] == config["training"]["steps"] == old["bmrl_expert"]["steps"] + 1000
        assert new["bmrl_reference_returns"]["random"] == old["bmrl_reference_returns"]["random"]
        assert new["bmrl_reference_returns"]["expert"] != old["bmrl_reference_returns"]["expert"]
