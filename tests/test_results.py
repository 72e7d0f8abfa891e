"""The results-file schema: round trips, array layout, and refusal of invalid or hostile files."""
from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from bmrl_bench.errors import BmrlError, SubmissionError
from bmrl_bench.results import (
    DEFAULT_TIER,
    MAX_FILE_BYTES,
    SCHEMA_VERSION,
    ResultsFile,
    canonical_json,
    data_tier,
    load_results,
    meta_test_indices,
    normalized_scores,
    parse_results,
    returns_array,
    write_results,
)

SUITE, VERSION = "tiny-lb", 1


def did(i: int) -> str:
    return f"bmrl/{SUITE}/task-{i:02d}-v{VERSION}"


def checksum(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


def results_dict(seeds: tuple[int, ...] = (2, 0, 1), episodes: int = 2) -> dict[str, Any]:
    """Train tasks 0, 1; test tasks listed 3 then 2, so file order differs from index order.
    Return of (seed s, task t, episode e) = 100 t + 10 s + e."""
    datasets = [
        {"task_index": 0, "dataset_id": did(0), "split": "train", "param": 0.0, "checksum": checksum("0")},
        {"task_index": 1, "dataset_id": did(1), "split": "train", "param": 180.0, "checksum": checksum("1")},
        {"task_index": 3, "dataset_id": did(3), "split": "test", "param": 135.0, "checksum": checksum("3")},
        {"task_index": 2, "dataset_id": did(2), "split": "test", "param": 45.0, "checksum": checksum("2")},
    ]
    returns = [
        {"seed": s, "task_index": t, "episode_returns": [float(100 * t + 10 * s + e) for e in range(episodes)]}
        for t in (2, 3) for s in seeds
    ]
    return {
        "schema_version": 1,
        "algorithm": {"name": "batch-sac", "config_name": "pointgoal",
                      "config": {"hidden": [64, 64], "lr": 3e-4, "tag": None}},
        "suite": {"name": SUITE, "version": VERSION, "datasets": datasets},
        "protocol": {"name": "zero-shot", "version": 1, "constants": {}},
        "seeds": list(seeds),
        "episodes_per_task": episodes,
        "returns": returns,
        "code": {"package_version": "0.1.0", "git_commit": "abcdef1234567890", "dirty": False},
        "hardware": {"platform": "Linux", "python": "3.11.7", "torch": "2.5.1", "cpu_count": 8, "device": "cpu"},
        "wall_time_s": {"build": 1.5, "fit": 10.0, "evaluate": 2.25},
        "created": "2024-05-01T12:00:00+00:00",
    }


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def refused(tmp_path: Path, data: Any) -> str:
    """The message `load_results` refuses `data` with (asserting it is one line)."""
    path = write_json(tmp_path / "r.json", data)
    with pytest.raises(SubmissionError) as info:
        load_results(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


# ---------------------------------------------------------------------------- valid files


def test_round_trip_is_exact_and_canonical(tmp_path: Path) -> None:
    r = parse_results(results_dict())
    assert SCHEMA_VERSION == 1
    assert r.created == datetime(2024, 5, 1, 12, tzinfo=UTC)
    path = tmp_path / "out" / "r.json"
    write_results(r, path)
    back = load_results(path)
    assert back == r
    assert canonical_json(back) == path.read_text() == canonical_json(r)
    assert "aggregates" not in json.loads(path.read_text())  # absent stays absent
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temp files left


def test_json_ints_become_floats_and_order_of_returns_does_not_matter() -> None:
    data = results_dict()
    data["returns"][0]["episode_returns"] = [200, 201]  # ints are valid JSON numbers for returns
    shuffled = copy.deepcopy(data)
    shuffled["returns"].reverse()
    a, b = parse_results(data), parse_results(shuffled)
    assert a.returns[0].episode_returns == [200.0, 201.0]
    np.testing.assert_array_equal(returns_array(a), returns_array(b))


def test_returns_array_orders_seeds_sorted_and_tasks_as_in_datasets() -> None:
    r = parse_results(results_dict(seeds=(2, 0, 1), episodes=3))
    assert meta_test_indices(r) == [3, 2]
    arr = returns_array(r)
    assert arr.shape == (3, 2, 3) and arr.dtype == np.float64
    for i, s in enumerate([0, 1, 2]):
        for j, t in enumerate([3, 2]):
            assert arr[i, j].tolist() == [100 * t + 10 * s + e for e in range(3)]


def test_normalized_scores_mean_over_episodes_then_normalize() -> None:
    r = parse_results(results_dict(seeds=(0, 1, 2), episodes=2))
    scores = normalized_scores(r, {2: (0.0, 1000.0), 3: (100.0, 300.0)})
    # task 3 (column 0): mean return 300 + 10 s + 0.5 -> (x - 100) / 200; task 2: (200 + 10 s + 0.5) / 1000
    expected = np.array([[(200.5 + 10 * s) / 200, (200.5 + 10 * s) / 1000] for s in range(3)])
    np.testing.assert_allclose(scores, expected)
    with pytest.raises(SubmissionError, match=r"no reference scores for test task\(s\) \[2\]"):
        normalized_scores(r, {3: (0.0, 1.0)})


def test_aggregates_block_is_accepted_but_separate() -> None:
    data = results_dict()
    data["aggregates"] = {"iqm": [1.0, 1.0, 1.0], "mean": {"point": 1.0}}
    r = parse_results(data)
    assert r.aggregates == {"iqm": [1.0, 1.0, 1.0], "mean": {"point": 1.0}}


# ---------------------------------------------------------------------------- refusals


def test_unknown_schema_version_has_its_own_message(tmp_path: Path) -> None:
    data = results_dict()
    data["schema_version"] = 7
    msg = refused(tmp_path, data)
    assert msg.endswith(
        "schema version 7 is not supported (this bmrl-bench reads 1); upgrade bmrl-bench or re-run eval")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.__setitem__("surprise", 1), "invalid results file: surprise: Extra inputs are not permitted"),
        (lambda d: d["code"].__setitem__("extra", "x"), "code.extra: Extra inputs are not permitted"),
        (lambda d: d.pop("seeds"), "invalid results file: seeds: Field required"),
        (lambda d: d.__setitem__("seeds", "0-2"), "seeds: Input should be a valid list"),
        (lambda d: d["returns"][0].__setitem__("seed", "0"), "returns.0.seed: Input should be a valid integer"),
        (lambda d: d["returns"][0]["episode_returns"].__setitem__(0, "1.5"),
         "returns.0.episode_returns.0: Input should be a valid number"),
        (lambda d: d.__setitem__("episodes_per_task", True), "episodes_per_task: Input should be a valid integer"),
        (lambda d: d["code"].__setitem__("dirty", "no"), "code.dirty: Input should be a valid boolean"),
        (lambda d: d.__setitem__("created", "yesterday"), "created: Input should be a valid datetime"),
        (lambda d: d["suite"]["datasets"][0].__setitem__("checksum", "abc"),
         "suite.datasets.0.checksum: String should match pattern"),
        (lambda d: d["suite"]["datasets"][0].__setitem__("split", "val"),
         "suite.datasets.0.split: Input should be 'train' or 'test'"),
        (lambda d: d["suite"]["datasets"][0].__setitem__("dataset_id", "bmrl/tiny-lb/task-00"),
         "suite.datasets.0.dataset_id: String should match pattern"),
        (lambda d: d["suite"]["datasets"][0].__setitem__("dataset_id", "bmrl/other/task-00-v1"),
         "dataset_id bmrl/other/task-00-v1 is not a dataset of suite tiny-lb v1"),
        (lambda d: d["suite"]["datasets"][0].__setitem__("dataset_id", did(1)),
         f"dataset_id {did(1)} does not belong to task_index 0"),
        (lambda d: d["algorithm"]["config"].__setitem__("nested", {"a": 1}),
         "algorithm.config: config.nested values must be JSON scalars or lists of them"),
        (lambda d: d["seeds"].append(0), "seeds: seeds must be unique, [0] appear more than once"),
        (lambda d: d["returns"].pop(), "returns for test task 3 cover seeds [0, 2] but seeds lists [0, 1, 2]"),
        (lambda d: d["returns"][0]["episode_returns"].pop(),
         "returns.0: seed 2, task 2 has 1 episode returns but episodes_per_task is 2"),
        (lambda d: d["returns"].append(copy.deepcopy(d["returns"][0])), "returns.6: a second entry for seed 2, task 2"),
        (lambda d: d["returns"][0].__setitem__("seed", 9), "returns.0: seed 9 is not listed in seeds"),
        (lambda d: d["returns"][0].__setitem__("task_index", 0),
         "returns.0: task_index 0 is not a test task in suite.datasets"),
    ],
)
def test_invalid_files_are_refused_with_the_field_named(tmp_path: Path, mutate: Any, expected: str) -> None:
    data = results_dict()
    mutate(data)
    msg = refused(tmp_path, data)
    assert expected in msg
    assert msg.endswith("; regenerate it with `bmrl-bench eval`")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused_naming_the_field(tmp_path: Path, bad: float) -> None:
    data = results_dict()
    data["returns"][1]["episode_returns"][1] = bad  # json.dumps writes NaN / Infinity literals
    msg = refused(tmp_path, data)
    assert f"returns.1.episode_returns: episode_returns must be finite numbers, got {bad} at position 1" in msg
    for where, mutate in [
        ("suite.datasets.2.param: param must be a finite number",
         lambda d: d["suite"]["datasets"][2].__setitem__("param", bad)),
        ("wall_time_s: wall_time_s.fit must be a finite number", lambda d: d["wall_time_s"].__setitem__("fit", bad)),
        ("algorithm.config: config.lr must be a finite number",
         lambda d: d["algorithm"]["config"].__setitem__("lr", bad)),
        ("protocol.constants: constants.k must be a finite number",
         lambda d: d["protocol"]["constants"].__setitem__("k", bad)),
        ("aggregates: aggregates.iqm must be a finite number",
         lambda d: d.__setitem__("aggregates", {"iqm": [bad, 0.0, 1.0]})),
    ]:
        data = results_dict()
        mutate(data)
        assert where in refused(tmp_path, data)


