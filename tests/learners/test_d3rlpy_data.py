from __future__ import annotations

import time

import numpy as np
import pytest

from bmrl_bench.data import Batch
from bmrl_bench.learners.d3rlpy_data import batch_to_mdp_dataset, episode_ends, import_d3rlpy, mdp_arrays


def make_batch(lengths: list[int], ends: list[str], obs_dim: int = 3, act_dim: int = 2, seed: int = 0) -> Batch:
    """Episodes of the given lengths; each ends in 'terminal', 'timeout' or 'none' (no flag).

    Observation and action rows carry a unique id (100 * episode + t) in column 0, so any
    pairing of an observation with another step's action is visible.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for e, (n, end) in enumerate(zip(lengths, ends)):
        ids = 100.0 * e + np.arange(n + 1, dtype=np.float32)
        obs = np.concatenate([ids[:, None], rng.normal(size=(n + 1, obs_dim - 1))], axis=1).astype(np.float32)
        act = np.concatenate([ids[:n, None], rng.uniform(-1, 1, size=(n, act_dim - 1))], axis=1).astype(np.float32)
        terminals = np.zeros(n, np.float32)
        timeouts = np.zeros(n, np.float32)
        if end == "terminal":
            terminals[-1] = 1.0
        elif end == "timeout":
            timeouts[-1] = 1.0
        parts.append(Batch(
            observations=obs[:-1], actions=act, rewards=rng.normal(size=n).astype(np.float32),
            next_observations=obs[1:], terminals=terminals, timeouts=timeouts,
            task_index=np.full(n, e % 2, np.int64),
        ))
    return Batch.concatenate(parts)


def d3rlpy_transitions(dataset) -> list[tuple[np.ndarray, np.ndarray, float, np.ndarray | None]]:
    """Every transition d3rlpy can sample, read off `dataset.episodes` (s' None at a termination)."""
    out = []
    for ep in dataset.episodes:
        for i in range(ep.transition_count):
            terminal = ep.terminated and i == ep.size() - 1
            nxt = None if terminal else ep.observations[i + 1]
            out.append((ep.observations[i], ep.actions[i], float(ep.rewards[i, 0]), nxt))
    return out


def our_transitions(batch: Batch) -> list[tuple[np.ndarray, np.ndarray, float, np.ndarray | None]]:
    return [(batch.observations[t], batch.actions[t], float(batch.rewards[t]),
             None if batch.terminals[t] else batch.next_observations[t]) for t in range(len(batch))]


def assert_same_transitions(dataset, batch: Batch) -> None:
    ours, theirs = our_transitions(batch), d3rlpy_transitions(dataset)
    assert len(theirs) == len(ours) == dataset.transition_count
    for (s, a, r, s2), (ds, da, dr, ds2) in zip(ours, theirs):
        np.testing.assert_array_equal(ds, s)
        np.testing.assert_array_equal(da, a)
        assert dr == r
        if s2 is None:
            assert ds2 is None
        else:
            np.testing.assert_array_equal(ds2, s2)


def test_two_episodes_terminal_then_timeout() -> None:
    batch = make_batch([3, 4], ["terminal", "timeout"])
    dataset = batch_to_mdp_dataset(batch)
    eps = dataset.episodes
    assert [ep.size() for ep in eps] == [3, 5]  # the cut episode keeps its final observation
    assert [ep.terminated for ep in eps] == [True, False]
    assert [ep.transition_count for ep in eps] == [3, 4]
    # the padded row: the final next observation, a zero action, reward 0
    np.testing.assert_array_equal(eps[1].observations[4], batch.next_observations[-1])
    np.testing.assert_array_equal(eps[1].actions[4], np.zeros(2, np.float32))
    assert eps[1].rewards[4, 0] == 0.0
    assert_same_transitions(dataset, batch)


def test_transition_picker_gives_the_same_tuples_and_terminal_flags() -> None:
    """What d3rlpy's sampler (BasicTransitionPicker) builds, index by index, equals our rows."""
    batch = make_batch([3, 4], ["terminal", "timeout"])
    dataset = batch_to_mdp_dataset(batch)
    t = 0
    for ep in dataset.episodes:
        for i in range(ep.transition_count):
            tr = dataset.transition_picker(ep, i)
            np.testing.assert_array_equal(tr.observation, batch.observations[t])
            np.testing.assert_array_equal(tr.action, batch.actions[t])
            assert float(tr.reward[0]) == float(batch.rewards[t])
            assert tr.terminal == batch.terminals[t]
            if not batch.terminals[t]:  # after a termination d3rlpy uses a zero s' and never bootstraps
                np.testing.assert_array_equal(tr.next_observation, batch.next_observations[t])
            t += 1
    assert t == len(batch)


def assert_aligned(dataset) -> None:
    """Observation t carries the id of action t in column 0, in every episode."""
    for ep in dataset.episodes:
        n = ep.transition_count
        np.testing.assert_array_equal(ep.observations[:n, 0], ep.actions[:n, 0])


def test_observation_t_pairs_with_action_t_across_many_episodes() -> None:
    batch = make_batch([5, 3, 7, 2, 4], ["timeout", "terminal", "timeout", "timeout", "terminal"])
    dataset = batch_to_mdp_dataset(batch)
    assert len(dataset.episodes) == 5
    assert_aligned(dataset)
    assert_same_transitions(dataset, batch)


def test_the_get_minari_layout_is_misaligned_and_the_check_sees_it() -> None:
    """d3rlpy's get_minari concatenates T+1 observations against T actions: the check above catches that."""
    d3rlpy = import_d3rlpy()
    lengths = [5, 3, 7]
    batch = make_batch(lengths, ["timeout", "timeout", "timeout"])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    minari_obs = np.concatenate([np.concatenate([batch.observations[s:s + n], batch.next_observations[s + n - 1:s + n]])
                                 for s, n in zip(starts, lengths)])
    naive = d3rlpy.dataset.MDPDataset(observations=minari_obs, actions=batch.actions, rewards=batch.rewards,
                                      terminals=batch.terminals, timeouts=batch.timeouts)
    with pytest.raises(AssertionError):
        assert_aligned(naive)
    assert_aligned(batch_to_mdp_dataset(batch))


def test_pooled_tasks_unflagged_end_and_double_flags() -> None:
    """Several tasks pooled; the last row has no flag; a row with both flags counts as a termination."""
    batch = make_batch([4, 2, 3], ["timeout", "terminal", "none"])
    batch.timeouts[5] = 1.0  # episode 1 ends with terminal AND timeout
    dataset = batch_to_mdp_dataset(batch)
    assert [ep.size() for ep in dataset.episodes] == [5, 2, 4]
    assert [ep.terminated for ep in dataset.episodes] == [False, True, False]
    assert_same_transitions(dataset, batch)


def test_unflagged_discontinuity_splits_the_episode() -> None:
    """Two episodes meeting with no flag (s'_t != s_{t+1}) are still kept apart, transitions intact."""
    batch = make_batch([3, 4], ["none", "timeout"])
    terminal, cut = episode_ends(batch)
    assert not terminal.any()
    np.testing.assert_array_equal(np.flatnonzero(cut), [2, 6])
    dataset = batch_to_mdp_dataset(batch)
    assert [ep.size() for ep in dataset.episodes] == [4, 5]
    assert_same_transitions(dataset, batch)


def test_arrays_layout_and_dtypes() -> None:
    batch = make_batch([2, 2], ["terminal", "timeout"])
    arrays = mdp_arrays(batch)
    assert arrays["observations"].shape == (5, 3) and arrays["actions"].shape == (5, 2)
    assert arrays["rewards"].shape == (5, 1)
    assert all(a.dtype == np.float32 for a in arrays.values())
    np.testing.assert_array_equal(arrays["terminals"], [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(arrays["timeouts"], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(arrays["observations"][:4], batch.observations)
    np.testing.assert_array_equal(arrays["observations"][4], batch.next_observations[3])


def test_conversion_is_vectorised() -> None:
    n, length = 200_000, 200
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, 17)).astype(np.float32)
    timeouts = (np.arange(n) % length == length - 1).astype(np.float32)
    next_obs = obs[1:].copy()
    batch = Batch(obs[:-1], rng.uniform(-1, 1, (n, 6)).astype(np.float32), rng.normal(size=n).astype(np.float32),
                  next_obs, np.zeros(n, np.float32), timeouts, np.zeros(n, np.int64))
    start = time.perf_counter()
    arrays = mdp_arrays(batch)
    assert time.perf_counter() - start < 2.0  # a per-row Python loop takes far longer
    assert arrays["observations"].shape == (n + n // length, 17)


def test_empty_batch_is_refused() -> None:
    batch = make_batch([2], ["timeout"]).select(np.zeros(2, bool))
    with pytest.raises(ValueError, match="empty"):
        batch_to_mdp_dataset(batch)
