"""Every config dataclass checks its fields' types and ranges when it is built: one line names field, value, range."""
from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from bmrl_bench.algorithms import available_algorithms, config_from_dict, config_to_dict, get_algorithm, resolve_config
from bmrl_bench.config_checks import CheckedConfig
from bmrl_bench.errors import BmrlError, ConfigError
from bmrl_bench.learners.bcq import BCQConfig
from bmrl_bench.learners.sac import SACConfig

CONFIG_CLASSES = sorted({get_algorithm(n).config_cls for n in available_algorithms()} | {SACConfig, BCQConfig},
                        key=lambda c: c.__name__)
# Numeric fields with no range: any finite value is meaningful.
UNBOUNDED = {("SACConfig", "target_entropy"), ("SACConfig", "log_std_min"), ("SACConfig", "log_std_max")}


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_every_numeric_field_has_a_range_and_every_range_a_field(cls: type) -> None:
    assert issubclass(cls, CheckedConfig)
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(cls.RANGES) <= fields, set(cls.RANGES) - fields  # a misspelt range would check nothing
    assert set(cls.CHOICES) <= fields
    numeric = {f for f in fields if hints[f] is not bool and any(t in str(hints[f]) for t in ("int", "float"))}
    assert numeric - set(cls.RANGES) == {f for c, f in UNBOUNDED if c == cls.__name__}


def test_every_named_config_is_in_range_and_survives_json() -> None:
    for name in available_algorithms():
        cls = get_algorithm(name)
        for config in cls.configs.values():
            assert config_from_dict(cls.config_cls, config_to_dict(config)) == config


@pytest.mark.parametrize(("algo", "overrides", "message"), [
    ("time", {"phase2_steps": -5}, "TiMeConfig.phase2_steps = -5 is out of range: allowed >= 1"),
    ("time", {"phase2_steps": "abc"}, "TiMeConfig.phase2_steps = 'abc' has the wrong type: expected int"),
    ("time", {"phase2_steps": True}, "TiMeConfig.phase2_steps = True has the wrong type: expected int"),
    ("time", {"phase1": "ppo"}, "TiMeConfig.phase1 = 'ppo' is not a choice: allowed 'sac', 'bcq'"),
    ("time", {"context_from": "prefix"},
     "TiMeConfig.context_from = 'prefix' is not a choice: allowed 'task', 'episode', 'both'"),
    ("time", {"q_hidden": (64, 0)}, "TiMeConfig.q_hidden = (64, 0) is out of range: allowed >= 1 for each element"),
    ("time", {"q_hidden": 64}, "TiMeConfig.q_hidden = 64 has the wrong type: expected a tuple of int"),
    ("time", {"test_context": -1}, "TiMeConfig.test_context = -1 is out of range: allowed >= 0"),
    ("time", {"normalize_context": 1}, "TiMeConfig.normalize_context = 1 has the wrong type: expected bool"),
    ("batch-sac", {"lr": 0.0}, "BatchSACConfig.lr = 0.0 is out of range: allowed > 0"),
    ("batch-sac", {"lr": math.inf}, "BatchSACConfig.lr = inf is not finite: allowed a finite number"),
    ("batch-sac", {"lr": math.nan}, "BatchSACConfig.lr = nan is not finite"),
    ("batch-sac", {"gamma": 1.0}, "BatchSACConfig.gamma = 1.0 is out of range: allowed in [0, 1)"),
    ("batch-sac", {"tau": 0.0}, "BatchSACConfig.tau = 0.0 is out of range: allowed in (0, 1]"),
    ("batch-sac", {"batch_size": 0}, "BatchSACConfig.batch_size = 0 is out of range: allowed >= 1"),
    ("pearl", {"kl_lambda": -0.1}, "PearlConfig.kl_lambda = -0.1 is out of range: allowed >= 0"),
    ("pearl", {"meta_batch": 0}, "PearlConfig.meta_batch = 0 is out of range: allowed >= 1"),
    ("bcq", {"lam": 1.5}, "BCQBaselineConfig.lam = 1.5 is out of range: allowed in [0, 1]"),
    ("bcq", {"steps": 0}, "BCQBaselineConfig.steps = 0 is out of range: allowed >= 1"),
    ("random", {"seed_offset": -1}, "RandomConfig.seed_offset = -1 is out of range: allowed >= 0"),
])
def test_a_bad_override_is_refused_when_the_config_is_built(algo: str, overrides: dict, message: str) -> None:
    cls = get_algorithm(algo)
    with pytest.raises(ConfigError) as e:
        resolve_config(cls, "pointgoal-3", "pointgoal", None, overrides)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert isinstance(e.value, BmrlError)  # the CLI prints it as one line


def test_an_int_is_a_float_and_none_where_allowed() -> None:
    _, config = resolve_config(get_algorithm("batch-sac"), "pointgoal-3", "pointgoal", None, {"lr": 1})
    assert config.lr == 1
    assert BCQConfig(latent_dim=None).latent_dim is None
    with pytest.raises(ConfigError, match=r"BCQConfig.latent_dim = 0 is out of range: allowed >= 1"):
        BCQConfig(latent_dim=0)


def test_learner_configs_check_too() -> None:
    with pytest.raises(ConfigError, match=r"BCQConfig.lmbda = -0.1 is out of range: allowed in \[0, 1\]"):
        BCQConfig(lmbda=-0.1)
    with pytest.raises(ConfigError, match=r"SACConfig.init_alpha = 0.0 is out of range: allowed > 0"):
        SACConfig(init_alpha=0.0)
    with pytest.raises(ConfigError, match="SACConfig.log_std_min = 2.0 must be below log_std_max = 2.0"):
        SACConfig(log_std_min=2.0)


def test_a_checkpoint_config_out_of_range_is_refused_on_load() -> None:
    cls = get_algorithm("pearl")
    data = config_to_dict(cls.configs["default"]) | {"steps": 0}
    with pytest.raises(ConfigError, match="PearlConfig.steps = 0"):
        config_from_dict(cls.config_cls, data)
