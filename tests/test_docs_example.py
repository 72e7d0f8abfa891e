"""The worked example of docs/architecture.md ("How to add an algorithm in one file") stays true.

`docs/examples/my_algorithm.py` is registered the way a third-party package registers it: the
entry-point line the page shows, in the metadata of an installed distribution (a `.dist-info`
folder on `sys.path`; pyproject.toml is not touched). Then it runs through the contract every
registered algorithm meets (`tests/baselines/contract.py`) and through `evaluate`, as
`bmrl-bench eval --algo my-bc` runs it. The code the page quotes must be the file's own.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bmrl_bench.algorithms import (
    EnvSpec,
    MetaTrainData,
    available_algorithms,
    get_algorithm,
    load_algorithm,
    resolve_config,
)
from bmrl_bench.data import Batch, load_suite
from bmrl_bench.errors import ConfigError
from bmrl_bench.meta_data import meta_train_data, spec_of
from tests.baselines.contract import RecordingLog, check_algorithm_contract
from tests.conftest import TINY as TINY_SUITE
from tests.learners.conftest import _one_torch_thread  # noqa: F401 - autouse: tiny nets, one torch thread

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
EXAMPLE = ROOT / "docs" / "examples" / "my_algorithm.py"
# As `--set` would pass them: the contract is about the interface, these few updates about learning at all.
TINY_OVERRIDES: dict[str, Any] = {"steps": 300, "batch_per_task": 16, "hidden": (32, 32), "log_every": 100}


def _entry_point_line() -> tuple[str, str]:
    """The registration the page shows: `name = "module:Class"` under the `bmrl_bench.algorithms` group."""
    m = re.search(r'\[project\.entry-points\."bmrl_bench\.algorithms"\]\n(\S+) = "([\w.]+:\w+)"', DOC.read_text())
    assert m, "docs/architecture.md no longer shows the example's entry-point line"
    return m.group(1), m.group(2)


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The example installed as its own distribution, registered by the page's entry-point line; its name."""
    name, target = _entry_point_line()
    dist = tmp_path / "site" / "my_algorithm-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-algorithm\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[bmrl_bench.algorithms]\n{name} = {target}\n")
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))  # the module itself, as pip would install it
    monkeypatch.syspath_prepend(str(tmp_path / "site"))  # undone after the test: the registry is as before
    yield name


def test_the_page_quotes_the_file_and_registers_its_class() -> None:
    """Every chunk of the page's `# docs/examples/my_algorithm.py` blocks is the file's text, in the file's order."""
    text, doc = EXAMPLE.read_text(), DOC.read_text()
    blocks = re.findall(r"```python\n# docs/examples/my_algorithm\.py\n(.*?)```", doc, flags=re.S)
    assert len(blocks) >= 2, "the page should quote the example's config and its class"
    at = 0
    for block in blocks:
        for chunk in re.split(r"\n *\.\.\.[^\n]*\n", "\n" + block):
            chunk = chunk.strip("\n")
            if chunk:
                found = text.find(chunk, at)
                assert found >= 0, f"the page quotes lines that docs/examples/my_algorithm.py lacks:\n{chunk}"
                at = found + len(chunk)
    name, target = _entry_point_line()
    assert (name, target) == ("my-bc", "my_algorithm:BehaviourCloning")
    assert f'{name} = "{target}"' in text  # the module docstring shows the same line


def test_registered_through_an_entry_point_like_any_algorithm(installed: str) -> None:
    assert installed in available_algorithms()
    cls = get_algorithm(installed)  # the registry's checks: name, config_cls, configs with a 'default'
    assert cls.__name__ == "BehaviourCloning" and cls.name == "my-bc"
    assert cls.configs["default"] == cls.config_cls()
    # The named config a suite gets: its own name, else its family, else 'default'.
    assert resolve_config(cls, "pointgoal-3", "pointgoal", None, None)[0] == "pointgoal"
    assert resolve_config(cls, "halfcheetah-vel-lite", "halfcheetah-vel", None, None)[0] == "default"


def test_the_config_checks_its_fields_when_built(installed: str) -> None:
    cls = get_algorithm(installed)
    with pytest.raises(ConfigError, match=r"^BCConfig\.lr = 0 is out of range: allowed > 0$"):
        cls.config_cls(lr=0)
    with pytest.raises(ConfigError, match=r"^BCConfig\.hidden = \(32, 0\) is out of range: allowed >= 1 for each"):
        resolve_config(cls, TINY_SUITE, "pointgoal", None, {"hidden": (32, 0)})  # what `--set hidden=32,0` reaches
    with pytest.raises(ConfigError, match=r"^BCConfig\.steps = 2\.5 has the wrong type: expected int$"):
        cls.config_cls(steps=2.5)