@pytest.mark.parametrize("name", ["../../etc", "a/b", "a\\b", "a..b", "..", "Batch-SAC", "", "x" * 65, "-lead"])
def test_path_like_or_malformed_names_are_refused(tmp_path: Path, name: str) -> None:
    for section in ("algorithm", "suite", "protocol"):
        data = results_dict()
        data[section]["name"] = name
        msg = refused(tmp_path, data)
        assert f"invalid results file: {section}.name: " in msg
        assert "should match pattern" in msg or "must not contain '..'" in msg


def test_bounds_on_sizes(tmp_path: Path) -> None:
    data = results_dict(seeds=(0, 1, 2), episodes=1)
    data["returns"][0]["episode_returns"] = [0.0] * 10_001
    expected = "returns.0.episode_returns: List should have at most 10000 items after validation, not 10001"
    assert expected in refused(tmp_path, data)

    data = results_dict(seeds=tuple(range(201)), episodes=1)
    assert "seeds: List should have at most 200 items after validation, not 201" in refused(tmp_path, data)

    data = results_dict(seeds=(0, 1, 2), episodes=1)
    data["returns"] = data["returns"] * 170  # 1020 entries
    assert "returns: List should have at most 1000 items after validation, not 1020" in refused(tmp_path, data)

    data = results_dict()
    data["hardware"]["platform"] = "x" * 257
    assert "hardware.platform: String should have at most 256 characters" in refused(tmp_path, data)
    data = results_dict()
    data["algorithm"]["config"]["k" * 300] = 1
    assert "String should have at most 256 characters" in refused(tmp_path, data)
    data = results_dict()
    data["algorithm"]["config"]["big"] = list(range(1001))
    assert "config.big holds a list longer than 1000 items" in refused(tmp_path, data)


