from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import trim_mean

from bmrl_bench.errors import BmrlError
from bmrl_bench.metrics import (
    AGGREGATES,
    MetricsError,
    aggregate,
    iqm,
    mean,
    median,
    normalize,
    optimality_gap,
    probability_of_improvement,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)

# Few reps keep the suite fast; the properties tested do not depend on the count.
REPS = 300


# ---------------------------------------------------------------------------- normalize


def test_normalize_per_task_refs() -> None:
    returns = np.array([[0.0, 10.0], [5.0, 30.0]])
    got = normalize(returns, np.array([0.0, 10.0]), np.array([10.0, 30.0]))
    np.testing.assert_allclose(got, [[0.0, 0.0], [0.5, 1.0]])


def test_normalize_scalar_refs_and_scalar_returns() -> None:
    np.testing.assert_allclose(normalize(np.array([-1.0, 3.0]), -1.0, 3.0), [0.0, 1.0])
    # The harness normalizes one mean return at a time.
    assert float(normalize(np.float64(150.0), 100.0, 300.0)) == 0.25


def test_normalize_rejects_empty_or_inverted_range() -> None:
    with pytest.raises(ValueError, match="ref_max must exceed ref_min"):
        normalize(np.zeros((2, 2)), np.array([0.0, 1.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="ref_max must exceed ref_min"):
        normalize(np.zeros(3), 2.0, 1.0)


def test_normalize_rejects_mismatched_task_axis() -> None:
    with pytest.raises(ValueError, match="one value per task"):
        normalize(np.zeros((2, 3)), np.zeros(2), np.ones(2))


# ---------------------------------------------------------------------------- point estimates


def test_iqm_hand_example() -> None:
    # 8 scores: drop 2 at each end -> mean(3, 4, 5, 6).
    assert iqm(np.array([[1, 2, 3, 4], [5, 6, 7, 8]])) == 4.5


def test_iqm_of_0_to_99_is_mean_of_25_to_74() -> None:
    scores = np.arange(100, dtype=float).reshape(10, 10)
    assert iqm(scores) == pytest.approx(np.mean(np.arange(25, 75)))  # 49.5
    # Order does not matter: the scores are pooled over runs and tasks.
    shuffled = np.random.default_rng(0).permutation(scores.ravel()).reshape(4, 25)
    assert iqm(shuffled) == pytest.approx(49.5)


def test_iqm_matches_rliable_trim_mean_when_cut_rounds_down() -> None:
    # n = 6: int(1.5) = 1 score dropped at each end -> mean(2, 3, 10, 20).
    scores = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 100.0]])
    assert iqm(scores) == pytest.approx(8.75)
    assert iqm(scores) == pytest.approx(trim_mean(scores, 0.25, axis=None))


def test_mean_pools_and_median_is_rliables() -> None:
    scores = np.array([[0.0, 1.0, 10.0], [2.0, 3.0, 20.0]])
    assert mean(scores) == pytest.approx(6.0)
    # rliable: median of the per-task means (1, 2, 15), not of the pooled scores (2.5).
    assert median(scores) == 2.0


