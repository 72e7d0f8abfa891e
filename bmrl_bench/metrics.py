"""Statistics for benchmark scores, after rliable's `metrics.py` (Agarwal et al., 2021).

Pure numpy functions. Unless stated otherwise a `scores` array has shape
`(num_runs, num_tasks)`: `scores[n, m]` is the (normalized) score of run (seed) `n`
on task `m`. Point estimates are plain floats; intervals are `(lo, hi)` tuples.

Bad input raises `MetricsError`, which is both a `ValueError` (numeric-library
convention) and a `BmrlError` (so the CLI prints one line instead of a traceback).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bmrl_bench.errors import BmrlError

__all__ = [
    "AGGREGATES",
    "MetricsError",
    "aggregate",
    "iqm",
    "mean",
    "median",
    "normalize",
    "optimality_gap",
    "probability_of_improvement",
    "probability_of_improvement_ci",
    "stratified_bootstrap_ci",
]

# Resampled arrays are evaluated in chunks of about this many elements, so memory stays
# bounded for large (reps, runs, tasks) without changing the random draws.
_CHUNK_ELEMENTS = 1 << 22


class MetricsError(BmrlError, ValueError):
    """Invalid input to a metric (wrong shape, non-finite values, bad reference range)."""


# ---------------------------------------------------------------------------- validation


def _as_scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    """`scores` as a finite, non-empty float64 array of shape (num_runs, num_tasks)."""
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"{name} must be a numeric array of shape (num_runs, num_tasks): {exc}") from None
    if arr.ndim != 2:
        raise MetricsError(f"{name} must be 2-D (num_runs, num_tasks), got shape {arr.shape}; use scores[None, :] for "
                           "one run")
    if arr.size == 0:
        raise MetricsError(f"{name} must have at least one run and one task, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise MetricsError(f"{name} contains NaN or inf ({int(np.sum(~np.isfinite(arr)))} values); fix the returns "
                           "before aggregating")
    return arr


def _check_bootstrap_args(reps: int, confidence: float) -> None:
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise MetricsError(f"reps must be a positive integer, got {reps!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise MetricsError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


# ---------------------------------------------------------------------------- normalization


def normalize(returns: np.ndarray, ref_min: np.ndarray | float, ref_max: np.ndarray | float) -> np.ndarray:
    """Normalized score `(returns - ref_min) / (ref_max - ref_min)`.

    `returns` has any shape whose last axis is the task axis (e.g. `(num_runs, num_tasks)`),
    or is a scalar; `ref_min` / `ref_max` are scalars or `(num_tasks,)` arrays, broadcast
    over the last axis. Returns a float64 array of the broadcast shape (0-d for scalars).
    """
    ret = np.asarray(returns, dtype=np.float64)
    lo = np.asarray(ref_min, dtype=np.float64)
    hi = np.asarray(ref_max, dtype=np.float64)
    for name, arr in (("returns", ret), ("ref_min", lo), ("ref_max", hi)):
        if not np.all(np.isfinite(arr)):
            raise MetricsError(f"{name} contains NaN or inf; normalization needs finite values")
    if lo.ndim > 1 or hi.ndim > 1:
        raise MetricsError(f"ref_min / ref_max must be scalars or (num_tasks,) arrays, got shapes {lo.shape} and "
                           f"{hi.shape}")
    try:
        shape = np.broadcast_shapes(ret.shape, lo.shape, hi.shape)
    except ValueError:
        raise MetricsError(
            f"ref_min {lo.shape} / ref_max {hi.shape} do not match the task axis of returns {ret.shape}; pass one "
            "value per task"
        ) from None
    # A zero or negative range would silently flip or blow up every score.
    bad = np.broadcast_to(hi <= lo, np.broadcast_shapes(lo.shape, hi.shape))
    if np.any(bad):
        where = np.flatnonzero(bad).tolist()
        raise MetricsError(f"ref_max must exceed ref_min for every task; violated at task index {where}")
    out = (ret - lo) / (hi - lo)
    return np.asarray(out, dtype=np.float64).reshape(shape)


# ---------------------------------------------------------------------------- point estimates


def mean(scores: np.ndarray) -> float:
    """Mean over all runs x tasks of `scores (num_runs, num_tasks)`.

    Equal to rliable's mean of per-task means, since every task has the same run count.
    """
    return float(np.mean(_as_scores(scores)))


def median(scores: np.ndarray) -> float:
    """Median over tasks of the per-task mean score (rliable's `aggregate_median`).

    scores: (num_runs, num_tasks).
    """
    return float(np.median(np.mean(_as_scores(scores), axis=0)))


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of `scores (num_runs, num_tasks)`, flattened: the mean of the middle 50%.

    Exactly rliable's `aggregate_iqm`: `scipy.stats.trim_mean(scores, 0.25, axis=None)`,
    which drops `int(0.25 * n)` scores from each end of the sorted n scores.
    """
    from scipy.stats import trim_mean  # scipy.stats costs ~0.5 s to import; only pay when used

    return float(trim_mean(_as_scores(scores), proportiontocut=0.25, axis=None))


def optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> float:
    """Mean over all runs x tasks of `max(gamma - score, 0)` (rliable's `aggregate_optimality_gap`).

    Scores above `gamma` count as optimal: surpassing the target earns nothing extra.
    """
    arr = _as_scores(scores)
    return float(np.mean(gamma - np.minimum(arr, gamma)))


# Batched versions of the aggregates: `(B, num_runs, num_tasks) -> (B,)`. The bootstrap uses
# them instead of calling the scalar function once per replicate (thousands of calls).
def _batched_mean(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1).mean(axis=1)


def _batched_median(x: np.ndarray) -> np.ndarray:
    return np.median(x.mean(axis=1), axis=1)


def _batched_iqm(x: np.ndarray) -> np.ndarray:
    flat = np.sort(x.reshape(x.shape[0], -1), axis=1)
    n = flat.shape[1]
    cut = int(0.25 * n)  # same cut as scipy.stats.trim_mean
    return flat[:, cut : n - cut].mean(axis=1)


def _batched_optimality_gap(x: np.ndarray) -> np.ndarray:
    return (1.0 - np.minimum(x, 1.0)).reshape(x.shape[0], -1).mean(axis=1)


# Keyed by the public function object; any other statistic falls back to a Python loop.
_BATCHED: dict[Callable[..., float], Callable[[np.ndarray], np.ndarray]] = {
    mean: _batched_mean,
    median: _batched_median,
    iqm: _batched_iqm,
    optimality_gap: _batched_optimality_gap,  # default gamma=1.0 only; partials take the loop
}


# ---------------------------------------------------------------------------- bootstrap


def _stratified_indices(rng: np.random.Generator, num_runs: int, num_tasks: int, reps: int) -> np.ndarray:
    """Run indices `(reps, num_runs, num_tasks)`, drawn with replacement independently per task."""
    return rng.integers(0, num_runs, size=(reps, num_runs, num_tasks))


def _replicate_stats(
    scores: np.ndarray, idx: np.ndarray, statistics: list[Callable[[np.ndarray], float]]
) -> np.ndarray:
    """Each statistic on each resampled array `scores[idx[b, n, m], m]`; returns `(len(statistics), reps)`."""
    reps, num_runs, num_tasks = idx.shape
    cols = np.arange(num_tasks)
    out = np.empty((len(statistics), reps), dtype=np.float64)
    chunk = max(1, _CHUNK_ELEMENTS // (num_runs * num_tasks))
    for start in range(0, reps, chunk):
        # Gathering with the column index keeps every resampled score in its own task.
        resampled = scores[idx[start : start + chunk], cols]
        for k, stat in enumerate(statistics):
            batched = _BATCHED.get(stat)
            if batched is not None:
                out[k, start : start + len(resampled)] = batched(resampled)
            else:
                out[k, start : start + len(resampled)] = [float(stat(r)) for r in resampled]
    return out


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval, as arch's `conf_int(method="percentile")` that rliable calls."""
    tail = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return float(lo), float(hi)


def _bootstrap_cis(
    scores: np.ndarray,
    statistics: list[Callable[[np.ndarray], float]],
    reps: int,
    confidence: float,
    seed: int,
) -> list[tuple[float, float]]:
    """Stratified-bootstrap intervals of several statistics from one shared set of replicates."""
    arr = _as_scores(scores)
    _check_bootstrap_args(reps, confidence)
    if np.all(arr == arr[0]):
        # Every run of each task is identical (e.g. a single run): every replicate equals the
        # data, so the interval is exactly the point, with no float noise from batching.
        return [(float(stat(arr)),) * 2 for stat in statistics]
    idx = _stratified_indices(np.random.default_rng(seed), arr.shape[0], arr.shape[1], reps)
    values = _replicate_stats(arr, idx, statistics)
    return [_percentile_interval(v, confidence) for v in values]


def stratified_bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile confidence interval of `statistic(scores)` by rliable's stratified bootstrap.

    `scores (num_runs, num_tasks)`. Each of the `reps` replicates resamples the runs with
    replacement independently within each task (column), so every replicate keeps all
    tasks and `num_runs` runs of each; `statistic` maps such a `(num_runs, num_tasks)`
    array to a float. The random state comes from `np.random.default_rng(seed)`, so a
    fixed seed gives a fixed interval. With one run (or identical runs per task) the
    interval collapses to the point estimate.
    """
    return _bootstrap_cis(scores, [statistic], reps, confidence, seed)[0]


# ---------------------------------------------------------------------------- probability of improvement


def _batched_poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + 0.5 P(X == Y) averaged over tasks; `x (B, rx, T)`, `y (B, ry, T)` -> `(B,)`."""
    # All run pairs per task: this count is the Mann-Whitney U statistic of x over y.
    xe, ye = x[:, :, None, :], y[:, None, :, :]
    u = (xe > ye).sum(axis=(1, 2)) + 0.5 * (xe == ye).sum(axis=(1, 2))
    return (u / (x.shape[1] * y.shape[1])).mean(axis=1)


def _as_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = _as_scores(x, "x"), _as_scores(y, "y")
    if xa.shape[1] != ya.shape[1]:
        raise MetricsError(f"x and y must cover the same tasks, got {xa.shape[1]} and {ya.shape[1]} task columns")
    return xa, ya


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """Average over tasks of P(X > Y) + 0.5 P(X == Y) (rliable's `probability_of_improvement`).

    `x (runs_x, num_tasks)`, `y (runs_y, num_tasks)`: per task, the fraction of all
    `runs_x * runs_y` run pairs where x wins, ties counting one half (the normalized
    Mann-Whitney U statistic). 1.0 = x always better, 0.5 = indistinguishable.
    """
    xa, ya = _as_pair(x, y)
    return float(_batched_poi(xa[None], ya[None])[0])


def probability_of_improvement_ci(
    x: np.ndarray, y: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of `probability_of_improvement(x, y)` by stratified bootstrap of both.

    x and y are resampled independently, each within each task column (rliable's
    `StratifiedIndependentBootstrap`); x's indices are drawn first, then y's.
    """
    xa, ya = _as_pair(x, y)
    _check_bootstrap_args(reps, confidence)
    if np.all(xa == xa[0]) and np.all(ya == ya[0]):
        point = probability_of_improvement(xa, ya)
        return point, point
    rng = np.random.default_rng(seed)
    ix = _stratified_indices(rng, xa.shape[0], xa.shape[1], reps)
    iy = _stratified_indices(rng, ya.shape[0], ya.shape[1], reps)
    cols = np.arange(xa.shape[1])
    values = np.empty(reps, dtype=np.float64)
    # The pairwise comparison is (B, rx, ry, T); chunk so it stays within the element budget.
    chunk = max(1, _CHUNK_ELEMENTS // (xa.shape[0] * ya.shape[0] * xa.shape[1]))
    for start in range(0, reps, chunk):
        stop = start + chunk
        values[start:stop] = _batched_poi(xa[ix[start:stop], cols], ya[iy[start:stop], cols])
    return _percentile_interval(values, confidence)


# ---------------------------------------------------------------------------- aggregate

AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "iqm": iqm,
    "mean": mean,
    "median": median,
    "optimality_gap": optimality_gap,
}


def aggregate(scores: np.ndarray, reps: int = 2000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Every statistic in `AGGREGATES` on `scores (num_runs, num_tasks)`: name -> (point, lo, hi).

    The 95% intervals share one set of stratified-bootstrap replicates; each equals
    `stratified_bootstrap_ci(scores, AGGREGATES[name], reps, seed=seed)`.
    """
    arr = _as_scores(scores)
    names = list(AGGREGATES)
    cis = _bootstrap_cis(arr, [AGGREGATES[n] for n in names], reps, 0.95, seed)
    return {n: (AGGREGATES[n](arr), lo, hi) for n, (lo, hi) in zip(names, cis)}
