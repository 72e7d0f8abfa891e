"""`figures time`: the legend sits beside the data, never on it, and nothing is cut at the figure's edge."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bmrl_bench.algorithms import get_algorithm
from bmrl_bench.data import load_suite
from bmrl_bench.figures import time_figure
from bmrl_bench.meta_data import meta_train_data, spec_of

from .conftest import TINY


def test_time_figure_legend_and_title_inside_the_figure_and_off_the_axes(
        tiny_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    suite = load_suite(TINY)
    cls = get_algorithm("time")
    algo = cls(cls.config_cls(phase1_steps=5, phase2_steps=5, phase1_hidden=(16, 16), q_hidden=(16, 16)),
               spec_of(suite), 0)
    algo.fit(meta_train_data(suite))
    algo.save(tmp_path / "ckpt")
    figures: list[Any] = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to measure it
    time_figure(TINY, tmp_path / "fig", checkpoint=tmp_path / "ckpt")

    (fig,) = figures
    fig.canvas.draw()  # lays the figure out again at the canvas's dpi, the one measured in
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    (legend,) = fig.legends
    page, axes, key = fig.bbox, ax.get_window_extent(renderer), legend.get_window_extent(renderer)
    title = ax.title.get_window_extent(renderer)
    for box in (key, title, ax.get_tightbbox(renderer)):
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
    assert not key.overlaps(axes)  # below the axes
    assert len(legend.get_texts()) == len(suite.test_tasks)  # one entry per test task