def test_file_over_5_mb_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    # A valid file padded with whitespace: only the size is wrong.
    text = json.dumps(results_dict())
    path.write_text(text + " " * (10 * 1024 * 1024))
    with pytest.raises(SubmissionError) as info:
        load_results(path)
    assert str(info.value) == (
        f"{path}: results file is larger than 5 MB; a results file from `bmrl-bench eval` is far smaller, regenerate it"
    )
    path.write_text(text + " " * (MAX_FILE_BYTES - len(text)))  # exactly at the limit: fine
    assert load_results(path).algorithm.name == "batch-sac"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json",
         "results file is not valid JSON (Expecting property name enclosed in double quotes:"
         " line 1 column 2 (char 1))"),
        (b"[1, 2]", "invalid results file: the top level must be a JSON object"),
        (b"\xff\xfe", "results file is not UTF-8 text"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b'{"seeds": [' + b"9" * 5000 + b"]}", "results file is not valid JSON (Exceeds the limit (4300 digits)"),
    ],
)
def test_garbage_is_refused_in_one_line(tmp_path: Path, raw: bytes, expected: str) -> None:
    path = tmp_path / "g.json"
    path.write_bytes(raw)
    with pytest.raises(SubmissionError) as info:
        load_results(path)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, BmrlError)


def test_missing_file_is_a_submission_error(tmp_path: Path) -> None:
    with pytest.raises(SubmissionError, match="cannot read results file .*; check the path"):
        load_results(tmp_path / "nope.json")


def test_models_are_frozen() -> None:
    r = parse_results(results_dict())
    with pytest.raises(ValidationError, match="frozen"):
        r.seeds = [1]  # type: ignore[misc]
    assert ResultsFile.model_config["extra"] == "forbid"


def test_data_tier_is_optional_and_left_out_when_unset() -> None:
    """Files from before data tiers keep their canonical bytes (and content hash); a tier, when set, is stored."""
    plain = parse_results(results_dict())
    assert plain.suite.tier is None and data_tier(plain) == DEFAULT_TIER == "replay"
    assert '"tier"' not in canonical_json(plain)
    tiered = results_dict()
    tiered["suite"]["tier"] = "expert"
    parsed = parse_results(tiered)
    assert data_tier(parsed) == "expert"
    assert json.loads(canonical_json(parsed))["suite"]["tier"] == "expert"
    assert parse_results(json.loads(canonical_json(parsed))) == parsed
