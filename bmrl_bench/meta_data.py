"""What an algorithm is given of a loaded suite: its `EnvSpec` and its `MetaTrainData` (meta-train batches only).

The harness, the figures and the benchmark scripts all hand a suite to an algorithm
through these two functions, so what `fit` may see is decided in one place.
"""
from __future__ import annotations

from bmrl_bench.algorithms import EnvSpec, MetaTrainData
from bmrl_bench.data import Suite


def spec_of(suite: Suite) -> EnvSpec:
    return EnvSpec(
        family=suite.family.name,
        obs_dim=int(suite.train.observations.shape[1]),
        act_dim=int(suite.train.actions.shape[1]),
        episode_length=suite.card.episode_length,
    )


def meta_train_data(suite: Suite) -> MetaTrainData:
    return MetaTrainData(spec=spec_of(suite), batch=suite.train, num_tasks=len(suite.train_tasks), suite=suite.name)
