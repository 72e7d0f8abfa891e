"""One task's behaviour data on its way from a behaviour shard to its Minari dataset.

`TaskData` is a dataset's `Episodes` (the same arrays `bmrl_bench.data` reads back)
plus the task parameter and the behaviour SAC's final actor. Compact arrays, not
per-step lists: shard results travel between processes and machines and are cached
on disk (`to_arrays` / `from_arrays`, see `bmrl_bench.builder.units.UnitCache`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bmrl_bench.collect import TaskCollection
from bmrl_bench.data import Episodes, behaviour_policy_path, read_episodes, read_metadata

# The arrays of `Episodes`, in the order a cached unit file stores them.
EPISODE_ARRAYS = ("lengths", "observations", "actions", "rewards", "terminations", "truncations")


def _no_episodes() -> Episodes:
    """What a reference unit carries instead of the data: it needs only the actor."""
    empty = np.zeros(0)
    return Episodes(empty, empty, empty, empty, empty, empty)


@dataclass
class TaskData:
    param: float
    episodes: Episodes
    actor_state: dict[str, np.ndarray]  # the behaviour SAC's final actor (member weights)

    @classmethod
    def from_collection(cls, c: TaskCollection) -> TaskData:
        eps = c.episodes
        return cls(
            param=float(c.param),
            episodes=Episodes(
                lengths=np.array([len(ep) for ep in eps], dtype=np.int64),
                observations=np.concatenate([np.stack(ep.observations).astype(np.float32) for ep in eps]),
                actions=np.concatenate([np.stack(ep.actions).astype(np.float32) for ep in eps]),
                rewards=np.concatenate([np.asarray(ep.rewards, dtype=np.float64) for ep in eps]),
                terminations=np.concatenate([np.asarray(ep.terminations, dtype=bool) for ep in eps]),
                truncations=np.concatenate([np.asarray(ep.truncations, dtype=bool) for ep in eps]),
            ),
            actor_state={k: v.numpy() for k, v in c.actor_state.items()},
        )

    @classmethod
    def from_dataset(cls, dataset_id: str, root: Path, actor_only: bool = False) -> TaskData:
        """The published data and behaviour actor of one task (to recompute its references)."""
        from safetensors.numpy import load_file

        param = float(read_metadata(dataset_id, root)["bmrl_task_param"])
        actor = load_file(str(behaviour_policy_path(dataset_id, root)))
        # The reference units need only the actor: skip reading the episodes.
        return cls(param, _no_episodes() if actor_only else read_episodes(dataset_id, root), actor)

    def actor_tensors(self) -> dict[str, Any]:
        import torch

        return {k: torch.from_numpy(np.array(v)) for k, v in self.actor_state.items()}

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}{k}": getattr(self.episodes, k) for k in EPISODE_ARRAYS}
        out[f"{prefix}param"] = np.array(self.param, dtype=np.float64)
        out.update({f"{prefix}actor.{k}": v for k, v in self.actor_state.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str, actor_only: bool = False) -> TaskData:
        actor = {k[len(prefix) + 6:]: arrays[k] for k in arrays.files if k.startswith(f"{prefix}actor.")}
        episodes = _no_episodes() if actor_only else Episodes(**{k: arrays[f"{prefix}{k}"] for k in EPISODE_ARRAYS})
        return cls(float(arrays[f"{prefix}param"]), episodes, actor)
