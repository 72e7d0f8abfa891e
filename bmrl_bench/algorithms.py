"""The one small interface every algorithm implements, the skeleton ours derive from, and the registry.

An algorithm is a class registered under the entry-point group `bmrl_bench.algorithms`
(ours in this package's pyproject; a third-party package adds its own line). The
harness only ever reaches an algorithm through `get_algorithm(name)`, which also checks
the class: a `name`, a `config_cls`, and named `configs` of that class including `default`.

Lifecycle: `cls(config, spec, seed, device)` -> `fit(data, log)` on meta-train data only
-> `make_agent()` per evaluation trial -> `agent.reset() / act() / observe()`.
Checkpoints are a folder: `config.json` (algorithm name + config) beside
`weights.safetensors` (weights only, no pickle), so `load_algorithm(folder)` rebuilds any of them.

`BaseAlgorithm` is the skeleton: the constructor, `save` and `load` once, so an algorithm
writes only its config, `fit`, `make_agent` and, if it has weights, `state_dict` /
`load_state_dict` (`ModuleAlgorithm`: the weights of one torch module, `self.nets`).
`ContextFreeAgent` is the agent that ignores its context.
Privileged references (the oracle) derive from `Privileged`: the harness binds the suite to
them and calls `agent.set_task(index, param)` before each test task; nothing else is told the task.
"""
from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from bmrl_bench.data import Batch
from bmrl_bench.errors import AlgorithmContractError, CheckpointError, UnknownAlgorithmError
from bmrl_bench.fsutil import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import torch

    from bmrl_bench.data import Suite

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


@runtime_checkable
class TaskAgent(Agent, Protocol):
    def set_task(self, index: int, param: float) -> None:
        """The test task about to be played: its index in the suite and its parameter (privileged agents only)."""


class ContextFreeAgent:
    """An agent that ignores its context: `reset` and `observe` do nothing; subclasses define `act`."""

    def reset(self) -> None:
        pass

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminal: bool) -> None:
        pass


class Algorithm(Protocol):
    name: ClassVar[str]
    config_cls: ClassVar[type]
    configs: ClassVar[dict[str, Any]]
    """Named configs; `default` is required (what a suite of an unknown family gets)."""

    def __init__(self, config: Any, spec: EnvSpec, seed: int, device: str = "cpu") -> None: ...

    def fit(self, data: MetaTrainData, log: LogFn = null_log) -> None: ...

    def make_agent(self) -> Agent: ...

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> Algorithm: ...


# (step, learner): called by a probed fit after its first update and every `callback_every` updates.
FitCallback = Callable[[int, Any], None]


class ProbedFit(Algorithm, Protocol):
    """An algorithm whose `fit` lets a caller look at its learner while it trains (Batch SAC: the
    misidentification figure reads its critic). Not required of an algorithm."""

    def fit(self, data: MetaTrainData, log: LogFn = null_log, callback: FitCallback | None = None,
            callback_every: int = 0) -> None: ...


# One training update of a loop that `fit` runs; what it returns is ignored.
BenchStep = Callable[[], object]


@runtime_checkable
class BenchSteps(Protocol):
    """An algorithm that hands `bmrl-bench bench` its training loops (not required of an algorithm).

    `bench_steps(data)` returns `{loop name: step}`, in the order `fit` runs the loops; each call of
    a step runs ONE update of that loop through the same methods `fit` calls (its minibatch sampling
    included), so the bench times and counts the arithmetic `fit` does. The steps train this instance:
    make one for the bench only.
    """

    def bench_steps(self, data: MetaTrainData) -> dict[str, BenchStep]: ...


class Privileged(abc.ABC):
    """A reference that is told the task (the oracle); a learning algorithm never derives from this.

    The harness calls `bind_suite(suite)` right after building it, and `set_task(index, param)`
    on every agent it makes before that agent plays test task `index` (whose parameter is `param`).
    """

    @abc.abstractmethod
    def bind_suite(self, suite: Suite) -> None:
        """The suite whose tasks the agents will be told (the oracle loads the experts it replays)."""

    @abc.abstractmethod
    def make_agent(self) -> TaskAgent: ...


class BaseAlgorithm:
    """The skeleton of our algorithms: the constructor, checkpoints (`save`, `load`) and nothing else.

    A subclass sets `name`, `config_cls` and `configs` (with `default`), implements `fit` and
    `make_agent`, and, if it has weights, `state_dict()` / `load_state_dict(tensors)`: the flat
    tensors `weights.safetensors` holds (default: none).
    """

    name: ClassVar[str]
    config_cls: ClassVar[type]
    configs: ClassVar[dict[str, Any]]

    def __init__(self, config: Any, spec: EnvSpec, seed: int, device: str = "cpu") -> None:
        self.config, self.spec, self.seed, self.device = config, spec, seed, device

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        if tensors:
            raise CheckpointError(f"{self.name} has no weights, but the checkpoint holds {len(tensors)} tensors")

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.name, self.config, self.spec, self.seed, self.state_dict())

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> Any:
        config, spec, seed, tensors = read_checkpoint(path, cls.config_cls)
        algo = cls(config, spec, seed, device)
        try:
            algo.load_state_dict(tensors)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        except RuntimeError as e:  # nn.Module.load_state_dict: the first line that names a tensor
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            detail = (lines[1] if len(lines) > 1 else lines[0] if lines else type(e).__name__)[:300]
            raise CheckpointError(
                f"{path}: weights do not match its config.json ({detail}); save the checkpoint again"
            ) from None
        return algo


