"""The rendered index.html in a real browser: headless Chromium (its DOM dump, and driven through chromedriver)."""
from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bmrl_bench.board.record import VerificationRecord
from bmrl_bench.leaderboard import Entry, SuiteReference, render, submit
from bmrl_bench.results import load_results
from tests.board_helpers import sha, task_dataset_id

SUITE, VERSION = "page-suite", 1
REFS = {1: (30.0, 0.0, 100.0), 2: (60.0, 0.0, 100.0)}  # task -> (param, ref_min, ref_max); task 0 is train


def did(i: int) -> str:
    return task_dataset_id(SUITE, VERSION, i)


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


def board_with_entries(tmp_path: Path) -> tuple[Path, dict[str, Entry]]:
    """alpha-net (IQM 0.55, verified), gamma (0.35), beta_sac (0.15), all on page-suite."""
    board = tmp_path / "board"
    entries = {}
    for name, rets in [
        ("alpha-net", {1: [20.0, 40.0, 60.0], 2: [50.0, 70.0, 90.0]}),
        ("beta_sac", {1: [0.0, 10.0, 20.0], 2: [10.0, 20.0, 30.0]}),
        ("gamma", {1: [20.0, 30.0, 40.0], 2: [30.0, 40.0, 50.0]}),
    ]:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(results(name, rets)))
        entries[name] = submit(path, board, published)
    # A verification record as `submit(..., checkpoints=DIR)` leaves it (the re-run itself: tests/test_board_verify.py).
    alpha = entries["alpha-net"]
    folder = board / "checkpoints" / alpha.entry_id
    weights = b"weights of seed 0"
    (folder / "alpha-net-page-suite-seed0").mkdir(parents=True)
    (folder / "alpha-net-page-suite-seed0" / "weights.safetensors").write_bytes(weights)
    record = VerificationRecord(
        format=1, entry=alpha.entry_id, content_hash=alpha.content_hash, family=None,
        tolerance_abs=0.0, tolerance_rel=0.0,
        max_abs_diff=0.0, returns=list(load_results(alpha.path).returns),
        checkpoints=[{"path": "alpha-net-page-suite-seed0/weights.safetensors",
                      "sha256": hashlib.sha256(weights).hexdigest(), "bytes": len(weights)}],
        checkpoints_stored=True, wall_time_s=1.5, code={"package_version": "0.1.0", "git_commit": None, "dirty": False},
        platform="Linux", verified_at="2024-07-01T00:00:00+00:00",
    )
    (folder / "verification.json").write_text(record.model_dump_json(indent=2))
    render(board, published)
    return board, entries


@pytest.mark.skipif(chromium() is None, reason="headless Chromium not installed (no `chromium` or `chromium-browser` "
                                               "on PATH)")
def test_index_html_in_headless_chromium(tmp_path: Path) -> None:
    board, entries = board_with_entries(tmp_path)
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
    assert '<table id="table-page-suite-zero-shot" class="sortable">' in dom
    for name, e in entries.items():
        point, lo, hi = e.iqm
        assert f"<td>{name}</td>" in dom
        assert f'<td data-sort="{point!r}">{point:.3f} <span class="ci">[{lo:.3f}, {hi:.3f}]</span></td>' in dom
    assert dom.index("<td>alpha-net</td>") < dom.index("<td>gamma</td>") < dom.index("<td>beta_sac</td>")  # by IQM
    assert "<td>0123456+dirty</td>" in dom
    assert "<svg" in dom and '<figure id="plot-page-suite" data-suite="page-suite">' in dom


# ---------------------------------------------------------------------------- driven through WebDriver


