"""The one small interface every algorithm implements, and the registry that finds them.

An algorithm is a class registered under the entry-point group `bmrl_bench.algorithms`
(ours in this package's pyproject; a third-party package adds its own line). The
harness only ever reaches an algorithm through `get_algorithm(name)`.

Lifecycle: `cls(config, spec, seed, device)` -> `fit(data, log)` on meta-train data only
-> `make_agent()` per evaluation trial -> `agent.reset() / act() / observe()`.
Checkpoints are a folder: `config.json` (algorithm name + config) beside
`weights.safetensors`, so `load_algorithm(folder)` rebuilds any of them.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from bmrl_bench.data import Batch
from bmrl_bench.errors import CheckpointError, UnknownAlgorithmError
from bmrl_bench.fsutil import atomic_write_text

ENTRY_POINT_GROUP = "bmrl_bench.algorithms"

# (phase, step, total, metrics): algorithms report training progress through this.
LogFn = Callable[[str, int, int, dict[str, float]], None]


def null_log(phase: str, step: int, total: int, metrics: dict[str, float]) -> None:
    pass


@dataclass(frozen=True)
class EnvSpec:
    family: str
    obs_dim: int
    act_dim: int
    episode_length: int


@dataclass
class MetaTrainData:
    """Everything `fit` may see: the meta-train batches, labelled by task, and the spec."""

    spec: EnvSpec
    batch: Batch
    num_tasks: int
    suite: str


@runtime_checkable
class Agent(Protocol):
    def reset(self) -> None:
        """Forget the context (the protocol decides when)."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """(obs_dim,) -> (act_dim,) in [-1, 1]."""

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminal: bool) -> None:
        """One transition of context."""


class Algorithm(Protocol):
    name: ClassVar[str]
    config_cls: ClassVar[type]
    configs: ClassVar[dict[str, Any]]

    def __init__(self, config: Any, spec: EnvSpec, seed: int, device: str = "cpu") -> None: ...

    def fit(self, data: MetaTrainData, log: LogFn = null_log) -> None: ...

    def make_agent(self) -> Agent: ...

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> Algorithm: ...


def available_algorithms() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def get_algorithm(name: str) -> type:
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        known = ", ".join(available_algorithms()) or "none (is bmrl-bench installed with pip?)"
        raise UnknownAlgorithmError(f"unknown algorithm '{name}'; known algorithms: {known}")
    return found[0].load()


def config_name_for(cls: type, suite: str, family: str) -> str:
    """The named default config for a suite: its own name, else its family, else 'default'."""
    for key in (suite, family, "default"):
        if key in cls.configs:
            return key
    raise UnknownAlgorithmError(
        f"algorithm '{cls.name}' has no config for suite '{suite}' (family '{family}'); "
        f"named configs: {', '.join(cls.configs)}; pass --config NAME"
    )


def resolve_config(cls: type, suite: str, family: str, config_name: str | None, overrides: dict[str, Any] | None) -> tuple[str, Any]:
    name = config_name or config_name_for(cls, suite, family)
    if name not in cls.configs:
        raise UnknownAlgorithmError(f"algorithm '{cls.name}' has no config named '{name}'; named configs: {', '.join(cls.configs)}")
    config = cls.configs[name]
    if overrides:
        known = {f.name for f in dataclasses.fields(config)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise UnknownAlgorithmError(f"'{bad[0]}' is not a field of {cls.config_cls.__name__}; fields: {', '.join(sorted(known))}")
        config = dataclasses.replace(config, **overrides)
    return name, config


def config_to_dict(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(config_cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from JSON (lists back to tuples where the default is one)."""
    kwargs = {}
    for f in dataclasses.fields(config_cls):
        if f.name in data:
            value = data[f.name]
            default = f.default if f.default is not dataclasses.MISSING else None
            kwargs[f.name] = tuple(value) if isinstance(value, list) and isinstance(default, tuple) else value
    return config_cls(**kwargs)


def save_checkpoint(path: Path, algorithm: str, config: Any, spec: EnvSpec, seed: int, tensors: dict[str, Any]) -> None:
    """`config.json` + `weights.safetensors` in folder `path`; weights load with no pickle."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / ".weights.safetensors.tmp"
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path / "weights.safetensors")
    meta = {"algorithm": algorithm, "config": config_to_dict(config), "spec": dataclasses.asdict(spec), "seed": seed}
    atomic_write_text(path / "config.json", json.dumps(meta, indent=2))


def read_checkpoint(path: Path, config_cls: type) -> tuple[Any, EnvSpec, int, dict[str, Any]]:
    from safetensors.torch import load_file

    path = Path(path)
    try:
        meta = json.loads((path / "config.json").read_text())
        tensors = load_file(str(path / "weights.safetensors"))
    except (OSError, json.JSONDecodeError, Exception) as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path} is not a bmrl-bench checkpoint ({type(e).__name__}); save one with `algo.save(path)`") from None
    return config_from_dict(config_cls, meta["config"]), EnvSpec(**meta["spec"]), int(meta["seed"]), tensors


def load_algorithm(path: Path, device: str = "cpu") -> Any:
    """Rebuild any registered algorithm from its checkpoint folder."""
    try:
        name = json.loads((Path(path) / "config.json").read_text())["algorithm"]
    except (OSError, json.JSONDecodeError, KeyError):
        raise CheckpointError(f"{path} is not a bmrl-bench checkpoint (no readable config.json)") from None
    return get_algorithm(name).load(Path(path), device=device)
