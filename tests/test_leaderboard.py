"""submit() and render(): recomputed scores, every refusal leaves the board untouched, rendering."""
from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bmrl_bench.board.store import write_new
from bmrl_bench.errors import SubmissionError
from bmrl_bench.leaderboard import (
    Entry,
    ReferenceTask,
    SuiteReference,
    content_hash,
    load_board,
    render,
    submit,
)
from bmrl_bench.metrics import iqm, mean, probability_of_improvement, stratified_bootstrap_ci
from bmrl_bench.results import load_results, parse_results
from tests.board_helpers import sha, task_dataset_id, tree_digest

SUITE, VERSION = "tiny-lb", 1
# Test tasks 2 and 3 with reference ranges (0, 100) and (-100, 100).
REFS = {2: (45.0, 0.0, 100.0), 3: (135.0, -100.0, 100.0)}
PARAMS = {0: 0.0, 1: 180.0, 2: 45.0, 3: 135.0}
# Per-seed mean returns of algorithm "algo-a": normalized 0.1 .. 0.4 on task 2, 0.5, 0.6, 0.8, 1.1 on task 3.
MEANS_A = {2: [10.0, 20.0, 30.0, 40.0], 3: [0.0, 20.0, 60.0, 120.0]}
SCORES_A = np.array([[0.1, 0.5], [0.2, 0.6], [0.3, 0.8], [0.4, 1.1]])
# Sorted: .1 .2 .3 .4 .5 .6 .8 1.1; the IQM drops two from each end: mean(.3, .4, .5, .6).
IQM_A = 0.45
MEAN_A = 0.5


def did(i: int) -> str:
    return task_dataset_id(SUITE, VERSION, i)


def published(name: str, version: int) -> SuiteReference:
    """The board's trusted facts about suite tiny-lb v1 (raises KeyError for anything else)."""
    if (name, version) != (SUITE, VERSION):
        raise KeyError(f"no published suite {name} v{version}")
    return SuiteReference(
        name=SUITE,
        version=VERSION,
        test_tasks=[(i, did(i), p, lo, hi) for i, (p, lo, hi) in REFS.items()],
        published_checksums={did(i): {sha(f"published-{i}"), sha(f"published-old-{i}")} for i in range(4)},
        local_checksums={did(i): sha(f"local-{i}") for i in range(4)},
        protocol_constants={"zero-shot": (1, {}), "offline-context": (1, {"context_transitions": 200})},
    )


def make_results(
    algorithm: str = "algo-a",
    means: dict[int, list[float]] | None = None,
    offset: float = 0.0,
    config: dict[str, Any] | None = None,
    data: str = "published",
    created: str = "2024-05-01T12:00:00+00:00",
    commit: str | None = "abcdef1234567890",
) -> dict[str, Any]:
    """A valid results dict; each run's two episodes are mean -/+ 5 (task 2) or mean -/+ 10 (task 3).
    `offset` shifts every normalized score by that much."""
    means = copy.deepcopy(means or MEANS_A)
    seeds = list(range(len(means[2])))
    returns = []
    for t in (2, 3):
        _, lo, hi = REFS[t]
        spread = 5.0 if t == 2 else 10.0
        for s in seeds:
            m = means[t][s] + offset * (hi - lo)
            returns.append({"seed": s, "task_index": t, "episode_returns": [m - spread, m + spread]})
    return {
        "schema_version": 1,
        "algorithm": {"name": algorithm, "config_name": "default",
                      "config": config or {"hidden": [64, 64], "lr": 0.001}},
        "suite": {
            "name": SUITE,
            "version": VERSION,
            "datasets": [
                {"task_index": i, "dataset_id": did(i), "split": "train" if i < 2 else "test", "param": PARAMS[i],
                 "checksum": sha(f"{data}-{i}")}
                for i in range(4)
            ],
        },
        "protocol": {"name": "zero-shot", "version": 1, "constants": {}},
        "seeds": seeds,
        "episodes_per_task": 2,
        "returns": returns,
        "code": {"package_version": "0.1.0", "git_commit": commit, "dirty": False},
        "hardware": {"platform": "Linux", "python": "3.11.7", "torch": "2.5.1", "cpu_count": 8, "device": "cpu"},
        "wall_time_s": {"fit": 10.0, "evaluate": 2.0},
        "created": created,
    }


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def board(tmp_path: Path) -> Path:
    """A board with one accepted, rendered submission (so 'unchanged' means something)."""
    board = tmp_path / "board"
    submit(write_json(tmp_path / "in" / "seed.json", make_results("seeded", offset=-0.2)), board, published)
    render(board, published)
    return board


