"""The family-wide expert's stopping rule: hand-computed curves, then a real (tiny) training run."""
from __future__ import annotations

import pytest

from bmrl_bench.builder.expert import mean_converged as _converged
from bmrl_bench.builder.expert import train_expert
from bmrl_bench.families import get_family
from bmrl_bench.suites import ExpertRecipe


def test_converged_on_hand_computed_curves() -> None:
    # best before the last 3 checks: -50; first check -100, so scale 50 and threshold -50 + 0.02 * 50 = -49.
    flat = [(1, -100.0), (2, -50.0), (3, -49.5), (4, -49.0), (5, -49.8)]
    assert _converged(flat, patience=3, min_improvement=0.02)
    rising = flat[:-1] + [(5, -48.9)]
    assert not _converged(rising, patience=3, min_improvement=0.02)
    assert not _converged(flat[:3], patience=3, min_improvement=0.02)  # too few checks to judge
    assert _converged([(1, -10.0), (2, -10.0)], patience=1, min_improvement=0.0)  # no progress at all


@pytest.mark.parametrize(("patience", "steps", "converged"), [(1, 200, True), (100, 400, False)])
def test_expert_stops_at_convergence_or_max_steps(patience: int, steps: int, converged: bool) -> None:
    # min_improvement 1e12: nothing counts as progress, so the rule fires at the first check past min_steps.
    recipe = ExpertRecipe(min_steps=200, max_steps=400, eval_every=100, patience=patience, min_improvement=1e12,
                          num_envs=2, hidden=[16, 16], batch_size=16)
    _, training = train_expert(get_family("pointgoal"), 0.0, 180.0, 20, recipe)
    assert training.steps == steps
    assert training.converged is converged
    assert [s for s, _ in training.curve] == list(range(100, steps + 1, 100))
    assert all(r < 0 for _, r in training.curve)  # PointGoal rewards are minus a distance