def test_optimality_gap_hand_example() -> None:
    # gaps: 1, 0.5, 0 (1.0 is optimal), 0 (above gamma counts as optimal) -> 1.5 / 4.
    scores = np.array([[0.0, 0.5], [1.0, 1.7]])
    assert optimality_gap(scores) == pytest.approx(0.375)
    # gamma = 0.5: gaps 0.5, 0, 0, 0.
    assert optimality_gap(scores, gamma=0.5) == pytest.approx(0.125)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([1.0, 2.0]), "2-D"),
        (np.zeros((2, 2, 2)), "2-D"),
        (np.zeros((0, 3)), "at least one run"),
        (np.array([[1.0, np.nan]]), "NaN or inf"),
        (np.array([[1.0, np.inf]]), "NaN or inf"),
    ],
)
@pytest.mark.parametrize("fn", [mean, median, iqm, optimality_gap])
def test_statistics_reject_bad_scores(fn, bad: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        fn(bad)
    assert isinstance(info.value, BmrlError)  # the CLI prints it as one line
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------- stratified bootstrap


def test_bootstrap_resamples_within_each_task_column() -> None:
    # Task 0 always scores 0, task 1 always 1. Resampling within columns keeps one of each
    # per run, so every replicate's mean is exactly 0.5; pooling runs across tasks would not.
    scores = np.column_stack([np.zeros(5), np.ones(5)])
    assert stratified_bootstrap_ci(scores, mean, reps=REPS) == (0.5, 0.5)
    assert stratified_bootstrap_ci(scores, iqm, reps=REPS) == (0.5, 0.5)


def test_bootstrap_zero_width_when_runs_identical_within_task() -> None:
    scores = np.tile([0.1, 0.7, 0.4], (6, 1))
    point = iqm(scores)
    assert stratified_bootstrap_ci(scores, iqm, reps=REPS) == (point, point)
    assert stratified_bootstrap_ci(scores, lambda s: float(np.max(s)), reps=REPS) == (0.7, 0.7)


def test_bootstrap_single_run_collapses_to_point() -> None:
    scores = np.array([[0.3, 0.9, 0.1, 0.5]])
    for fn in AGGREGATES.values():
        lo, hi = stratified_bootstrap_ci(scores, fn, reps=REPS)
        assert lo == hi == fn(scores)


def test_bootstrap_two_runs_one_task_hand_checkable() -> None:
    # Runs {0, 1}: a replicate's mean is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4,
    # so the 95% percentile interval is (0, 1) and a 40% one is (0.5, 0.5).
    scores = np.array([[0.0], [1.0]])
    assert stratified_bootstrap_ci(scores, mean, reps=2000) == (0.0, 1.0)
    assert stratified_bootstrap_ci(scores, mean, reps=2000, confidence=0.4) == (0.5, 0.5)


def _noisy_scores(num_runs: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(loc=np.linspace(0.2, 0.8, 5), scale=0.2, size=(num_runs, 5))


def test_bootstrap_ci_contains_point_and_is_deterministic() -> None:
    scores = _noisy_scores(8)
    for fn in AGGREGATES.values():
        lo, hi = stratified_bootstrap_ci(scores, fn, reps=REPS, seed=3)
        assert lo < fn(scores) < hi
        assert stratified_bootstrap_ci(scores, fn, reps=REPS, seed=3) == (lo, hi)
    other = stratified_bootstrap_ci(scores, iqm, reps=REPS, seed=3)
    assert stratified_bootstrap_ci(scores, iqm, reps=REPS, seed=4) != other


def test_bootstrap_ci_narrows_with_more_runs() -> None:
    few = stratified_bootstrap_ci(_noisy_scores(4), mean, reps=REPS)
    many = stratified_bootstrap_ci(_noisy_scores(100), mean, reps=REPS)
    assert many[1] - many[0] < 0.5 * (few[1] - few[0])


def test_bootstrap_wider_confidence_gives_wider_interval() -> None:
    scores = _noisy_scores(6)
    lo90, hi90 = stratified_bootstrap_ci(scores, iqm, reps=REPS, confidence=0.9)
    lo99, hi99 = stratified_bootstrap_ci(scores, iqm, reps=REPS, confidence=0.99)
    assert lo99 <= lo90 < hi90 <= hi99


def test_fast_path_matches_generic_statistic() -> None:
    # The batched iqm/mean/median/gap must give what calling the function per replicate gives.
    scores = _noisy_scores(7)
    for fn in AGGREGATES.values():

        def wrapped(s: np.ndarray, fn: Callable[[np.ndarray], float] = fn) -> float:
            return fn(s)  # not in the fast-path table -> per-replicate loop

        fast = stratified_bootstrap_ci(scores, fn, reps=REPS, seed=5)
        slow = stratified_bootstrap_ci(scores, wrapped, reps=REPS, seed=5)
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)
    gap_half = functools.partial(optimality_gap, gamma=0.5)
    lo, hi = stratified_bootstrap_ci(scores, gap_half, reps=REPS)
    assert lo <= gap_half(scores) <= hi


def test_bootstrap_rejects_bad_arguments() -> None:
    scores = _noisy_scores(3)
    with pytest.raises(ValueError, match="reps"):
        stratified_bootstrap_ci(scores, mean, reps=0)
    with pytest.raises(ValueError, match="confidence"):
        stratified_bootstrap_ci(scores, mean, confidence=1.0)
    with pytest.raises(ValueError, match="2-D"):
        stratified_bootstrap_ci(scores[0], mean)


# ---------------------------------------------------------------------------- probability of improvement


def test_poi_clearly_separated_and_identical() -> None:
    x = np.array([[5.0, 6.0], [7.0, 8.0]])
    y = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 4.5]])
    assert probability_of_improvement(x, y) == 1.0
    assert probability_of_improvement(y, x) == 0.0
    assert probability_of_improvement(x, x) == 0.5