# ---------------------------------------------------------------------------- accepted


def test_valid_submission_is_accepted_with_recomputed_scores(tmp_path: Path) -> None:
    board = tmp_path / "board"
    data = make_results()
    entry = submit(write_json(tmp_path / "a.json", data), board, published)

    assert isinstance(entry, Entry) and entry.data == "reference"
    np.testing.assert_allclose(entry.scores, SCORES_A)
    assert entry.aggregates["iqm"][0] == pytest.approx(IQM_A, abs=1e-12)
    assert entry.aggregates["mean"][0] == pytest.approx(MEAN_A, abs=1e-12)
    # rliable median: median over tasks of per-task means (0.25, 0.75).
    assert entry.aggregates["median"][0] == pytest.approx(0.5, abs=1e-12)
    assert entry.aggregates["optimality_gap"][0] == pytest.approx((0.9 + 0.8 + 0.7 + 0.6 + 0.5 + 0.4 + 0.2 + 0.0) / 8)
    assert entry.per_task == pytest.approx((0.25, 0.75))
    assert [t.task_index for t in entry.tasks] == [2, 3]
    # 95% CIs: stratified bootstrap, 2000 reps, seed 0
    assert entry.aggregates["iqm"][1:] == pytest.approx(stratified_bootstrap_ci(SCORES_A, iqm, reps=2000, seed=0))
    assert entry.aggregates["mean"][1:] == pytest.approx(stratified_bootstrap_ci(SCORES_A, mean, reps=2000, seed=0))
    lo, hi = entry.aggregates["iqm"][1:]
    assert lo < IQM_A < hi

    # stored immutably under submissions/<suite>/<protocol>/<algorithm>-<hash16>.json, canonical JSON
    digest = content_hash(parse_results(data))
    assert entry.content_hash == digest
    assert entry.path == board / "submissions" / SUITE / "zero-shot" / f"algo-a-{digest[:16]}.json"
    assert load_results(entry.path) == parse_results(data)
    assert sorted(p.relative_to(board).as_posix() for p in board.rglob("*") if p.is_file()) == [
        f"submissions/{SUITE}/zero-shot/algo-a-{digest[:16]}.json"
    ]
    assert "IQM 0.450" in str(entry) and "algo-a" in str(entry)


def test_normalization_comes_from_the_reference_not_the_file(tmp_path: Path) -> None:
    """Changing the board's reference ranges changes the scores of the same file."""
    def shifted(name: str, version: int) -> SuiteReference:
        ref = published(name, version)
        tasks = [ReferenceTask(t.task_index, t.dataset_id, t.param, t.ref_min, 2 * t.ref_max - t.ref_min)
                 for t in ref.test_tasks]
        return SuiteReference(ref.name, ref.version, tasks, ref.published_checksums, ref.local_checksums,
                              ref.protocol_constants)

    entry = submit(write_json(tmp_path / "a.json", make_results()), tmp_path / "board", shifted)
    assert entry.aggregates["iqm"][0] == pytest.approx(IQM_A / 2)


