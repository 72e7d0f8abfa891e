"""`figures time` from a saved tiMe: one PNG per suite, trajectories drawn from real rollouts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bmrl_bench.algorithms import get_algorithm
from bmrl_bench.data import load_suite
from bmrl_bench.errors import BmrlError
from bmrl_bench.figures import rollout, time_figure
from bmrl_bench.meta_data import meta_train_data, spec_of

from .conftest import TINY


def _tiny_time(tiny_suite: Path, algorithm: str = "time"):  # noqa: ANN202 - an algorithm
    suite = load_suite(TINY)
    cls = get_algorithm(algorithm)
    small = {"time": {"phase1_steps": 5, "phase2_steps": 5, "phase1_hidden": (16, 16), "q_hidden": (16, 16)},
             "batch-sac": {"steps": 5, "hidden": (16, 16)}}[algorithm]
    config = cls.config_cls(**small)
    algo = cls(config, spec_of(suite), 0)
    algo.fit(meta_train_data(suite))
    return suite, algo


def test_time_figure_from_checkpoint(tiny_suite: Path, tmp_path: Path) -> None:
    from PIL import Image

    suite, algo = _tiny_time(tiny_suite)
    algo.save(tmp_path / "ckpt")
    (png,) = time_figure(TINY, tmp_path / "fig", checkpoint=tmp_path / "ckpt")
    assert png == tmp_path / "fig" / f"time-{TINY}.png"
    assert Image.open(png).size == (600, 480)  # 5 x 4 inches at 120 dpi
    # the rollouts the figure draws: 20 steps from the origin, return = sum of minus distances
    path, ret, _ = rollout(suite, algo.make_agent(), suite.test_tasks[0].param, seed=0)
    assert path.shape == (suite.card.episode_length + 1, 2)
    np.testing.assert_array_equal(path[0], [0.0, 0.0])
    assert ret < 0


def test_time_figure_rejects_another_algorithms_checkpoint(tiny_suite: Path, tmp_path: Path) -> None:
    _, algo = _tiny_time(tiny_suite, "batch-sac")
    algo.save(tmp_path / "ckpt")
    with pytest.raises(BmrlError, match="batch-sac checkpoint, not tiMe"):
        time_figure(TINY, tmp_path / "fig", checkpoint=tmp_path / "ckpt")
