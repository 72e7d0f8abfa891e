"""Executors: the same units give the same bytes and scores inline, in local processes and on Ray;
killed workers are retried; an interrupted build resumes from the units that finished."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from bmrl_bench.builder import UnitCache, build_suite, expert_dir, verify_suite
from bmrl_bench.data import read_metadata
from bmrl_bench.errors import BmrlError
from bmrl_bench.executor import (
    RAY_INSTALL_HINT,
    ExecutorError,
    LocalExecutor,
    RayExecutor,
    UnitEvent,
    UnitFailedError,
    get_executor,
)
from bmrl_bench.suites import get_card
from bmrl_bench.unit_progress import UnitBoard
from tests.executor_units import FailOnce, KillOnce, Wrapping, fail_on_three, square

SHARDS = "tiny-shards"  # 4 tasks in 2 behaviour shards (tests/cards/tiny-shards.toml)


def checksums(root: Path, suite: str = SHARDS) -> list[tuple[str, float, float]]:
    card = get_card(suite)
    out = []
    for i in range(card.num_tasks):
        meta = read_metadata(card.dataset_id(i), root)
        out.append((meta["bmrl_checksum"], meta["ref_min_score"], meta["ref_max_score"]))
    return out


@pytest.fixture(scope="module")
def inline_build(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, float, float]]:
    """tiny-shards built by the default executor (inline): what every other executor must reproduce."""
    root = tmp_path_factory.mktemp("shards-inline")
    with pytest.MonkeyPatch.context() as mp:  # a session/module fixture cannot take `monkeypatch`
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        build_suite(SHARDS)
    return checksums(root)


# ---------------------------------------------------------------------------- the board


def test_board_tracks_states_retries_and_throughput() -> None:
    now = [1000.0]
    board = UnitBoard(clock=lambda: now[0])
    ev = lambda i, state, **kw: UnitEvent("job", i, f"u{i}", state, time=now[0], **kw)  # noqa: E731
    for i in range(3):
        board.update(ev(i, "queued"))
    board.update(ev(0, "running"))
    board.update(ev(0, "running", phase="sac", done=100, total=1000))
    now[0] += 2.0
    board.update(ev(0, "running", phase="sac", done=500, total=1000))
    board.update(ev(1, "running"))
    assert board.counts() == {"queued": 1, "running": 2, "done": 0, "failed": 0}
    assert board.throughput()[1] == pytest.approx(200.0)  # (500 - 100) steps in 2 s
    board.update(ev(1, "queued"))  # its worker died
    board.update(ev(1, "running"))
    now[0] += 1.0
    board.update(ev(0, "done"))
    board.update(ev(0, "running", phase="sac", done=900, total=1000))  # late message: ignored
    board.update(ev(2, "failed", error="ValueError: x"))
    rows = {r.label: r for r in board.rows.values()}
    assert [rows[k].state for k in ("u0", "u1", "u2")] == ["done", "running", "failed"]
    assert rows["u0"].done == 500 and rows["u1"].attempts == 2 and rows["u2"].error == "ValueError: x"
    assert board.throughput()[0] == pytest.approx(1 / (3.0 / 3600))  # one unit done in 3 s
    assert board.summary().startswith("0 queued, 1 running, 1 done, 1 failed, 1 retried;")


# ---------------------------------------------------------------------------- local executors


def test_inline_executor_runs_in_order_and_raises_at_once() -> None:
    events: list[UnitEvent] = []
    ex = LocalExecutor(1, progress=events.append)
    assert ex.inline and ex.map(square, [1, 2, 3], name="sq", shared=10) == [11, 14, 19]
    assert [(e.index, e.state) for e in events if e.state != "running"] == [(0, "queued"), (1, "queued"), (2, "queued"),
                                                                           (0, "done"), (1, "done"), (2, "done")]
    assert [e.message for e in events if e.phase == "squaring"] == ["half way"] * 3
    with pytest.raises(ValueError, match="three is not allowed"):  # inline: the exception itself
        ex.map(fail_on_three, [1, 3, 5], name="f")


def test_process_pool_retries_a_killed_worker_and_reports_failures(tmp_path: Path) -> None:
    board = UnitBoard()
    ex = LocalExecutor(2, progress=board.update)
    kill = KillOnce(square, str(tmp_path / "killed"), label=2)
    assert ex.map(kill, [1, 2, 3, 4], name="sq", shared=1) == [2, 5, 10, 17]
    assert (tmp_path / "killed").exists()  # the worker running unit 2 really died
    assert {r.label: r.attempts for r in board.rows.values()}["unit 1"] >= 2
    assert board.counts()["done"] == 4
    with pytest.raises(UnitFailedError) as err:  # the others still finish, then one line
        ex.map(fail_on_three, [1, 3, 5], name="f", labels=["a", "b", "c"], hint="re-run")
    assert str(err.value) == "f: b failed (ValueError: three is not allowed); 2 of 3 units finished; re-run"
    with pytest.raises(BmrlError, match="^four: a user error, one line$"):
        ex.map(fail_on_three, [4, 5], name="f")


def test_interrupted_build_resumes_from_finished_units(
    tmp_path: Path, _minari_root: Path, inline_build: list[tuple[str, float, float]]
) -> None:
    import minari

    card = get_card(SHARDS)
    shard_1 = "behaviour shard 1 (tasks 2-3)"
    crash = Wrapping(LocalExecutor(1), lambda fn: FailOnce(fn, str(tmp_path / "crashed"), shard_1))
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_suite(SHARDS, executor=crash)
    # Nothing was published, but the units that finished before the crash are kept.
    assert list(minari.list_local_datasets()) == []
    cache = UnitCache(card, _minari_root)
    assert cache.has(0) and not cache.has(1)
    assert (expert_dir(card, _minari_root) / "weights.safetensors").exists()
    report_ = build_suite(SHARDS, executor=crash)
    assert report_.units_run == ["behaviour shard 1 (tasks 2-3)"]  # neither the expert nor shard 0 again
    assert report_.built == card.dataset_ids()
    assert checksums(_minari_root) == inline_build
    assert not cache.dir.exists()  # finished units are dropped once their tasks are published


def test_resume_reruns_only_the_shard_of_a_missing_task(
    _minari_root: Path, inline_build: list[tuple[str, float, float]]
) -> None:
    import shutil

    card = get_card(SHARDS)
    build_suite(SHARDS)
    shutil.rmtree(_minari_root / card.dataset_id(3))
    report_ = build_suite(SHARDS)
    assert report_.units_run == ["behaviour shard 1 (tasks 2-3)"] and report_.built == [card.dataset_id(3)]
    assert checksums(_minari_root) == inline_build  # the re-trained shard gives task 3 the same bytes


def test_ray_missing_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from bmrl_bench import cli

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ExecutorError, match=r"^--executor ray needs Ray: pip install -e \"\.\[ray\]\"$"):
        get_executor("ray")
    monkeypatch.setattr(sys, "argv", ["bmrl-bench", "datasets", "build", SHARDS, "--executor", "ray"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {RAY_INSTALL_HINT}" and "Traceback" not in err


def test_unknown_executor_and_misplaced_address() -> None:
    with pytest.raises(ExecutorError, match="unknown executor 'dask'; use one of: local, ray"):
        get_executor("dask")
    with pytest.raises(ExecutorError, match="--address .* use it with --executor ray"):
        get_executor("local", address="auto")


# ---------------------------------------------------------------------------- Ray


def test_ray_build_survives_a_killed_worker_and_matches_local(
    ray_local: Any, _minari_root: Path, tmp_path: Path, inline_build: list[tuple[str, float, float]],
) -> None:
    """One Ray build (kept to one: Ray workers start slowly) checks retries and bytes together."""
    board = UnitBoard()
    marker = tmp_path / "killed"
    shard1 = "behaviour shard 1 (tasks 2-3)"
    ex = Wrapping(RayExecutor(progress=board.update), lambda fn: KillOnce(fn, str(marker), shard1, at_step=400))
    report_ = build_suite(SHARDS, executor=ex)
    assert marker.exists()  # the worker training shard 1 was SIGKILLed at step 401 of 800
    rows = {r.label: r for r in board.rows.values()}
    assert rows[shard1].attempts == 2 and rows[shard1].state == "done"
    assert sorted(report_.units_run) == ["behaviour shard 0 (tasks 0-1)", shard1, "expert"]
    assert board.counts() == {"queued": 0, "running": 0, "done": 7, "failed": 0}  # 3 training + 4 reference units
    assert checksums(_minari_root) == inline_build
    assert all(r.status == "ok" for r in verify_suite(SHARDS))


def test_ray_scores_match_local(ray_local: Any, tiny_suite: Path, tmp_path: Path) -> None:
    import torch

    from bmrl_bench.harness import evaluate

    overrides = {"steps": 40, "batch_size": 32, "hidden": (32, 32)}
    on_ray = evaluate("batch-sac", "tiny-pointgoal", seeds=(0, 1), overrides=overrides, out_dir=tmp_path / "ray",
                      executor=RayExecutor())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray workers run each seed on one torch thread
    try:
        here = evaluate("batch-sac", "tiny-pointgoal", seeds=(0, 1), overrides=overrides, out_dir=tmp_path / "local")
    finally:
        torch.set_num_threads(threads)
    assert on_ray.results["returns"] == here.results["returns"]
    assert [r["seed"] for r in here.results["returns"]] == [0, 1]
    assert on_ray.results["returns"][0]["episode_returns"] != on_ray.results["returns"][1]["episode_returns"]
    assert "runs" in on_ray.wall_time_s and "runs" not in here.wall_time_s


def test_local_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed command must not leave its worker processes training on, orphaned."""
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import time\n"
        "from bmrl_bench.executor import LocalExecutor\n"
        "def unit(item, shared):\n"
        "    time.sleep(120)\n"
        "    return item\n"
        "if __name__ == '__main__':\n"
        "    LocalExecutor(2).map(unit, [1, 2], name='t')\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)])
    workers: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.5)
        kids = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
        workers = [k for k in kids if "spawn_main" in Path(f"/proc/{k}/cmdline").read_text(errors="replace")]
    assert len(workers) == 2, "the pool never started its two workers"
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{k}").exists() for k in workers):
        time.sleep(0.5)
    assert not any(Path(f"/proc/{k}").exists() for k in workers)


def test_balanced_pool_size_fills_the_last_round() -> None:
    from bmrl_bench.executor import balanced_pool_size

    assert balanced_pool_size(1, 2) == 1
    assert balanced_pool_size(3, 2) == 3  # 1.5 unit-times instead of 2
    assert balanced_pool_size(4, 2) == 2  # two full rounds already
    assert balanced_pool_size(5, 2) == 3  # 1.5 + 1 = 2.5, as good as 5 at once, with fewer processes
    assert balanced_pool_size(7, 2) == 4  # 2 + 1.5 = 3.5
    assert balanced_pool_size(5, 16) == 5
