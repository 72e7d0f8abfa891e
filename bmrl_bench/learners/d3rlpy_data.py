"""d3rlpy, seen from this package: a quiet import, our `Batch` as its `MDPDataset`, its BCQ's config.

Used by the d3rlpy BCQ baseline (`baselines/bcq.py`) and by the speed bench (`bmrl_bench.bench`).

Our flat `Batch` -> d3rlpy `MDPDataset`, with observations and actions aligned.

d3rlpy 2.8.1's `get_minari` concatenates each episode's T+1 observations against its
T actions, so from the second episode on observation t is paired with another step's
action. This conversion builds d3rlpy's layout from the flat transitions instead:

- an episode ending in a true termination keeps its T rows (s_t, a_t, r_t) and
  `terminals = 1` on its last row (d3rlpy then does not bootstrap there);
- an episode cut by a time limit gets one extra row: its final next observation,
  with a zero (dummy) action, reward 0 and `timeouts = 1`. d3rlpy drops the last row
  of a non-terminated episode as a transition start, so it yields exactly the T real
  transitions, the last one with s' = the final next observation and bootstrapping.

Episodes end at a row whose terminal or timeout is 1, at the last row, and at a row
whose next observation is not the following row's observation (a discontinuity can
only mean the rows of two episodes meet; it is treated as a time-limit cut, so every
transition still comes out exactly as it went in).
"""
from __future__ import annotations

import contextlib
import functools
import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bmrl_bench.data import Batch

if TYPE_CHECKING:
    import d3rlpy


@functools.cache
def import_d3rlpy() -> Any:
    """`import d3rlpy`, quietly: old gym's 4-line notice (printed to stderr at import) is dropped,
    and d3rlpy's structlog output (to stdout, every epoch) is limited to warnings and errors."""
    with contextlib.redirect_stderr(io.StringIO()):
        import d3rlpy
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return d3rlpy


def episode_ends(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (N,) masks: rows ending an episode by termination, and by a cut (time limit etc.)."""
    n = len(batch)
    terminal = batch.terminals.astype(bool)
    cut = batch.timeouts.astype(bool) & ~terminal  # a termination wins when both are set
    if n:
        # s'_t != s_{t+1}: two episodes meet here even if no flag says so.
        gap = np.zeros(n, dtype=bool)
        gap[:-1] = np.any(batch.next_observations[:-1] != batch.observations[1:], axis=1)
        cut |= gap & ~terminal
        cut[-1] |= not terminal[-1]  # the last row always ends an episode
    return terminal, cut


def mdp_arrays(batch: Batch) -> dict[str, np.ndarray]:
    """The arrays `MDPDataset` is built from: observations, actions, rewards (M, 1), terminals, timeouts.

    M = N + (number of cut episodes): each cut episode gains one row holding its final
    next observation.
    """
    n, obs_dim = batch.observations.shape
    act_dim = batch.actions.shape[1]
    terminal, cut = episode_ends(batch)
    cuts_so_far = np.cumsum(cut)  # inclusive
    rows = np.arange(n) + cuts_so_far - cut  # where each real transition goes
    extra = np.flatnonzero(cut) + cuts_so_far[cut]  # where each cut episode's final observation goes
    m = n + int(cut.sum())

    observations = np.zeros((m, obs_dim), dtype=np.float32)
    actions = np.zeros((m, act_dim), dtype=np.float32)
    rewards = np.zeros((m, 1), dtype=np.float32)
    terminals = np.zeros(m, dtype=np.float32)
    timeouts = np.zeros(m, dtype=np.float32)

    observations[rows] = batch.observations
    actions[rows] = batch.actions
    rewards[rows, 0] = batch.rewards
    terminals[rows[terminal]] = 1.0
    observations[extra] = batch.next_observations[cut]
    timeouts[extra] = 1.0
    return {"observations": observations, "actions": actions, "rewards": rewards, "terminals": terminals,
            "timeouts": timeouts}


def batch_to_mdp_dataset(batch: Batch) -> d3rlpy.dataset.MDPDataset:
    """A d3rlpy dataset holding exactly the transitions of `batch` (task labels dropped)."""
    if len(batch) == 0:
        raise ValueError("cannot build a d3rlpy dataset from an empty batch")
    d3rlpy = import_d3rlpy()
    arrays = mdp_arrays(batch)
    return d3rlpy.dataset.MDPDataset(
        **arrays,
        action_space=d3rlpy.ActionSpace.CONTINUOUS,
        action_size=batch.actions.shape[1],
    )


def d3rlpy_bcq_config(
    *, actor_lr: float, critic_lr: float, imitator_lr: float, actor_hidden: Sequence[int], critic_hidden: Sequence[int],
    vae_hidden: Sequence[int], batch_size: int, gamma: float, tau: float, lam: float, n_action_samples: int,
    action_flexibility: float, rl_start_step: int, beta: float,
) -> d3rlpy.algos.BCQConfig:
    """d3rlpy's `BCQConfig` with two critics, in d3rlpy's own names (`lam` is our learner's `lmbda`,
    `action_flexibility` its `phi`)."""
    d3rlpy = import_d3rlpy()
    enc = d3rlpy.models.encoders.VectorEncoderFactory
    return d3rlpy.algos.BCQConfig(
        actor_learning_rate=actor_lr,
        critic_learning_rate=critic_lr,
        imitator_learning_rate=imitator_lr,
        actor_encoder_factory=enc(hidden_units=list(actor_hidden)),
        critic_encoder_factory=enc(hidden_units=list(critic_hidden)),
        imitator_encoder_factory=enc(hidden_units=list(vae_hidden)),
        batch_size=batch_size,
        gamma=gamma,
        tau=tau,
        n_critics=2,
        lam=lam,
        n_action_samples=n_action_samples,
        action_flexibility=action_flexibility,
        rl_start_step=rl_start_step,
        beta=beta,
    )
