"""The CLI as a user types it (typer's runner, in-process)."""
from __future__ import annotations

from typer.testing import CliRunner

from bmrl_bench.cli import _task_list, app


def test_task_list_is_compact_when_long() -> None:
    assert _task_list([0.0, 90.0, 180.0]) == "0, 90, 180"
    assert _task_list([0.0, 0.5, 1.0, 1.5, 2.0]) == "5 over [0, 2]"


def test_datasets_list_shows_every_suite_unbuilt() -> None:
    result = CliRunner().invoke(app, ["datasets", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("pointgoal-3", "pointgoal-semicircle", "halfcheetah-vel-lite", "hopper-vel", "tiny-pointgoal"):
        assert name in result.output
    assert "29 over [0, 1.5]" in result.output  # halfcheetah-vel's 29 train targets
    assert "0/32" in result.output  # nothing is built in the test's empty Minari root