def test_submitted_aggregates_are_ignored(tmp_path: Path) -> None:
    data = make_results()
    data["aggregates"] = {"iqm": [1.0, 1.0, 1.0], "mean": [1.0, 1.0, 1.0], "median": [1.0, 1.0, 1.0]}
    board = tmp_path / "board"
    entry = submit(write_json(tmp_path / "a.json", data), board, published)
    assert entry.aggregates["iqm"][0] == pytest.approx(IQM_A)
    assert entry.aggregates["mean"][0] == pytest.approx(MEAN_A)
    assert "aggregates" not in json.loads(entry.path.read_text())  # never stored
    render(board, published)
    readme = (board / "README.md").read_text()
    assert "| algo-a | default | self-reported | 0.450 [" in readme
    assert "1.000 [1.000, 1.000]" not in readme


def test_local_build_is_accepted_and_marked(tmp_path: Path) -> None:
    board = tmp_path / "board"
    ref_entry = submit(write_json(tmp_path / "a.json", make_results("algo-a")), board, published)
    local = make_results("algo-local", offset=0.3, data="local")
    local["suite"]["datasets"][0]["checksum"] = sha("published-0")  # mixed: still local-build
    entry = submit(write_json(tmp_path / "l.json", local), board, published)
    assert entry.data == "local-build" and ref_entry.data == "reference"
    assert "local-build data" in str(entry)

    render(board, published)
    readme = (board / "README.md").read_text()
    ref_section, local_section = readme.split('<a id="table-tiny-lb-zero-shot-local-build"></a>')
    assert '<a id="table-tiny-lb-zero-shot"></a>' in ref_section
    assert "| algo-a |" in ref_section and "algo-local" not in ref_section
    assert "## tiny-lb v1 · replay tier · zero-shot v1 · LOCAL-BUILD data" in local_section
    assert "checksums match no published build" in local_section
    assert re.search(r"^\| 1 \| algo-local \|", local_section, re.M)  # ranked on its own
    assert re.search(r"^\| 1 \| algo-a \|", ref_section, re.M)  # not pushed down by the higher local entry
    page = (board / "index.html").read_text()
    assert '<table id="table-tiny-lb-zero-shot-local-build" class="sortable local">' in page
    assert "algo-local (default) · zero-shot · LOCAL-BUILD · self-reported" in page  # plot label
    by_name = sorted(load_board(board, published), key=lambda e: e.algorithm)
    assert [e.data for e in by_name] == ["reference", "local-build"]


def test_duplicate_order_and_metadata_do_not_matter_for_the_hash() -> None:
    a = make_results()
    b = copy.deepcopy(a)
    b["returns"].reverse()
    b["created"] = "2025-01-01T00:00:00+00:00"
    b["hardware"]["device"] = "cuda"
    assert content_hash(parse_results(a)) == content_hash(parse_results(b))
    c = copy.deepcopy(a)
    c["algorithm"]["config"]["lr"] = 0.002
    assert content_hash(parse_results(c)) != content_hash(parse_results(a))


# ---------------------------------------------------------------------------- refused: board untouched


def _task_4(d: dict[str, Any]) -> None:
    d["suite"]["datasets"].append(
        {"task_index": 4, "dataset_id": did(4), "split": "test", "param": 90.0, "checksum": sha("published-4")})
    d["returns"] += [{"seed": s, "task_index": 4, "episode_returns": [1.0, 2.0]} for s in d["seeds"]]


def _drop_task_3(d: dict[str, Any]) -> None:
    d["suite"]["datasets"] = [x for x in d["suite"]["datasets"] if x["task_index"] != 3]
    d["returns"] = [r for r in d["returns"] if r["task_index"] != 3]


def _two_seeds(d: dict[str, Any]) -> None:
    d["seeds"] = [0, 1]
    d["returns"] = [r for r in d["returns"] if r["seed"] in (0, 1)]


def _seed_sets_differ(d: dict[str, Any]) -> None:
    d["returns"] = [r for r in d["returns"] if not (r["task_index"] == 3 and r["seed"] == 1)]


def _nan(d: dict[str, Any]) -> None:
    d["returns"][5]["episode_returns"][0] = float("nan")


def _inf(d: dict[str, Any]) -> None:
    d["returns"][2]["episode_returns"][1] = float("inf")


