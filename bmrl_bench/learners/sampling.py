"""The one per-task sampler of the meta-learners (tiMe, PEARL) and the transition rows their encoders read.

`TaskSampler` sorts the meta-train transitions by task once (a stable sort), so task k's
transitions are the contiguous slice `offsets[k] : offsets[k] + counts[k]`; a draw is then
one uniform number per row, scaled into a task's slice. Two draws, each kept exactly as
its algorithm has always drawn it (so results do not change):
- `indices(shape, gen)`: stratified, every task in every draw (torch generator; tiMe);
- `task_indices(rng, tasks, per_task)`: `tasks` tasks drawn uniformly with replacement,
  `per_task` transitions of each (numpy generator; PEARL).
"""
from __future__ import annotations

import numpy as np
import torch

from bmrl_bench.data import Batch


class TaskSampler:
    """Transitions sorted by task; `t` holds them as tensors on `device`, `k` is the number of tasks."""

    def __init__(self, batch: Batch, num_tasks: int, device: str) -> None:
        counts = np.bincount(batch.task_index, minlength=num_tasks)
        if len(counts) != num_tasks or (counts == 0).any():
            raise ValueError(f"every meta-train task 0..{num_tasks - 1} needs at least one transition, and no other "
                             f"task may appear; transitions per task: {counts.tolist()}")
        order = np.argsort(batch.task_index, kind="stable")
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]])  # (K,) int64, numpy: for numpy draws
        self.sizes = counts
        self.offsets = torch.as_tensor(self.starts, device=device)
        self.counts = torch.as_tensor(counts, device=device)
        self.t = batch.tensors(device, order)
        self.k = num_tasks

    def indices(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        """(K, *shape) indices; row k lies in task k's slice."""
        u = torch.rand((self.k, *shape), generator=gen, device=self.counts.device)
        view = (self.k,) + (1,) * len(shape)
        return self.offsets.view(view) + (u * self.counts.view(view)).long()

    def task_indices(self, rng: np.random.Generator, tasks: int, per_task: int) -> torch.Tensor:
        """(tasks, per_task) indices: row i lies in one task's slice, that task drawn uniformly (one numpy draw)."""
        u = rng.random((tasks, 1 + per_task))
        task = (u[:, 0] * self.k).astype(np.int64)
        rows = self.starts[task, None] + (u[:, 1:] * self.sizes[task, None]).astype(np.int64)
        return torch.from_numpy(rows).to(self.counts.device)

    def gather(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[idx] for k, v in self.t.items()}


def transitions(s: torch.Tensor, a: torch.Tensor, r: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """Context rows `(..., 2o+a+1)`: (s, a, r, s') side by side, what a set encoder reads."""
    return torch.cat([s, a, r.unsqueeze(-1), s2], -1)


def transition_row(obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray) -> np.ndarray:
    """One observed transition as a float32 context row (an agent's context at test time)."""
    return np.concatenate([np.ravel(obs), np.ravel(action), [float(reward)], np.ravel(next_obs)]).astype(np.float32)
