from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
TINY = "tiny-pointgoal"
# Test-only suite cards (tiny, seconds to build) sit beside the packaged ones.
os.environ["BMRL_BENCH_CARDS"] = str(TESTS / "cards")


@pytest.fixture(autouse=True)
def _minari_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test sees an empty, private Minari root and phase-1 cache unless it asks for more."""
    root = tmp_path_factory.mktemp("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    monkeypatch.setenv("BMRL_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny suite, built once per session into its own Minari root (read-only for tests)."""
    from bmrl_bench.builder import build_suite

    root = tmp_path_factory.mktemp("tiny-built")
    with pytest.MonkeyPatch.context() as mp:  # a session/module fixture cannot take `monkeypatch`
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        build_suite(TINY)
    return root


@pytest.fixture
def tiny_suite(tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the built tiny suite, safe to damage; MINARI_DATASETS_PATH points at it."""
    root = tmp_path / "minari-copy"
    shutil.copytree(tiny_root, root)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """A local Ray instance on the machine's 2 cores, shared by one module's tests (Ray starts slowly);
    skipped without Ray."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