def _other_suite(d: dict[str, Any]) -> None:
    d["suite"]["name"] = "other"
    for x in d["suite"]["datasets"]:
        x["dataset_id"] = x["dataset_id"].replace(f"/{SUITE}/", "/other/")


def _set(*keys: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return mutate


SRC = "<src>"  # replaced by the submitted file's path
REFUSALS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("schema-wrong-type", _set("episodes_per_task", value="2"),
     f"{SRC}: invalid results file: episodes_per_task: Input should be a valid integer; regenerate it with `bmrl-bench "
     "eval`"),
    ("schema-unknown-version", _set("schema_version", value=2),
     f"{SRC}: schema version 2 is not supported (this bmrl-bench reads 1); upgrade bmrl-bench or re-run eval"),
    ("schema-extra-field", _set("algorithm", "score", value=99.0),
     f"{SRC}: invalid results file: algorithm.score: Extra inputs are not permitted; regenerate it with `bmrl-bench "
     "eval`"),
    ("test-task-missing", _drop_task_3,
     f"{SRC}: test task 03 ({did(3)}) is missing; the leaderboard needs returns on every test task of suite tiny-lb v1:"
     " re-run eval on the whole suite"),
    ("unknown-task", _task_4,
     f"{SRC}: task 04 ({did(4)}) is not a test task of suite tiny-lb v1 (test tasks: 02, 03); re-run eval on the "
     "published suite"),
    ("train-task-as-test", _set("suite", "datasets", 1, "split", value="test"),
     f"{SRC}: invalid results file: returns for test task 1 cover seeds [] but seeds lists [0, 1, 2, 3]; every test "
     "task needs returns from every seed; regenerate it with `bmrl-bench eval`"),
    ("param-differs", _set("suite", "datasets", 2, "param", value=50.0),
     f"{SRC}: test task 02 has param 50 but the suite's is 45; re-run eval on the published suite"),
    ("too-few-seeds", _two_seeds,
     f"{SRC}: 2 seed(s) [0, 1], but the leaderboard needs at least 3; re-run eval with --seeds 0-2 or more"),
    ("seed-sets-differ", _seed_sets_differ,
     f"{SRC}: invalid results file: returns for test task 3 cover seeds [0, 2, 3] but seeds lists [0, 1, 2, 3]; every "
     "test task needs returns from every seed; regenerate it with `bmrl-bench eval`"),
    ("episode-count-differs", lambda d: d["returns"][6]["episode_returns"].append(1.0),
     f"{SRC}: invalid results file: returns.6: seed 2, task 3 has 3 episode returns but episodes_per_task is 2; every "
     "run needs the same episode count; regenerate it with `bmrl-bench eval`"),
    ("nan", _nan,
     f"{SRC}: invalid results file: returns.5.episode_returns: episode_returns must be finite numbers, got nan at "
     "position 0; regenerate it with `bmrl-bench eval`"),
    ("inf", _inf,
     f"{SRC}: invalid results file: returns.2.episode_returns: episode_returns must be finite numbers, got inf at "
     "position 1; regenerate it with `bmrl-bench eval`"),
    ("checksum-unknown", _set("suite", "datasets", 3, "checksum", value=sha("tampered")),
     f"{SRC}: dataset {did(3)} has checksum {sha('tampered')[:12]}..., which matches neither a published build nor the "
     "local build of suite tiny-lb v1; rebuild it with `bmrl-bench datasets build tiny-lb` (or get the published"
     " datasets) and re-run eval"),
    ("train-checksum-unknown", _set("suite", "datasets", 0, "checksum", value=sha("tampered")),
     f"{SRC}: dataset {did(0)} has checksum {sha('tampered')[:12]}..., which matches neither a published build nor the "
     "local build of suite tiny-lb v1; rebuild it with `bmrl-bench datasets build tiny-lb` (or get the published"
     " datasets) and re-run eval"),
    ("train-dataset-missing", lambda d: d["suite"]["datasets"].pop(0),
     f"{SRC}: suite.datasets lacks {did(0)}; the leaderboard checks every dataset of suite tiny-lb v1: re-run eval"),
    ("protocol-unknown", _set("protocol", "name", value="few-shot"),
     f"{SRC}: protocol 'few-shot' is not a protocol of suite tiny-lb v1 (known: offline-context, zero-shot);"
     " re-run eval with --protocol set to one of them"),
    ("protocol-version", _set("protocol", "version", value=2),
     f"{SRC}: protocol 'zero-shot' is v2 in the file but v1 on the leaderboard; re-run eval with the current"
     " bmrl-bench"),
    ("protocol-constants-extra", _set("protocol", "constants", value={"context_transitions": 10}),
     f"{SRC}: protocol 'zero-shot' v1 constant 'context_transitions' is 10 but the suite's protocol has no such "
     "constant; re-run eval without changing the protocol"),
    ("protocol-constants-missing", _set("protocol", value={"name": "offline-context", "version": 1, "constants": {}}),
     f"{SRC}: protocol 'offline-context' v1 constant 'context_transitions' is missing but the suite's is 200;"
     " re-run eval without changing the protocol"),
    ("protocol-constants-differ",
     _set("protocol", value={"name": "offline-context", "version": 1, "constants": {"context_transitions": 100}}),
     f"{SRC}: protocol 'offline-context' v1 constant 'context_transitions' is 100 but the suite's is 200;"
     " re-run eval without changing the protocol"),
    ("protocol-constant-type",
     _set("protocol", value={"name": "offline-context", "version": 1, "constants": {"context_transitions": "200"}}),
     f"{SRC}: protocol 'offline-context' v1 constant 'context_transitions' is '200' but the suite's is 200;"
     " re-run eval without changing the protocol"),
    ("suite-unknown", _other_suite,
     f"{SRC}: suite other v1 is not on the leaderboard ('no published suite other v1'); evaluate on a published suite"),
    ("path-like-algorithm", _set("algorithm", "name", value="../../etc"),
     f"{SRC}: invalid results file: algorithm.name: String should match pattern '^[a-z0-9][a-z0-9_.-]{{0,63}}$';"
     " regenerate it with `bmrl-bench eval`"),
    ("dotdot-algorithm", _set("algorithm", "name", value="a..b"),
     f"{SRC}: invalid results file: algorithm.name: 'a..b' must not contain '..'; regenerate it with"
     " `bmrl-bench eval`"),
    ("huge-returns", lambda d: d["returns"][0].__setitem__("episode_returns", [1.0] * 50_000),
     f"{SRC}: invalid results file: returns.0.episode_returns: List should have at most 10000 items after validation,"
     " not 50000; regenerate it with `bmrl-bench eval`"),
    ("wrong-type-returns", _set("returns", value={"0": [1.0]}),
     f"{SRC}: invalid results file: returns: Input should be a valid list; regenerate it with `bmrl-bench eval`"),
]


