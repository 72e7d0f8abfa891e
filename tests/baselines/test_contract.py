"""Every registered algorithm, the references included, passes the same contract on the tiny suite.

The names come from the registry, so a newly registered algorithm fails here until it
adds its tiny overrides below (as `--set` would pass them: the contract is about the
interface, not about learning).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from safetensors.torch import load_file

from bmrl_bench.algorithms import (
    BaseAlgorithm,
    available_algorithms,
    check_algorithm_class,
    get_algorithm,
    load_algorithm,
    resolve_config,
)
from bmrl_bench.data import load_suite
from bmrl_bench.errors import AlgorithmContractError, CheckpointError

from ..conftest import TINY as TINY_SUITE
from .contract import check_algorithm_contract

_TIME_NETS = {"phase1_steps": 10, "phase2_steps": 10, "batch_size": 16, "phase1_batch_size": 16,
              "phase1_hidden": (16, 16), "f_hidden": (16,), "e_hidden": (16,), "e_out": 8, "p_hidden": (8,),
              "q_hidden": (16, 16), "embedding_dim": 4, "log_every": 5}
TINY: dict[str, list[dict[str, Any]]] = {
    "random": [{}],
    "oracle": [{}],
    "batch-sac": [{"steps": 20, "batch_size": 16, "hidden": (16, 16), "log_every": 10}],
    "bcq": [{"steps": 20, "batch_size": 16, "n_action_samples": 4, "critic_hidden": (16, 16), "actor_hidden": (16, 16),
             "vae_hidden": (16, 16), "log_every": 10}],
    "pearl": [{"steps": 6, "batch_size": 16, "meta_batch": 2, "context_size": 4, "latent_dim": 3,
               "encoder_hidden": (16, 16), "hidden": (16, 16), "max_context": 50, "log_every": 3}],
    "time": [{**_TIME_NETS, "phase1": "sac", "shooting_actions": 10},
             {**_TIME_NETS, "phase1": "bcq", "phase1_vae_hidden": (16, 16), "g_hidden": (16,), "xi_hidden": (16,),
              "bcq_candidates": 5}],
}
CASES = [pytest.param(name, i, id=f"{name}-{i}")
         for name in available_algorithms() for i in range(len(TINY.get(name, [{}])))]


def test_every_registered_algorithm_has_tiny_overrides_and_oracle_and_random_are_among_them() -> None:
    assert {"oracle", "random", "batch-sac", "bcq", "pearl", "time"} <= set(available_algorithms())
    assert sorted(TINY) == available_algorithms()


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_contract(name: str, variant: int, tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert name in TINY, f"algorithm '{name}' is registered but has no tiny overrides in {__file__}"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tiny_root))
    suite = load_suite(TINY_SUITE)
    cls = get_algorithm(name)
    config_name, config = resolve_config(cls, suite.name, suite.family.name, None, TINY[name][variant])
    assert config_name in cls.configs
    check_algorithm_contract(cls, config, suite, tmp_path)


def test_every_registered_algorithm_has_a_default_config_of_its_class() -> None:
    for name in available_algorithms():
        cls = get_algorithm(name)  # the registry checks the class
        assert cls.name == name
        assert isinstance(cls.configs["default"], cls.config_cls)


@dataclass(frozen=True)
class _Config:
    steps: int = 1


class _NoDefault(BaseAlgorithm):
    name: ClassVar[str] = "no-default"
    config_cls: ClassVar[type] = _Config
    configs: ClassVar[dict[str, Any]] = {"pointgoal": _Config()}

    def fit(self, data: Any, log: Any = None) -> None:
        pass

    def make_agent(self) -> Any:
        return None


def test_the_registry_refuses_a_class_without_default_or_under_another_name() -> None:
    with pytest.raises(AlgorithmContractError, match="no 'default' config .*pointgoal.*add one"):
        check_algorithm_class(_NoDefault, "no-default")
    with pytest.raises(AlgorithmContractError, match="registered as 'other' but its name is 'no-default'"):
        check_algorithm_class(_NoDefault, "other")


def test_a_checkpoint_written_by_eval_loads_weights_only(tiny_suite: Path, tmp_path: Path) -> None:
    """`evaluate(checkpoint_dir=...)` (what `eval --checkpoints` calls) writes folders `load_algorithm` rebuilds."""
    from bmrl_bench.harness import evaluate

    run = evaluate("batch-sac", TINY_SUITE, seeds=[0], overrides=TINY["batch-sac"][0], out_dir=None,
                   checkpoint_dir=tmp_path / "ckpt")
    (folder,) = sorted((tmp_path / "ckpt").iterdir())
    assert folder.name == f"batch-sac-{TINY_SUITE}-seed0"
    meta = json.loads((folder / "config.json").read_text())
    assert meta["algorithm"] == "batch-sac" and meta["seed"] == 0
    assert meta["config"] == {**run.results["algorithm"]["config"]}
    algo = load_algorithm(folder)
    tensors = load_file(str(folder / "weights.safetensors"))  # safetensors: tensors only, no pickle
    assert set(tensors) == set(algo.state_dict())
    assert all((tensors[k] == v).all() for k, v in algo.state_dict().items())

    (folder / "weights.safetensors").write_bytes(b"\x80\x04not safetensors")  # a pickle header is refused
    with pytest.raises(CheckpointError, match="is not a bmrl-bench checkpoint"):
        load_algorithm(folder)
