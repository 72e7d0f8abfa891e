"""The rendered index.html in a real browser: headless Chromium dumps the DOM it built."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bmrl_bench.leaderboard import SuiteReference, render, submit

SUITE, VERSION = "page-suite", 1
REFS = {1: (30.0, 0.0, 100.0), 2: (60.0, 0.0, 100.0)}  # task -> (param, ref_min, ref_max); task 0 is train


def did(i: int) -> str:
    return f"bmrl/{SUITE}/task-{i:02d}-v{VERSION}"


def sha(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


def published(name: str, version: int) -> SuiteReference:
    if (name, version) != (SUITE, VERSION):
        raise KeyError(name)
    return SuiteReference(
        name=SUITE,
        version=VERSION,
        test_tasks=[(i, did(i), p, lo, hi) for i, (p, lo, hi) in REFS.items()],
        published_checksums={did(i): {sha(f"pub-{i}")} for i in range(3)},
        local_checksums={},
        protocol_constants={"zero-shot": (1, {})},
    )


def results(algorithm: str, returns: dict[int, list[float]]) -> dict[str, Any]:
    """Three seeds, one episode each; `returns[task] = [seed 0, seed 1, seed 2]`."""
    return {
        "schema_version": 1,
        "algorithm": {"name": algorithm, "config_name": "default", "config": {}},
        "suite": {"name": SUITE, "version": VERSION, "datasets": [
            {"task_index": i, "dataset_id": did(i), "split": "train" if i == 0 else "test",
             "param": 0.0 if i == 0 else REFS[i][0], "checksum": sha(f"pub-{i}")}
            for i in range(3)
        ]},
        "protocol": {"name": "zero-shot", "version": 1, "constants": {}},
        "seeds": [0, 1, 2],
        "episodes_per_task": 1,
        "returns": [{"seed": s, "task_index": t, "episode_returns": [returns[t][s]]} for t in (1, 2) for s in range(3)],
        "code": {"package_version": "0.1.0", "git_commit": "0123456789abcdef", "dirty": True},
        "hardware": {"platform": "Linux", "python": "3.11.7", "torch": "2.5.1", "cpu_count": 2, "device": "cpu"},
        "wall_time_s": {"fit": 1.0},
        "created": "2024-06-30T08:00:00+00:00",
    }


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="headless Chromium not installed (no `chromium` or `chromium-browser` on PATH)")
def test_index_html_in_headless_chromium(tmp_path: Path) -> None:
    board = tmp_path / "board"
    # normalized scores: alpha 0.2, 0.4, 0.6 | 0.5, 0.7, 0.9 -> IQM 0.55 (6 scores, one dropped per end)
    entries = {}
    for name, rets in [
        ("alpha-net", {1: [20.0, 40.0, 60.0], 2: [50.0, 70.0, 90.0]}),
        ("beta_sac", {1: [0.0, 10.0, 20.0], 2: [10.0, 20.0, 30.0]}),  # IQM 0.15
    ]:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(results(name, rets)))
        entries[name] = submit(path, board, published)
    render(board, published)
    assert entries["alpha-net"].iqm[0] == pytest.approx(0.55)
    assert entries["beta_sac"].iqm[0] == pytest.approx(0.15)

    browser = chromium()
    assert browser is not None
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", (board / "index.html").as_uri()],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert '<table id="table-page-suite-zero-shot">' in dom
    for name, e in entries.items():
        point, lo, hi = e.iqm
        assert f"<td>{name}</td>" in dom
        assert f"<td>{point:.3f} [{lo:.3f}, {hi:.3f}]</td>" in dom
    assert "<td>0.550 [" in dom and "<td>0.150 [" in dom
    assert dom.index("<td>alpha-net</td>") < dom.index("<td>beta_sac</td>")  # ranked by IQM
    assert "<td>0123456+dirty</td>" in dom
    assert "<svg" in dom and '<figure id="plot-page-suite">' in dom