@pytest.mark.parametrize(("case", "mutate", "expected"), REFUSALS, ids=[c for c, _, _ in REFUSALS])
def test_refusals_leave_the_board_unchanged(
    board: Path, tmp_path: Path, case: str, mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    data = make_results()
    mutate(data)
    path = write_json(tmp_path / "in" / f"{case}.json", data)
    before = tree_digest(board)
    with pytest.raises(SubmissionError) as info:
        submit(path, board, published)
    assert str(info.value) == expected.replace(SRC, str(path))
    assert tree_digest(board) == before


def test_refusal_does_not_create_a_missing_board(tmp_path: Path) -> None:
    data = make_results()
    _two_seeds(data)
    board = tmp_path / "fresh"
    with pytest.raises(SubmissionError, match="needs at least 3"):
        submit(write_json(tmp_path / "a.json", data), board, published)
    assert not board.exists()


def test_duplicate_submission_is_refused(board: Path, tmp_path: Path) -> None:
    first = submit(write_json(tmp_path / "a.json", make_results()), board, published)
    render(board, published)
    again = make_results(created="2025-02-02T00:00:00+00:00")  # same algorithm, config and returns
    again["returns"].reverse()
    again["aggregates"] = {"iqm": [1.0, 1.0, 1.0]}
    path = write_json(tmp_path / "b.json", again)
    before = tree_digest(board)
    with pytest.raises(SubmissionError) as info:
        submit(path, board, published)
    rel = first.path.relative_to(board).as_posix()
    assert str(info.value) == (
        f"{path}: duplicate submission: the same algorithm, config and returns are already on the board as {rel}"
        " (self-reported); nothing to do"
    )
    assert tree_digest(board) == before


def test_ten_megabyte_file_is_refused(board: Path, tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(make_results()) + " " * (10 * 1024 * 1024))
    before = tree_digest(board)
    with pytest.raises(SubmissionError) as info:
        submit(path, board, published)
    assert str(info.value) == (
        f"{path}: results file is larger than 5 MB; a results file from `bmrl-bench eval` is far smaller, regenerate it"
    )
    assert tree_digest(board) == before


def test_too_many_run_entries_are_refused(board: Path, tmp_path: Path) -> None:
    data = make_results()
    data["returns"] = [{"seed": 0, "task_index": 2, "episode_returns": [0.0]}] * 1001
    path = write_json(tmp_path / "many.json", data)
    before = tree_digest(board)
    expected = r"returns: List should have at most 1000 items after validation, not 1001"
    with pytest.raises(SubmissionError, match=expected):
        submit(path, board, published)
    assert tree_digest(board) == before


def test_stored_file_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "x" / "a.json"
    write_new(target, "first\n", lambda: SubmissionError("exists"))
    with pytest.raises(SubmissionError, match="exists"):
        write_new(target, "second\n", lambda: SubmissionError("exists"))
    assert target.read_text() == "first\n"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # no temp file left behind


# ---------------------------------------------------------------------------- render


def _rows(readme: str, table_id: str) -> list[list[str]]:
    section = readme.split(f'<a id="{table_id}"></a>')[1].split("<a id=")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in r.strip("|").split(" | ")] for r in rows]


