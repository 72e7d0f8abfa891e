"""The CLI as a user types it (typer's runner, in-process)."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bmrl_bench.cli import _task_list, app
from bmrl_bench.data import load_suite
from bmrl_bench.suites import get_card, list_suites

from .conftest import TINY


def test_task_list_is_compact_when_long() -> None:
    assert _task_list([0.0, 90.0, 180.0]) == "0, 90, 180"
    assert _task_list([0.0, 0.5, 1.0, 1.5, 2.0]) == "5 in [0, 2]"


def test_datasets_list_fits_80_columns_one_line_per_suite() -> None:
    result = CliRunner().invoke(app, ["datasets", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in list_suites():
        card = get_card(name)
        row = next(line for line in lines if line.split(" ", 1)[0] == name)  # the name is never cut
        assert f" 0/{card.num_tasks}" in row  # nothing is built in the test's empty Minari root
        assert f" {card.episode_length} " in row
    halfcheetah = next(line for line in lines if line.startswith("halfcheetah-vel "))
    assert "29 in [0, 1.5]" in halfcheetah and "0.475, 1.075, 1.475" in halfcheetah  # no cell wraps
    assert len(lines) == 2 + len(list_suites()) + 1  # header, rule, one row per suite, where the datasets are


def test_eval_prints_what_evaluate_returned(tiny_suite: Path, tmp_path: Path) -> None:
    from bmrl_bench.metrics import aggregate
    from bmrl_bench.results import load_results, normalized_scores

    args = ["eval", "--algo", "random", "--suite", TINY, "--seeds", "0-2", "--out", str(tmp_path), "--workers", "1"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    (written,) = tmp_path.glob("random-tiny-pointgoal-zero-shot-*.json")
    assert f"results: {written}" in result.output
    suite = load_suite(TINY)
    scores = normalized_scores(load_results(written), {t.index: (t.ref_min, t.ref_max) for t in suite.test_tasks})
    iqm = aggregate(scores)["iqm"]
    assert f"iqm {iqm[0]:.3f} [{iqm[1]:.3f}, {iqm[2]:.3f}]" in result.output  # the file's own numbers


def test_datasets_status_counts_what_is_built(tiny_suite: Path) -> None:
    from bmrl_bench.data import datasets_status

    status = datasets_status()
    assert status.root == tiny_suite and [s.name for s in status.suites] == list_suites()
    tiny = next(s for s in status.suites if s.name == TINY)
    card = get_card(TINY)
    assert (tiny.built, tiny.num_tasks, tiny.episode_length) == (card.num_tasks, card.num_tasks, card.episode_length)
    assert tiny.train_tasks == tuple(card.train_tasks) and tiny.test_tasks == tuple(card.test_tasks)
    assert tiny.bytes == sum(f.stat().st_size for f in (tiny_suite / card.namespace()).rglob("*") if f.is_file())
    assert all(s.built == 0 for s in status.suites if s.name != TINY)  # only the tiny suite is in this root


def test_bench_prints_and_writes_what_bench_returned(tmp_path: Path, monkeypatch) -> None:
    import json

    from bmrl_bench.bench import BenchRow, run

    def fake_run_bench(**kwargs) -> list[BenchRow]:
        assert kwargs["only"] == ["time"] and kwargs["threads"] == 1 and kwargs["quick"]
        return [BenchRow("training", "tiMe phase 1 fake", "ours", 3, 12.5, "upd/s", note="a fake row")]

    monkeypatch.setattr(run, "run_bench", fake_run_bench)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "time", "--threads", "1", "--json", str(out)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "tiMe phase 1 fake" in result.output and "  tiMe phase 1 fake: a fake row" in result.output
    assert result.output.rstrip().endswith(f"wrote {out}")
    written = json.loads(out.read_text())
    assert [r["name"] for r in written["rows"]] == ["tiMe phase 1 fake"] and written["rows"][0]["value"] == 12.5
    assert written["info"]["threads"] == 1 and set(written["info"]["runtime"]) == {"omp_passive", "keep_freed_memory"}
