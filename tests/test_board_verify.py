"""The verified tier: the board re-runs a submission from its checkpoints on the tiny suite."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bmrl_bench import harness
from bmrl_bench.board.agreement import tolerance
from bmrl_bench.board.store import CHECKPOINTS, RECORD
from bmrl_bench.errors import SubmissionError
from bmrl_bench.executor import LocalExecutor
from bmrl_bench.leaderboard import load_board, markdown, render, submit
from bmrl_bench.published import suite_reference
from bmrl_bench.results import load_results
from tests.board_helpers import tree_digest

TINY = "tiny-pointgoal"
OVERRIDES = {"steps": 100, "batch_size": 64, "hidden": (32, 32), "log_every": 50}


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory, tiny_root: Path) -> tuple[Path, Path]:
    """(results file, checkpoints folder) of a real, tiny Batch SAC run on the tiny suite, seeds 0-2."""
    out = tmp_path_factory.mktemp("honest")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tiny_root))
        run = harness.evaluate("batch-sac", TINY, seeds=(0, 1, 2), overrides=OVERRIDES, out_dir=out / "results",
                               checkpoint_dir=out / "ckpt")
    assert run.path is not None
    return run.path, out / "ckpt"


def edited(src: Path, dst: Path, edit: Any) -> Path:
    data = json.loads(src.read_text())
    edit(data)
    dst.write_text(json.dumps(data))
    return dst


def test_honest_checkpoints_are_verified(tiny_suite: Path, honest: tuple[Path, Path], tmp_path: Path) -> None:
    results, ckpt = honest
    board = tmp_path / "board"
    seen: list[str] = []
    entry = submit(results, board, suite_reference, checkpoints=ckpt, progress=lambda phase, *a: seen.append(phase))
    assert entry.verified and entry.data == "local-build"
    assert entry.verification.max_abs_diff == 0.0  # PointGoal: bit for bit
    assert entry.verification.wall_time_s > 0 and seen == ["seed 0: evaluate", "seed 1: evaluate", "seed 2: evaluate"]
    record_dir = board / CHECKPOINTS / entry.entry_id
    record = json.loads((record_dir / RECORD).read_text())
    stored = load_results(results)
    assert sorted((r["seed"], r["task_index"], r["episode_returns"]) for r in record["returns"]) == sorted(
        (r.seed, r.task_index, r.episode_returns) for r in stored.returns)
    # the checkpoints are kept on the board, with their sha256
    assert record["checkpoints_stored"] is True
    assert {f["path"] for f in record["checkpoints"]} == {
        f"batch-sac-{TINY}-seed{s}/{name}" for s in (0, 1, 2) for name in ("config.json", "weights.safetensors")}
    for f in record["checkpoints"]:
        data = (record_dir / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
        assert data == (ckpt / f["path"]).read_bytes()

    render(board, suite_reference)
    [again] = load_board(board, suite_reference)
    assert again.verified and again.iqm == entry.iqm
    readme = (board / "README.md").read_text()
    assert f"| [verified](checkpoints/{entry.entry_id}/verification.json) |" in readme
    assert "(verified entries only)" in markdown(board, suite_reference, verified_only=True)
    assert "batch-sac" in markdown(board, suite_reference, verified_only=True)

    # the same submission again: a duplicate, the board untouched
    before = tree_digest(board)
    with pytest.raises(SubmissionError, match=r"duplicate submission: .* \(verified\); nothing to do$"):
        submit(results, board, suite_reference, checkpoints=ckpt)
    assert tree_digest(board) == before

    # an edited record is refused when the board is read
    text = (record_dir / RECORD).read_text()
    first = record["returns"][0]["episode_returns"][0]
    (record_dir / RECORD).write_text(text.replace(repr(first), repr(first + 1.0), 1))
    disagree = r"verification.json: the record's returns disagree with the submission at seed"
    with pytest.raises(SubmissionError, match=disagree):
        render(board, suite_reference)
    (record_dir / RECORD).write_text(text)
    (record_dir / f"batch-sac-{TINY}-seed1" / "weights.safetensors").write_bytes(b"swapped")
    altered = r"checkpoint file batch-sac-tiny-pointgoal-seed1/weights.safetensors is missing or altered"
    with pytest.raises(SubmissionError, match=altered):
        render(board, suite_reference)


def test_a_self_reported_entry_becomes_verified(tiny_suite: Path, honest: tuple[Path, Path], tmp_path: Path) -> None:
    results, ckpt = honest
    board = tmp_path / "board"
    plain = submit(results, board, suite_reference)
    assert not plain.verified
    [listed] = load_board(board, suite_reference)
    assert not listed.verified
    upgraded = submit(results, board, suite_reference, checkpoints=ckpt, executor=LocalExecutor(2))  # worker processes
    assert upgraded.verified and upgraded.path == plain.path and upgraded.iqm == plain.iqm
    [listed] = load_board(board, suite_reference)
    assert listed.verified


def test_tampered_returns_with_honest_checkpoints_are_refused(
    tiny_suite: Path, honest: tuple[Path, Path], tmp_path: Path
) -> None:
    """Feasible but fabricated: every return a little better than the checkpoints achieve."""
    results, ckpt = honest
    board = tmp_path / "board"
    submit(edited(results, tmp_path / "seed.json", lambda d: d["returns"][0]["episode_returns"].__setitem__(0, -100.0)),
           board, suite_reference)  # a board with something on it
    original = load_results(results)
    run = sorted(original.returns, key=lambda r: (r.seed, r.task_index))[1]  # seed 1

    def better(d: dict[str, Any]) -> None:
        for r in d["returns"]:
            if r["seed"] == 1:
                r["episode_returns"][2] += 0.5

    path = edited(results, tmp_path / "tampered.json", better)
    before = tree_digest(board)
    with pytest.raises(SubmissionError) as info:
        submit(path, board, suite_reference, checkpoints=ckpt)
    claimed, actual = run.episode_returns[2] + 0.5, run.episode_returns[2]
    abs_tol, rel_tol = tolerance("pointgoal")
    allowed = abs_tol + rel_tol * abs(actual)
    assert str(info.value) == (
        f"{path}: the board's re-run from the checkpoints disagrees at seed 1, task {run.task_index:02d}, episode 2:"
        f" submitted {claimed!r}, re-run {actual!r} (difference {abs(claimed - actual):.3g}, allowed {allowed:.3g})"
        " on pointgoal;"
        " submit the returns these checkpoints produce"
    )
    assert tree_digest(board) == before


def _swap_seed_folders(ckpt: Path, tmp_path: Path) -> Path:
    swapped = tmp_path / "swapped"
    shutil.copytree(ckpt, swapped)
    a, b = swapped / f"batch-sac-{TINY}-seed0", swapped / f"batch-sac-{TINY}-seed1"
    a.rename(swapped / "tmp")
    b.rename(a)
    (swapped / "tmp").rename(b)
    return swapped


@pytest.mark.parametrize("case", ["missing-seed", "swapped-seeds", "other-config", "not-a-folder", "unknown-algorithm"])
def test_checkpoints_that_do_not_belong_are_refused(
    tiny_suite: Path, honest: tuple[Path, Path], tmp_path: Path, case: str
) -> None:
    results, ckpt = honest
    board = tmp_path / "board"
    where = ckpt
    if case == "missing-seed":
        where = tmp_path / "partial"
        shutil.copytree(ckpt, where)
        shutil.rmtree(where / f"batch-sac-{TINY}-seed2")
        expected = f"checkpoint {where / f'batch-sac-{TINY}-seed2'} is missing; pass the folder"
    elif case == "swapped-seeds":
        where = _swap_seed_folders(ckpt, tmp_path)
        expected = f"checkpoint {where / f'batch-sac-{TINY}-seed0'} was trained with seed 1, not 0"
    elif case == "other-config":
        results = edited(results, tmp_path / "other.json", lambda d: d["algorithm"]["config"].__setitem__("lr", 0.1))
        expected = "was trained with a different config than the results record (lr differ)"
    elif case == "not-a-folder":
        where = tmp_path / "file"
        where.write_text("x")
        expected = f"--checkpoints {where} is not a folder"
    else:
        results = edited(results, tmp_path / "alien.json", lambda d: d["algorithm"].__setitem__("name", "alien-net"))
        expected = "algorithm 'alien-net' is not installed on this board's machine (installed: "
    with pytest.raises(SubmissionError) as info:
        submit(results, board, suite_reference, checkpoints=where)
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert not board.exists()


def test_large_checkpoints_go_to_the_archive(
    tiny_suite: Path, honest: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the size limit, the board keeps only the sha256 in git's part (checkpoints/) and the files in archive/."""
    from bmrl_bench.board import record

    monkeypatch.setattr(record, "STORE_LIMIT_BYTES", 1)
    results, ckpt = honest
    board = tmp_path / "board"
    entry = submit(results, board, suite_reference, checkpoints=ckpt)
    record = json.loads((board / CHECKPOINTS / entry.entry_id / RECORD).read_text())
    assert record["checkpoints_stored"] is False
    assert sorted(p.name for p in (board / CHECKPOINTS / entry.entry_id).iterdir()) == [RECORD]
    for f in record["checkpoints"]:
        assert (board / "archive" / entry.entry_id / f["path"]).read_bytes() == (ckpt / f["path"]).read_bytes()
    [listed] = load_board(board, suite_reference)
    assert listed.verified and not listed.verification.checkpoints_stored