def test_the_shared_contract_on_the_tiny_suite(installed: str, tiny_root: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tiny_root))
    suite = load_suite(TINY_SUITE)
    cls = get_algorithm(installed)
    _, config = resolve_config(cls, suite.name, suite.family.name, None, TINY_OVERRIDES)
    algo = check_algorithm_contract(cls, config, suite, tmp_path)  # fit, log, save, reload, act

    # Fitting moved the policy towards the data: its error on the meta-train actions is below the untrained one's.
    batch = meta_train_data(suite).batch
    untrained = cls(config, spec_of(suite), seed=0)
    assert _mse(algo, batch) < _mse(untrained, batch) - 0.01, (_mse(algo, batch), _mse(untrained, batch))

    # Seeded: the same seed fits the same weights; the caller's torch RNG is not touched.
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    again = cls(config, spec_of(suite), seed=0)
    assert torch.equal(torch.rand(3), expected_draw)
    log = RecordingLog()
    again.fit(meta_train_data(suite), log)
    assert [(phase, step, total) for phase, step, total, _ in log.calls] == [
        ("behaviour cloning", 100, 300), ("behaviour cloning", 200, 300), ("behaviour cloning", 300, 300)]
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), algo.state_dict().values()))


def _mse(algo: Any, batch: Batch) -> float:
    with torch.no_grad():
        predicted = algo.nets(torch.as_tensor(batch.observations)).numpy()
    return float(np.mean((predicted - batch.actions) ** 2))


def test_it_clones_a_policy_that_is_a_function_of_the_observation(installed: str) -> None:
    """Two tasks whose data steer back to the origin (action = -obs / 10): the clone learns that map."""
    from my_algorithm import BCConfig, BehaviourCloning

    rng = np.random.default_rng(0)
    n = 400
    obs = rng.uniform(-10, 10, (n, 2)).astype(np.float32)
    actions = -obs / 10
    zeros = np.zeros(n, np.float32)
    batch = Batch(observations=obs, actions=actions, rewards=zeros, next_observations=obs, terminals=zeros,
                  timeouts=zeros, task_index=np.arange(n, dtype=np.int64) % 2)
    spec = EnvSpec(family="pointgoal", obs_dim=2, act_dim=2, episode_length=20)
    algo = BehaviourCloning(BCConfig(**TINY_OVERRIDES), spec, seed=0)
    algo.fit(MetaTrainData(spec=spec, batch=batch, num_tasks=2, suite="synthetic"))
    assert float(np.mean(actions**2)) > 0.3  # what standing still would cost
    assert _mse(algo, batch) < 0.01
    np.testing.assert_allclose(algo.make_agent().act(np.array([5.0, -5.0])), [-0.5, 0.5], atol=0.1)


def test_eval_runs_it_by_name_and_its_checkpoint_reloads(installed: str, tiny_suite: Path, tmp_path: Path) -> None:
    from bmrl_bench.harness import evaluate

    run = evaluate(installed, TINY_SUITE, seeds=[0], overrides=TINY_OVERRIDES, out_dir=tmp_path / "results",
                   checkpoint_dir=tmp_path / "ckpt")
    assert run.results["algorithm"]["name"] == "my-bc"
    assert run.results["algorithm"]["config_name"] == "pointgoal"  # the tiny suite's family
    assert run.results["algorithm"]["config"] == {"steps": 300, "batch_per_task": 16, "hidden": [32, 32], "lr": 1e-3,
                                                  "log_every": 100}
    (test_task,) = [d["task_index"] for d in run.results["suite"]["datasets"] if d["split"] == "test"]
    (row,) = run.results["returns"]
    assert (row["seed"], row["task_index"], len(row["episode_returns"])) == (0, test_task, 3)  # the card's 3 episodes
    assert all(np.isfinite(row["episode_returns"]))
    assert all(r < 0 for r in row["episode_returns"])  # PointGoal's reward is minus a distance
    assert run.path is not None and run.path.is_file()

    loaded = load_algorithm(tmp_path / "ckpt" / f"my-bc-{TINY_SUITE}-seed0")  # by its name in config.json
    assert type(loaded).__name__ == "BehaviourCloning" and loaded.config.hidden == (32, 32)
    obs = np.zeros(2, np.float32)
    action = loaded.make_agent().act(obs)
    assert action.shape == (2,) and np.all(np.abs(action) <= 1)