def test_readme_table_has_the_expected_numbers(tmp_path: Path) -> None:
    board = tmp_path / "board"
    submit(write_json(tmp_path / "a.json", make_results("algo-a")), board, published)
    render(board, published)
    readme = (board / "README.md").read_text()
    header, row = _rows(readme, "table-tiny-lb-zero-shot")
    assert header == ["rank", "algorithm", "config", "status", "IQM [95% CI]", "mean [95% CI]", "task 02 (45)",
                      "task 03 (135)", "#seeds", "P(better than next)", "date", "commit", "results"]
    lo, hi = stratified_bootstrap_ci(SCORES_A, iqm, reps=2000, seed=0)
    mlo, mhi = stratified_bootstrap_ci(SCORES_A, mean, reps=2000, seed=0)
    digest = content_hash(parse_results(make_results("algo-a")))
    assert row == ["1", "algo-a", "default", "self-reported", f"0.450 [{lo:.3f}, {hi:.3f}]",
                   f"0.500 [{mlo:.3f}, {mhi:.3f}]",
                   "0.250", "0.750", "4", "—", "2024-05-01", "abcdef1",
                   f"[json](submissions/{SUITE}/zero-shot/algo-a-{digest[:16]}.json)"]
    assert "## tiny-lb v1 · replay tier · zero-shot v1 · reference data" in readme