class ModuleAlgorithm(BaseAlgorithm):
    """An algorithm whose weights are one torch module, `self.nets` (built by the subclass's constructor)."""

    nets: torch.nn.Module

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.nets.state_dict()

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        self.nets.load_state_dict(tensors)


def available_algorithms() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def get_algorithm(name: str) -> type:
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        known = ", ".join(available_algorithms()) or "none (is bmrl-bench installed with pip?)"
        raise UnknownAlgorithmError(f"unknown algorithm '{name}'; known algorithms: {known}")
    cls = found[0].load()
    check_algorithm_class(cls, name)
    return cls


def check_algorithm_class(cls: type, name: str) -> None:
    """What the registry requires of a class registered as `name` (one-line AlgorithmContractError)."""
    where = f"algorithm '{name}' ({cls.__module__}.{cls.__qualname__})"
    for attr in ("name", "config_cls", "configs", "fit", "make_agent", "save", "load"):
        if not hasattr(cls, attr):
            raise AlgorithmContractError(f"{where} has no '{attr}'; see the Algorithm protocol, bmrl_bench.algorithms")
    if cls.name != name:
        raise AlgorithmContractError(f"{where} is registered as '{name}' but its name is '{cls.name}'; make them equal")
    if "default" not in cls.configs:
        named = ", ".join(cls.configs)
        raise AlgorithmContractError(f"{where} has no 'default' config (named configs: {named}); add one")
    for key, config in cls.configs.items():
        if not isinstance(config, cls.config_cls):
            raise AlgorithmContractError(
                f"{where}: config '{key}' is a {type(config).__name__}, not a {cls.config_cls.__name__}")


def config_name_for(cls: type, suite: str, family: str) -> str:
    """The named default config for a suite: its own name, else its family, else 'default'."""
    for key in (suite, family, "default"):
        if key in cls.configs:
            return key
    raise UnknownAlgorithmError(
        f"algorithm '{cls.name}' has no config for suite '{suite}' (family '{family}'); "
        f"named configs: {', '.join(cls.configs)}; pass --config NAME"
    )


def resolve_config(
    cls: type, suite: str, family: str, config_name: str | None, overrides: dict[str, Any] | None
) -> tuple[str, Any]:
    name = config_name or config_name_for(cls, suite, family)
    if name not in cls.configs:
        named = ", ".join(cls.configs)
        raise UnknownAlgorithmError(f"algorithm '{cls.name}' has no config named '{name}'; named configs: {named}")
    config = cls.configs[name]
    if overrides:
        known = {f.name for f in dataclasses.fields(config)}
        bad = sorted(set(overrides) - known)
        if bad:
            fields = ", ".join(sorted(known))
            raise UnknownAlgorithmError(f"'{bad[0]}' is not a field of {cls.config_cls.__name__}; fields: {fields}")
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
    """`config.json` + `weights.safetensors` in folder `path`, each written atomically; weights load with no pickle."""
    from safetensors.torch import save

    path = Path(path)
    weights = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    atomic_write_bytes(path / "weights.safetensors", weights)
    meta = {"algorithm": algorithm, "config": config_to_dict(config), "spec": dataclasses.asdict(spec), "seed": seed}
    atomic_write_text(path / "config.json", json.dumps(meta, indent=2))


def read_checkpoint(path: Path, config_cls: type) -> tuple[Any, EnvSpec, int, dict[str, Any]]:
    from safetensors.torch import load_file

    path = Path(path)
    try:
        meta = json.loads((path / "config.json").read_text())
        tensors = load_file(str(path / "weights.safetensors"))
    except (OSError, json.JSONDecodeError, Exception) as e:  # safetensors raises its own error types
        raise CheckpointError(
            f"{path} is not a bmrl-bench checkpoint ({type(e).__name__}); save one with `algo.save(path)`"
        ) from None
    return config_from_dict(config_cls, meta["config"]), EnvSpec(**meta["spec"]), int(meta["seed"]), tensors


def load_algorithm(path: Path, device: str = "cpu") -> Any:
    """Rebuild any registered algorithm from its checkpoint folder."""
    try:
        name = json.loads((Path(path) / "config.json").read_text())["algorithm"]
    except (OSError, json.JSONDecodeError, KeyError):
        raise CheckpointError(f"{path} is not a bmrl-bench checkpoint (no readable config.json)") from None
    return get_algorithm(name).load(Path(path), device=device)
