"""Every command refuses bad input before any work: one line, no traceback, nothing written.

Each case runs the real console entry point in a fresh process (as a user would), in its own
folder that holds the files the case points at; the whole folder (its datasets root and cache
included) must be unchanged afterwards. The cases run in parallel; the timeout only stops a
case that would start real work, it is not a speed assertion.
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from bmrl_bench import cli_inputs, results

TIMEOUT_S = 60


@dataclass(frozen=True)
class Case:
    args: str  # split on spaces
    code: int  # 2: usage error, 1: failure
    says: str  # a fragment of the one error line: it names what is wrong


CASES: list[Case] = [
    # top level
    Case("nope", 2, "No such command 'nope'"),
    # eval: options typer checks (type, range)
    Case("eval", 2, "Missing option '--algo'"),
    Case("eval --algo random --bogus 1", 2, "No such option: --bogus"),
    Case("eval --algo random --threads -1", 2, "'--threads'"),
    Case("eval --algo random --threads abc", 2, "'--threads'"),
    Case("eval --algo random --workers -1", 2, "'--workers'"),
    Case("eval --algo random --episodes 0", 2, "'--episodes'"),
    Case("eval --algo random --episodes 100000", 2, "'--episodes'"),
    # eval: options checked by bmrl_bench.cli_inputs
    Case("eval --algo random --seeds 0-100000000", 2, "at most 200"),
    Case("eval --algo random --seeds 0-200", 2, "at most 200"),
    Case("eval --algo random --seeds 3-1", 2, "--seeds '3-1'"),
    Case("eval --algo random --seeds 1,1", 2, "twice"),
    Case("eval --algo random --seeds abc", 2, "--seeds 'abc'"),
    Case("eval --algo random --seeds -1", 2, "--seeds '-1'"),
    Case("eval --algo random --seeds 4294967296", 2, "seeds go from 0"),
    Case("eval --algo random --out FILE", 2, "--out FILE is a file"),
    Case("eval --algo random --out FILE/sub", 2, "is a file, so FILE/sub cannot be a folder"),
    Case("eval --algo random --checkpoints FILE", 2, "--checkpoints FILE is a file"),
    Case("eval --algo random --device tpu", 2, "--device 'tpu'"),
    Case("eval --algo random --device cuda:99", 2, "--device cuda:99"),
    Case("eval --algo random --executor dask", 2, "--executor 'dask'"),
    Case("eval --algo random --address auto", 2, "--executor ray"),
    Case("eval --algo nope", 2, "unknown algorithm 'nope'"),
    Case("eval --algo random --suite nope", 2, "unknown suite 'nope'"),
    Case("eval --algo random --protocol nope", 2, "unknown protocol 'nope'"),
    Case("eval --algo batch-sac --config nope", 2, "no config named 'nope'"),
    # eval: --set against the config dataclass's field types, then its own range checks
    Case("eval --algo time --set phase2_steps=abc", 2, "phase2_steps takes an integer"),
    Case("eval --algo time --set phase2_steps=-5", 2, "phase2_steps"),
    Case("eval --algo time --set phase2_steps", 2, "field=value"),
    Case("eval --algo time --set nope=1", 2, "no field 'nope'"),
    Case("eval --algo batch-sac --set hidden=a,b", 2, "hidden takes a comma-separated list of integers"),
    Case("eval --algo batch-sac --set lr=nan", 2, "lr takes a finite number"),
    # bench
    Case("bench --device tpu", 2, "--device 'tpu'"),
    Case("bench --threads -1", 2, "'--threads'"),
    Case("bench --json DIR", 2, "--json DIR is a folder"),
    Case("bench --json FILE/rows.json", 2, "is a file"),
    # submit
    Case("submit", 2, "Missing argument"),
    Case("submit missing.json", 2, "missing.json: no such file"),
    Case("submit DIR", 2, "DIR is a folder"),
    Case("submit bad.json --board FILE", 2, "--board FILE is a file"),
    Case("submit bad.json --board board", 1, "bad.json"),
    Case("submit bad.json --checkpoints FILE", 2, "--checkpoints FILE is a file"),
    Case("submit bad.json --checkpoints missing", 2, "--checkpoints missing: no such folder"),
    Case("submit bad.json --checkpoints DIR --executor dask", 2, "--executor 'dask'"),
    Case("submit bad.json --checkpoints DIR --workers -1", 2, "'--workers'"),
    Case("submit bad.json --checkpoints DIR --threads -1", 2, "'--threads'"),
    # leaderboard
    Case("leaderboard --board FILE", 2, "--board FILE is a file"),
    Case("leaderboard --board missing", 2, "--board missing: no such folder"),
    Case("leaderboard --board FILE --verified-only", 2, "--board FILE is a file"),
    Case("leaderboard --board tampered", 1, "random-0000000000.json: invalid results file"),
    # datasets
    Case("datasets nope", 2, "No such command 'nope'"),
    Case("datasets list extra", 2, "unexpected extra argument"),
    Case("datasets build nope", 2, "unknown suite 'nope'"),
    Case("datasets build", 2, "Missing argument"),
    Case("datasets build pointgoal-3 --workers -1", 2, "'--workers'"),
    Case("datasets build pointgoal-3 --executor dask", 2, "--executor 'dask'"),
    Case("datasets build pointgoal-3 --address auto", 2, "--executor ray"),
    Case("datasets info nope", 2, "not a bmrl-bench dataset id"),
    Case("datasets info bmrl/nope/task-00-v0", 2, "unknown suite 'nope'"),
    Case("datasets info bmrl/pointgoal-3/task-99-v0", 2, "task"),
    Case("datasets info bmrl/pointgoal-3/task-00-v0", 1, "pointgoal-3"),  # not built here
    Case("datasets verify nope", 2, "unknown suite 'nope'"),
    Case("datasets publish nope", 2, "unknown suite 'nope'"),
    Case("datasets publish pointgoal-3", 1, "pointgoal-3"),  # not built here
    Case("datasets card nope", 2, "unknown suite 'nope'"),
    Case("datasets card pointgoal-3", 2, "run `bmrl-bench datasets build pointgoal-3`"),  # not built here
    Case("datasets card pointgoal-3 --out FILE", 2, "--out FILE is a file"),
    Case("datasets card pointgoal-3 --out tampered", 2, "--out tampered holds other files"),
    # figures
    Case("figures nope", 2, "No such command 'nope'"),
    Case("figures misidentification --suite nope", 2, "unknown suite 'nope'"),
    Case("figures misidentification --out FILE", 2, "--out FILE is a file"),
    Case("figures misidentification --seed -1", 2, "'--seed'"),
    Case("figures time --suite nope", 2, "unknown suite 'nope'"),
    Case("figures time --out FILE", 2, "--out FILE is a file"),
    Case("figures time --checkpoint missing", 2, "--checkpoint missing: no such folder"),
    Case("figures time --checkpoint FILE", 2, "--checkpoint FILE is a file"),
]


@dataclass
class Outcome:
    code: int | None
    output: str  # stdout and stderr
    before: dict[str, tuple[int, int]]
    after: dict[str, tuple[int, int]]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `root`: (size, mtime) by relative path."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _workspace(root: Path) -> None:
    """The things the cases point at: a file, a folder, an unreadable results file, a tampered board."""
    root.mkdir(parents=True)
    (root / "FILE").write_text("a file, not a folder\n")
    (root / "DIR").mkdir()
    (root / "bad.json").write_text("{not json")
    (root / "board").mkdir()
    tampered = root / "tampered" / "submissions" / "pointgoal-3" / "zero-shot"
    tampered.mkdir(parents=True)
    (tampered / "random-0000000000.json").write_text("{}")
    (root / "minari").mkdir()
    (root / "cache").mkdir()


def _run(case: Case, root: Path) -> Outcome:
    _workspace(root)
    env = os.environ | {"MINARI_DATASETS_PATH": str(root / "minari"), "BMRL_BENCH_CACHE": str(root / "cache")}
    before = _tree(root)
    try:
        proc = subprocess.run([sys.executable, "-m", "bmrl_bench.cli", *case.args.split()], cwd=root, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        code, output = None, f"still running after {TIMEOUT_S} s: {e.stdout!r} {e.stderr!r}"
    return Outcome(code, output, before, _tree(root))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    base = tmp_path_factory.mktemp("bad-inputs")
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        futures = {c.args: pool.submit(_run, c, base / f"case-{i:02d}") for i, c in enumerate(CASES)}
        return {args: f.result() for args, f in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.args for c in CASES])
def test_bad_input_is_refused_in_one_line(case: Case, outcomes: dict[str, Outcome]) -> None:
    got = outcomes[case.args]
    assert got.code == case.code, got.output
    lines = got.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), got.output
    assert "Traceback" not in got.output
    assert case.says in lines[0], lines[0]
    assert got.after == got.before, "the command wrote or changed files"


def test_every_command_has_bad_inputs() -> None:
    from bmrl_bench.cli import app

    commands = {c.name for c in app.registered_commands}
    groups = {g.name: {c.name for c in g.typer_instance.registered_commands} for g in app.registered_groups}
    tried = {c.args.split()[0] for c in CASES} | {" ".join(c.args.split()[:2]) for c in CASES}
    missing = [c for c in commands if c not in tried]
    missing += [f"{g} {c}" for g, names in groups.items() for c in names if f"{g} {c}" not in tried]
    assert not missing, f"commands without a bad-input case: {missing}"


def test_cli_bounds_match_the_results_schema() -> None:
    assert cli_inputs.MAX_SEEDS == results.MAX_SEEDS
    assert cli_inputs.MAX_EPISODES == results.MAX_EPISODES