class Browser:
    """Headless Chromium through chromedriver's W3C WebDriver HTTP interface (no client library needed)."""

    def __init__(self, tmp_path: Path, width: int = 1280, height: int = 900) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.driver = subprocess.Popen([str(chromedriver()), f"--port={port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                self._call("GET", "/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                f"--user-data-dir={tmp_path / 'wd-profile'}",
                f"--window-size={width},{height}"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome",
                                                 "goog:chromeOptions": {"binary": chromium(), "args": args}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())["value"]

    def open(self, path: Path) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": path.as_uri()})

    def js(self, script: str) -> Any:
        return self._call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": []})

    def click(self, css: str) -> None:
        element = self._call("POST", f"/session/{self.session}/element", {"using": "css selector", "value": css})
        self._call("POST", f"/session/{self.session}/element/{next(iter(element.values()))}/click", {})

    def close(self) -> None:
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            self.driver.terminate()
            self.driver.wait(timeout=30)


def chromedriver() -> str | None:
    return shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    if chromium() is None or chromedriver() is None:
        pytest.skip("headless Chromium or chromedriver not installed (apt-get install chromium chromium-driver)")
    b = Browser(tmp_path)
    yield b
    b.close()


VISIBLE_ALGORITHMS = ("return Array.from(document.querySelectorAll('#table-page-suite-zero-shot tbody tr'))"
                      ".filter(tr => !tr.hidden).map(tr => tr.cells[1].textContent)")
OVERFLOW = ("return [document.documentElement.scrollWidth - document.documentElement.clientWidth,"
            " ...Array.from(document.querySelectorAll('.scroll')).map(s => s.scrollWidth - s.clientWidth)]")


def test_sorting_filters_and_verified_marks(tmp_path: Path, browser: Browser) -> None:
    board, entries = board_with_entries(tmp_path)
    browser.open(board / "index.html")
    assert browser.js("return window.innerWidth") == 1280
    assert browser.js(OVERFLOW) == [0, 0]  # nothing scrolls sideways at 1280 px
    assert browser.js(VISIBLE_ALGORITHMS) == ["alpha-net", "gamma", "beta_sac"]  # ranked by IQM

    iqm = "#table-page-suite-zero-shot th:nth-child(5) button"
    assert browser.js(f"return document.querySelector('{iqm}').textContent") == "IQM [95% CI]"
    browser.click(iqm)
    assert browser.js(VISIBLE_ALGORITHMS) == ["beta_sac", "gamma", "alpha-net"]  # ascending IQM
    assert browser.js("return document.querySelector('#table-page-suite-zero-shot th:nth-child(5)')"
                      ".getAttribute('aria-sort')") == "ascending"
    browser.click(iqm)
    assert browser.js(VISIBLE_ALGORITHMS) == ["alpha-net", "gamma", "beta_sac"]  # descending
    browser.click("#table-page-suite-zero-shot th:nth-child(2) button")
    assert browser.js(VISIBLE_ALGORITHMS) == ["alpha-net", "beta_sac", "gamma"]  # by name

    # the verified mark: one verified row linking to its record, the others visibly self-reported
    marks = browser.js("return Array.from(document.querySelectorAll('#table-page-suite-zero-shot tbody tr'))"
                       ".map(tr => [tr.cells[1].textContent, tr.className, tr.cells[3].textContent.trim(),"
                       " tr.cells[3].querySelector('a') ? tr.cells[3].querySelector('a').getAttribute('href') : null,"
                       " getComputedStyle(tr.cells[3]).fontStyle])")
    alpha = entries["alpha-net"]
    assert marks == [
        ["alpha-net", "verified", "\u2713 verified", f"checkpoints/{alpha.entry_id}/verification.json", "normal"],
        ["beta_sac", "self-reported", "self-reported", None, "italic"],
        ["gamma", "self-reported", "self-reported", None, "italic"],
    ]
    # every entry links to its stored results file
    hrefs = browser.js("return Array.from(document.querySelectorAll('#table-page-suite-zero-shot tbody tr'))"
                       ".map(tr => tr.cells[tr.cells.length - 1].querySelector('a').getAttribute('href'))")
    assert sorted(hrefs) == sorted(f"submissions/{e.entry_id}.json" for e in entries.values())
    assert all((board / h).is_file() for h in hrefs)

    # filters: verified only, then a data tier that has no table
    browser.click("#filter-verified")
    assert browser.js(VISIBLE_ALGORITHMS) == ["alpha-net"]
    browser.click("#filter-verified")
    assert browser.js(VISIBLE_ALGORITHMS) == ["alpha-net", "beta_sac", "gamma"]
    assert browser.js("return Array.from(document.querySelectorAll('#filter-tier option')).map(o => o.value)") == [
        "", "replay"]
    browser.js("const s = document.getElementById('filter-suite'); s.value = 'page-suite';"
               " s.dispatchEvent(new Event('change'));")
    assert browser.js("return document.getElementById('table-page-suite-zero-shot-section').hidden") is False


def test_the_published_board_fits_a_laptop_screen(tmp_path: Path, browser: Browser) -> None:
    """The repository's own leaderboard, re-rendered: no table wider than a 1280 px window."""
    from bmrl_bench.published import suite_reference

    board = tmp_path / "leaderboard"
    shutil.copytree(Path(__file__).resolve().parents[1] / "leaderboard" / "submissions", board / "submissions")
    render(board, suite_reference)
    browser.open(board / "index.html")
    widths = browser.js(OVERFLOW)
    assert len(widths) > 1 and widths == [0] * len(widths)
