"""Checkpoints of an online SAC training (the family-wide expert, a behaviour shard): one keyed .npz, no pickle.

Such a training depends on a `BatchedSAC` (weights, Adam's moments, its torch generator), a
`BatchedReplay` (its rows, write position and sampling RNG), a numpy RNG, and its envs. The first
three are saved and restored here (`learning_arrays` / `restore_learning`); the training adds its
own loop state to the file's `meta` (JSON) and arrays. `read_checkpoint` resumes a file only if
its `key` (what the training depends on) is the caller's, and says why not otherwise.

Envs are not restored from their simulator state (qpos, qvel): MuJoCo's solver also warm-starts
from the last step's accelerations, which that state leaves out, so a restored env would drift in
the last bits. Each env is replayed instead: reset as its episode was, then stepped through the
episode's actions (`replay_episode`), and compared with what was saved (`env_state`).
Nothing here draws a random number or changes a float: a training that writes checkpoints trains
as one that does not.
"""
from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from bmrl_bench.fsutil import atomic_file
from bmrl_bench.learners.sac import BatchedReplay, BatchedSAC

REPLAY_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals")
NOT_THIS_TRAINING = "written by another recipe or code version"
ENV_MOVED = "an env did not replay to its saved state"


@dataclass
class Checkpoint:
    """Where a training keeps its checkpoint, and what the training tells its caller."""

    path: Path
    saved: Callable[[int], None] | None = None  # called with the step after each checkpoint is written
    resumed_at: int | None = None  # set by the training: the step it resumed from (None: from scratch)
    discarded: str = ""  # set by the training: why a file at `path` was not resumed ("" if none was found)


def json_array(obj: Any) -> np.ndarray:
    """`obj` as JSON in a uint8 array: how a checkpoint stores its `meta` without pickle."""
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


def learning_meta(replay: BatchedReplay, rng: np.random.Generator) -> dict[str, Any]:
    """The RNG states and the replay buffer's position, for the checkpoint's `meta`."""
    return {"rng": rng.bit_generator.state, "replay_rng": replay.rng.bit_generator.state,
            "replay_ptr": replay.ptr, "replay_size": replay.size}


def learning_arrays(sac: BatchedSAC, replay: BatchedReplay) -> dict[str, np.ndarray]:
    """The learner's weights, Adam state and torch generator, and the replay buffer's filled rows."""
    arrays: dict[str, np.ndarray] = {"sac_generator": sac.generator.get_state().numpy()}
    arrays.update({f"sac.{k}": v.numpy() for k, v in sac.state_dict().items()})
    arrays.update({f"adam.{k}": v.numpy() for k, v in sac.optimizer_state_dict().items()})
    arrays.update({f"replay.{f}": getattr(replay, f)[:, : replay.size] for f in REPLAY_FIELDS})
    return arrays


def write_checkpoint(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """`meta` (with the training's `key`) and `arrays` in one .npz, written atomically."""
    with atomic_file(path) as f:
        np.savez(f, meta=json_array(meta), **arrays)


def read_checkpoint(checkpoint: Checkpoint | None, key: dict[str, Any]) -> dict[str, Any] | None:
    """The saved training at `checkpoint.path` if it is this one (same `key`); else None, and why if a file was."""
    if checkpoint is None or not checkpoint.path.exists():
        return None
    try:
        with np.load(checkpoint.path, allow_pickle=False) as z:
            saved = {name: z[name] for name in z.files}
        saved["meta"] = json.loads(saved["meta"].tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        checkpoint.discarded = f"unreadable ({type(e).__name__})"
        return None
    if saved["meta"].get("key") != key:
        checkpoint.discarded = NOT_THIS_TRAINING
        return None
    return saved


def restore_learning(saved: dict[str, Any], sac: BatchedSAC, replay: BatchedReplay, rng: np.random.Generator) -> None:
    """Put the saved weights, Adam state, replay buffer and RNG states into the fresh learner, buffer and RNG."""
    meta = saved["meta"]
    sac.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in saved.items() if k.startswith("sac.")})
    sac.load_optimizer_state_dict({k[5:]: torch.from_numpy(v) for k, v in saved.items() if k.startswith("adam.")})
    sac.generator.set_state(torch.from_numpy(saved["sac_generator"]))
    size = int(meta["replay_size"])
    for f in REPLAY_FIELDS:
        getattr(replay, f)[:, :size] = saved[f"replay.{f}"]
    replay.ptr, replay.size = int(meta["replay_ptr"]), size
    replay.rng.bit_generator.state = meta["replay_rng"]
    rng.bit_generator.state = meta["rng"]


# ---------------------------------------------------------------------------- envs


def env_rng_state(env: gym.Env) -> dict[str, Any]:
    """The state of the env's own RNG (what its next unseeded reset draws from)."""
    return env.unwrapped.np_random.bit_generator.state


def env_state(env: gym.Env) -> dict[str, Any]:
    """What a replayed env must match (JSON): its RNGs, its time-limit count and, for MuJoCo, qpos, qvel, time."""
    state: dict[str, Any] = {"rng": env_rng_state(env), "action_rng": env.action_space.np_random.bit_generator.state,
                             "elapsed": int(env.get_wrapper_attr("_elapsed_steps"))}
    data = getattr(env.unwrapped, "data", None)
    if data is not None:
        state |= {"qpos": data.qpos.tolist(), "qvel": data.qvel.tolist(), "time": float(data.time)}
    return state


def replay_episode(env: gym.Env, actions: Iterable[np.ndarray], *, seed: int | None = None,
                   rng_state: dict[str, Any] | None = None) -> np.ndarray:
    """Reset `env` as an episode was reset (from `seed`, or unseeded from its RNG at `rng_state`), step it
    through `actions`; its last observation."""
    if rng_state is not None:
        env.unwrapped.np_random.bit_generator.state = rng_state
    o, _ = env.reset(seed=seed)
    for a in actions:
        o, *_ = env.step(a)
    return o
