"""The suite's family-wide expert on disk (saved by a build, loaded for reference scores and the oracle).

`<root>/bmrl/<suite>/policies-v<version>/expert/`: `weights.safetensors` beside
`config.json` (dimensions, hidden sizes, the card's expert recipe and how its
training ended). An expert trained from another recipe is not loaded: it is retrained.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bmrl_bench.builder.expert import ExpertTraining
from bmrl_bench.data import datasets_root, expert_dir, saved_expert_config
from bmrl_bench.families import Family
from bmrl_bench.fsutil import atomic_dir
from bmrl_bench.suites import SuiteCard


def family_obs_dim(family: Family) -> int:
    env = family.make(family.param_range[0])
    dim = int(env.observation_space.shape[0])
    env.close()
    return dim


def family_act_dim(family: Family) -> int:
    env = family.make(family.param_range[0])
    dim = int(env.action_space.shape[0])
    env.close()
    return dim


def save_expert(state: dict[str, np.ndarray], card: SuiteCard, root: Path, obs_dim: int, act_dim: int,
                training: ExpertTraining) -> None:
    import torch
    from safetensors.torch import save_file

    with atomic_dir(expert_dir(card, root)) as tmp:
        weights = {k: torch.from_numpy(np.array(v)).contiguous() for k, v in state.items()}
        save_file(weights, str(tmp / "weights.safetensors"))
        (tmp / "config.json").write_text(json.dumps({
            "obs_dim": obs_dim, "act_dim": act_dim, "hidden": card.expert.hidden,
            "recipe": card.expert.model_dump(), "training": asdict(training),
        }))


def expert_record(card: SuiteCard, root: Path) -> dict[str, Any] | None:
    """{env steps, sha256 of weights.safetensors} of the saved expert (None if none was saved from the
    card's recipe): what `datasets publish` records, so a build that finds an expert can say whether
    it is the published one."""
    import hashlib

    config = saved_expert_config(card, root)  # the config only: the weights are hashed, not loaded
    if config is None:
        return None
    digest = hashlib.sha256((expert_dir(card, root) / "weights.safetensors").read_bytes()).hexdigest()
    return {"steps": int(config["training"]["steps"]), "weights_sha256": digest}


def expert_from_state(state: dict[str, Any], config: dict[str, Any]) -> object:
    """A 1-member BatchedSAC from saved expert weights (numpy arrays or tensors) and its config.json."""
    import torch

    from bmrl_bench.learners.sac import BatchedSAC, SACConfig

    sac = BatchedSAC(1, config["obs_dim"], config["act_dim"], SACConfig(hidden=tuple(config["hidden"])), seed=0)
    sac.load_state_dict({k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v))
                         for k, v in state.items()})
    return sac


def expert_files(card: SuiteCard, root: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """(weights, config) of the suite's expert, or None if none was saved from the card's recipe."""
    from safetensors.numpy import load_file

    config = saved_expert_config(card, root)
    if config is None:
        return None
    return load_file(str(expert_dir(card, root) / "weights.safetensors")), config


def load_expert(card: SuiteCard, root: Path | None = None) -> object | None:
    """The suite's family-wide expert (a 1-member BatchedSAC), or None if not built."""
    files = expert_files(card, root or datasets_root())
    return None if files is None else expert_from_state(*files)
