"""The family-wide expert's check snapshots on disk: its actor at every check (the `medium` tier's candidates).

`<root>/bmrl/<suite>/policies-v<version>/expert-checks/`: `weights.safetensors` (the actor
at check step N as `step<N>.<name>`) beside `config.json` (the card's expert recipe, the check
steps, the check curve and the tasks each check ran). Saved by a build beside the expert
(`builder/policies.py`); snapshots saved from another recipe are not loaded.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bmrl_bench.builder.expert import ExpertTraining, Snapshots
from bmrl_bench.builder.policies import expert_dir
from bmrl_bench.fsutil import atomic_dir
from bmrl_bench.suites import SuiteCard


def snapshots_dir(card: SuiteCard, root: Path) -> Path:
    return expert_dir(card, root).parent / "expert-checks"


@dataclass(frozen=True)
class CheckSnapshots:
    """The expert's actor at each check, with the check curve it was judged by."""

    weights: dict[int, dict[str, np.ndarray]]  # check step -> actor weights (`BatchedSAC.actor_state(0)`)
    curve: list[tuple[int, float]]  # (check step, mean check return)
    check_params: list[float]  # the tasks every check ran


def save_snapshots(card: SuiteCard, root: Path, snapshots: Snapshots, training: ExpertTraining) -> None:
    import torch
    from safetensors.torch import save_file

    with atomic_dir(snapshots_dir(card, root)) as tmp:
        tensors = {f"step{step}.{k}": torch.from_numpy(np.array(v)).contiguous()
                   for step, weights in snapshots for k, v in weights.items()}
        save_file(tensors, str(tmp / "weights.safetensors"))
        (tmp / "config.json").write_text(json.dumps({
            "recipe": card.expert.model_dump(), "steps": [step for step, _ in snapshots],
            "curve": training.curve, "check_params": training.check_params,
        }))


def load_snapshots(card: SuiteCard, root: Path) -> CheckSnapshots | None:
    """The snapshots saved with the suite's expert, or None (none saved, or saved from another recipe)."""
    from safetensors.numpy import load_file

    d = snapshots_dir(card, root)
    if not (d / "weights.safetensors").exists() or not (d / "config.json").exists():
        return None
    config = json.loads((d / "config.json").read_text())
    if config.get("recipe") != card.expert.model_dump():
        return None
    weights: dict[int, dict[str, np.ndarray]] = {}
    for name, value in load_file(str(d / "weights.safetensors")).items():
        step, key = name.split(".", 1)
        weights.setdefault(int(step[4:]), {})[key] = value
    curve = [(int(s), float(r)) for s, r in config["curve"]]
    return CheckSnapshots(weights, curve, [float(p) for p in config["check_params"]])
