"""Every registered algorithm passes the same contract (fit, log, save/load, act)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bmrl_bench.algorithms import get_algorithm

from . import contract

# Tiny configs: the contract is about the interface, not about learning.
TINY = {
    "random": {},
    "batch-sac": {"steps": 20, "batch_size": 16, "hidden": (16, 16)},
    "time": {"phase1_steps": 10, "phase2_steps": 10, "batch_size": 16, "phase1_batch_size": 16,
             "phase1_hidden": (16, 16), "f_hidden": (16,), "e_hidden": (16,), "e_out": 8, "p_hidden": (8,),
             "q_hidden": (16, 16), "embedding_dim": 4, "shooting_actions": 10},
    "time-bcq": {"phase1": "bcq", "phase1_steps": 10, "phase2_steps": 10, "batch_size": 16, "phase1_batch_size": 16, "phase1_hidden": (16, 16), "phase1_vae_hidden": (16, 16),
                 "f_hidden": (16,), "e_hidden": (16,), "e_out": 8, "p_hidden": (8,), "q_hidden": (16, 16),
                 "g_hidden": (16,), "xi_hidden": (16,), "embedding_dim": 4, "bcq_candidates": 5},
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_contract(name: str, tmp_path: Path) -> None:
    cls = get_algorithm(name.removesuffix("-bcq"))
    config = dataclasses.replace(cls.configs.get("pointgoal", cls.configs.get("default")), **TINY[name])
    contract.check_algorithm_contract(cls, config, tmp_path)