def test_ranking_ties_and_probability_of_improvement(tmp_path: Path) -> None:
    board = tmp_path / "board"
    # b = a - 0.01 everywhere (overlapping CIs: a tie); c far below; d alone under another protocol
    submit(write_json(tmp_path / "b.json", make_results("algo-b", offset=-0.01)), board, published)
    submit(write_json(tmp_path / "c.json", make_results("algo-c", offset=-0.8, commit=None)), board, published)
    submit(write_json(tmp_path / "a.json", make_results("algo-a")), board, published)
    entries = {e.algorithm: e for e in load_board(board, published)}
    a, b, c = entries["algo-a"].iqm, entries["algo-b"].iqm, entries["algo-c"].iqm
    assert b[0] == pytest.approx(0.44) and c[0] == pytest.approx(IQM_A - 0.8)
    assert b[1] <= a[2] and a[1] <= b[2]  # a and b overlap
    assert c[2] < b[1]  # c is clearly below b

    render(board, published)
    rows = _rows((board / "README.md").read_text(), "table-tiny-lb-zero-shot")[1:]
    assert [(r[0], r[1]) for r in rows] == [("1", "algo-a"), ("=1", "algo-b"), ("3", "algo-c")]
    # P(a > b): per task 10 of the 16 run pairs favour a -> 0.625; b beats c on every pair -> 1.0
    assert probability_of_improvement(entries["algo-a"].scores, entries["algo-b"].scores) == pytest.approx(0.625)
    assert [r[9] for r in rows] == ["0.625", "1.000", "—"]
    assert rows[2][11] == "—"  # no commit recorded
    assert [r[4].split()[0] for r in rows] == ["0.450", "0.440", "-0.350"]
    # the other protocol has its own table, ranked on its own
    d = make_results("algo-d", offset=0.5)
    d["protocol"] = {"name": "offline-context", "version": 1, "constants": {"context_transitions": 200}}
    submit(write_json(tmp_path / "d.json", d), board, published)
    render(board, published)
    readme = (board / "README.md").read_text()
    assert [r[:2] for r in _rows(readme, "table-tiny-lb-offline-context")[1:]] == [["1", "algo-d"]]
    assert [r[1] for r in _rows(readme, "table-tiny-lb-zero-shot")[1:]] == ["algo-a", "algo-b", "algo-c"]
    assert readme.index("table-tiny-lb-offline-context") < readme.index("table-tiny-lb-zero-shot")  # sorted by protocol


def test_empty_board_renders(tmp_path: Path) -> None:
    board = tmp_path / "board"
    render(board, published)
    readme = (board / "README.md").read_text()
    page = (board / "index.html").read_text()
    assert "No submissions yet" in readme and "No submissions yet" in page
    assert "<table" not in page
    assert sorted(p.name for p in board.iterdir()) == ["README.md", "index.html"]


def test_render_is_deterministic_and_self_contained(tmp_path: Path) -> None:
    board = tmp_path / "board"
    submit(write_json(tmp_path / "a.json", make_results("algo-a")), board, published)
    submit(write_json(tmp_path / "b.json", make_results("algo-b", offset=-0.1)), board, published)
    render(board, published)
    first = {n: (board / n).read_bytes() for n in ("README.md", "index.html")}
    render(board, published)
    assert {n: (board / n).read_bytes() for n in ("README.md", "index.html")} == first
    page = first["index.html"].decode()
    assert page.startswith("<!DOCTYPE html>")
    assert '<table id="table-tiny-lb-zero-shot" class="sortable">' in page
    assert page.count("<svg") == 1 and '<figure id="plot-tiny-lb" data-suite="tiny-lb">' in page
    assert page.count("<script") == 1 and "<script>" in page  # inline only: sorting and filters
    assert not re.search(r"fetch\(|XMLHttpRequest|import\(|WebSocket", page)  # the script never reaches the network
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no external assets
    assert not re.search(r"""<link\b""", page)
    assert sorted(p.name for p in board.iterdir()) == ["README.md", "index.html", "submissions"]  # no temp files


def test_render_refuses_an_edited_submission(tmp_path: Path) -> None:
    board = tmp_path / "board"
    entry = submit(write_json(tmp_path / "a.json", make_results()), board, published)
    stored = json.loads(entry.path.read_text())
    stored["returns"][0]["episode_returns"] = [1000.0, 1000.0]
    entry.path.write_text(json.dumps(stored))
    expected = r"the file does not match its content \(it should be submissions/tiny-lb/zero-shot/algo-a-"
    with pytest.raises(SubmissionError, match=expected):
        render(board, published)