def test_the_oracle_is_verified_with_the_suite_bound(tiny_suite: Path, tmp_path: Path) -> None:
    """A privileged reference: the re-run binds the suite to the loaded checkpoint as evaluate does."""
    run = harness.evaluate("oracle", TINY, seeds=(0, 1, 2), out_dir=tmp_path / "results",
                           checkpoint_dir=tmp_path / "ckpt")
    entry = submit(run.path, tmp_path / "board", suite_reference, checkpoints=tmp_path / "ckpt")
    assert entry.verified and entry.verification.max_abs_diff == 0.0


def test_returns_within_the_tolerance_are_verified_with_the_boards_own(
    tiny_suite: Path, honest: tuple[Path, Path], tmp_path: Path
) -> None:
    """A re-run that drifts within the measured tolerance (here: the submission is off by a tenth of it) agrees;
    the board keeps and scores its own returns."""
    results, ckpt = honest
    abs_tol, rel_tol = tolerance("pointgoal")
    original = load_results(results)

    def nudged(d: dict[str, Any]) -> None:
        r = d["returns"][0]["episode_returns"]
        r[0] += 0.1 * (abs_tol + rel_tol * abs(r[0]))

    entry = submit(edited(results, tmp_path / "nudged.json", nudged), tmp_path / "board", suite_reference,
                   checkpoints=ckpt)
    assert entry.verified and entry.verification.max_abs_diff > 0.0
    record = json.loads((tmp_path / "board" / CHECKPOINTS / entry.entry_id / RECORD).read_text())
    assert sorted((r["seed"], r["task_index"], r["episode_returns"]) for r in record["returns"]) == sorted(
        (r.seed, r.task_index, r.episode_returns) for r in original.returns)  # the board's returns, not the file's


def test_the_drift_measurement_script_runs(tiny_suite: Path, tmp_path: Path) -> None:
    """benchmarks/verify_drift.py's measurement on the tiny suite: the random policy re-runs exactly everywhere."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "verify_drift.py"
    spec = importlib.util.spec_from_file_location("verify_drift", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    row = module.measure(TINY, "random", [0, 1, 2], None, tmp_path)
    assert [row[v]["max_abs"] for v in module.VARIANTS] == [0.0] * 4
    assert [row[v]["episodes"] for v in module.VARIANTS] == [9] * 4  # 3 seeds x 1 test task x 3 episodes