def test_poi_hand_computed_mixed_cases() -> None:
    # Pairs (1,2) lose, (3,2) win: 1/2.
    assert probability_of_improvement(np.array([[1.0], [3.0]]), np.array([[2.0], [2.0]])) == 0.5
    # Two of three runs beat 2: 2/3.
    assert probability_of_improvement(np.array([[1.0], [3.0], [3.0]]), np.array([[2.0]])) == pytest.approx(2 / 3)
    # Ties count half: x = {1, 2}, y = {2}: pairs lose, tie -> 0.25.
    assert probability_of_improvement(np.array([[1.0], [2.0]]), np.array([[2.0]])) == 0.25
    # Averaged over tasks: task 0 -> 1.0, task 1 -> 0.25.
    x = np.array([[3.0, 1.0], [4.0, 2.0]])
    y = np.array([[0.0, 2.0]])
    assert probability_of_improvement(x, y) == pytest.approx(0.625)


def test_poi_matches_mann_whitney_u() -> None:
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(2)
    x = rng.integers(0, 4, size=(6, 3)).astype(float)  # small integers: plenty of ties
    y = rng.integers(0, 4, size=(4, 3)).astype(float)
    expected = np.mean([mannwhitneyu(x[:, t], y[:, t]).statistic / (6 * 4) for t in range(3)])
    assert probability_of_improvement(x, y) == pytest.approx(expected)


def test_poi_rejects_mismatched_tasks() -> None:
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement(np.zeros((2, 3)), np.zeros((2, 2)))


def test_poi_ci() -> None:
    x = _noisy_scores(6, seed=1) + 0.1
    y = _noisy_scores(5, seed=2)
    point = probability_of_improvement(x, y)
    lo, hi = probability_of_improvement_ci(x, y, reps=REPS, seed=0)
    assert 0.0 <= lo < point < hi <= 1.0
    assert probability_of_improvement_ci(x, y, reps=REPS, seed=0) == (lo, hi)
    # Separated samples: every replicate is 1.0.
    assert probability_of_improvement_ci(x + 10.0, y, reps=REPS) == (1.0, 1.0)
    # Constant within each task: zero width at the point.
    xc, yc = np.tile([1.0, 2.0], (3, 1)), np.tile([2.0, 1.0], (2, 1))
    assert probability_of_improvement_ci(xc, yc, reps=REPS) == (0.5, 0.5)


# ---------------------------------------------------------------------------- aggregate


def test_aggregate_keys_points_and_intervals() -> None:
    scores = _noisy_scores(5)
    agg = aggregate(scores, reps=REPS, seed=7)
    assert list(agg) == ["iqm", "mean", "median", "optimality_gap"] == list(AGGREGATES)
    for name, (point, lo, hi) in agg.items():
        assert point == AGGREGATES[name](scores)
        assert lo <= point <= hi
        # Sharing replicates across statistics gives the same interval as one at a time.
        assert (lo, hi) == stratified_bootstrap_ci(scores, AGGREGATES[name], reps=REPS, seed=7)


def test_aggregate_rejects_non_finite() -> None:
    with pytest.raises(MetricsError, match="NaN or inf"):
        aggregate(np.array([[0.0, np.nan]]))
