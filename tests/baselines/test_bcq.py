from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import baselines.bcq as bcq_module
from baselines.bcq import MODULES, BCQBaselineConfig, D3rlpyBCQ, act_seed, d3rlpy_config, steps_per_epoch
from bmrl_bench.algorithms import EnvSpec, MetaTrainData, get_algorithm
from bmrl_bench.errors import BmrlError, CheckpointError

from .contract import TINY_SPEC, RecordingLog, tiny_batch

REPO = Path(__file__).resolve().parents[2]
# Small networks and few updates: the contract, not the learning, is under test.
TINY = BCQBaselineConfig(steps=30, batch_size=16, n_action_samples=4, critic_hidden=(16, 16), actor_hidden=(16, 16),
                         vae_hidden=(16, 16), log_every=10)


def fitted(config: BCQBaselineConfig = TINY, seed: int = 0, log=None) -> D3rlpyBCQ:
    algo = D3rlpyBCQ(config, TINY_SPEC, seed=seed)
    algo.fit(MetaTrainData(TINY_SPEC, tiny_batch(), 2, "contract-test"), log or RecordingLog())
    return algo


def test_registered_under_bcq() -> None:
    assert get_algorithm("bcq") is D3rlpyBCQ
    assert D3rlpyBCQ.name == "bcq" and D3rlpyBCQ.config_cls is BCQBaselineConfig


def test_log_reports_every_log_every_steps_and_all_steps_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bcq_module, "MAX_STEPS_PER_EPOCH", 4)  # 25 steps -> 5 epochs of 5: no step dropped
    log = RecordingLog()
    algo = fitted(dataclasses.replace(TINY, steps=25), log=log)
    calls = [(phase, step, total) for phase, step, total, _ in log.calls]
    assert calls == [("bcq", 10, 25), ("bcq", 20, 25), ("bcq", 25, 25)]
    assert all(set(m) == {"vae_loss", "critic_loss", "actor_loss"} for *_, m in log.calls)
    assert algo.bcq.grad_step == 25
    assert list(tmp_path.iterdir()) == []  # no d3rlpy_logs/


@pytest.mark.parametrize(("steps", "per_epoch"),
                         [(3000, 1000), (20_000, 1000), (30, 30), (1050, 525), (2500, 625), (3001, 1)])
def test_steps_per_epoch_divides_steps(steps: int, per_epoch: int) -> None:
    assert steps_per_epoch(steps) == per_epoch


def test_fit_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    fitted(dataclasses.replace(TINY, steps=5))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_import_drops_the_gym_notice_and_fit_is_silent(tmp_path: Path) -> None:
    """In a fresh process (old gym not yet imported): nothing on stdout or stderr, no d3rlpy_logs/."""
    script = (
        f"import dataclasses, sys\nsys.path[:0] = [{str(REPO)!r}]\n"
        "from tests.baselines.test_bcq import TINY, fitted\nfitted(dataclasses.replace(TINY, steps=3))\n"
    )
    # timeout: a hang guard; a loaded CI machine is slow
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout == "" and res.stderr == "", (res.stdout[-500:], res.stderr[-500:])
    assert list(tmp_path.iterdir()) == []


def test_agent_acts_like_d3rlpy_predict_and_leaves_global_rng_alone() -> None:
    algo = fitted()
    obs = tiny_batch().observations[:5]
    state = torch.get_rng_state()
    agent = algo.make_agent()
    actions = np.stack([agent.act(o) for o in obs])
    assert torch.equal(torch.get_rng_state(), state)
    for t, o in enumerate(obs):
        torch.manual_seed(act_seed(algo.seed, t))
        np.testing.assert_array_equal(actions[t], np.clip(algo.bcq.predict(o[None])[0], -1, 1))
    # an agent's actions depend on its own act count only: a fresh agent repeats them
    again = algo.make_agent()
    np.testing.assert_array_equal(np.stack([again.act(o) for o in obs]), actions)


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    config = dataclasses.replace(TINY, steps=10)
    a, b, c = fitted(config, seed=3), fitted(config, seed=3), fitted(config, seed=4)
    wa, wb, wc = (bcq_module.module_tensors(x.bcq) for x in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_checkpoint_holds_every_network_without_pickle(tmp_path: Path) -> None:
    algo = fitted(dataclasses.replace(TINY, steps=5))
    algo.save(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "weights.safetensors"]
    tensors = load_file(str(tmp_path / "ckpt" / "weights.safetensors"))
    assert {k.split(".")[0] for k in tensors} == set(MODULES)
    live = bcq_module.module_tensors(algo.bcq)
    assert set(tensors) == set(live) and all(torch.equal(tensors[k], live[k]) for k in live)
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["algorithm"] == "bcq" and meta["config"]["vae_hidden"] == [16, 16]


def test_load_refuses_weights_of_another_config(tmp_path: Path) -> None:
    fitted(dataclasses.replace(TINY, steps=5)).save(tmp_path / "ckpt")
    meta_path = tmp_path / "ckpt" / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["critic_hidden"] = [32, 16]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        D3rlpyBCQ.load(tmp_path / "ckpt")
    with pytest.raises(CheckpointError):
        D3rlpyBCQ.load(tmp_path / "missing")


def test_errors_before_fit_and_on_a_wrong_spec() -> None:
    algo = D3rlpyBCQ(TINY, TINY_SPEC, seed=0)
    with pytest.raises(BmrlError, match="before fit"):
        algo.make_agent()
    wrong = D3rlpyBCQ(TINY, EnvSpec("pointgoal", obs_dim=3, act_dim=2, episode_length=20), seed=0)
    with pytest.raises(BmrlError, match="spec"):
        wrong.fit(MetaTrainData(TINY_SPEC, tiny_batch(), 2, "contract-test"))


def test_named_configs_and_the_d3rlpy_config() -> None:
    assert set(D3rlpyBCQ.configs) == {"pointgoal", "halfcheetah-vel-lite", "hopper-vel-lite", "halfcheetah-vel",
                                      "hopper-vel", "default"}
    assert D3rlpyBCQ.configs["pointgoal"].steps == 3000
    assert D3rlpyBCQ.configs["halfcheetah-vel-lite"].steps == D3rlpyBCQ.configs["hopper-vel-lite"].steps == 20_000
    c = BCQBaselineConfig()
    assert (c.batch_size, c.actor_lr, c.critic_lr, c.n_action_samples) == (100, 3e-4, 3e-4, 10)
    assert (c.critic_hidden, c.actor_hidden, c.vae_hidden) == ((400, 300), (400, 300), (750, 750))
    assert (c.gamma, c.tau, c.lam, c.action_flexibility, c.rl_start_step) == (0.99, 0.005, 0.75, 0.05, 0)
    d = d3rlpy_config(c)
    assert d.actor_encoder_factory.hidden_units == [400, 300]
    assert d.critic_encoder_factory.hidden_units == [400, 300]
    assert d.imitator_encoder_factory.hidden_units == [750, 750]
    got = (d.actor_learning_rate, d.critic_learning_rate, d.batch_size, d.n_action_samples, d.lam)
    assert got == (3e-4, 3e-4, 100, 10, 0.75)
    assert (d.action_flexibility, d.beta, d.rl_start_step, d.n_critics) == (0.05, 0.5, 0, 2)


def test_every_config_field_has_a_docstring() -> None:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(BCQBaselineConfig))
    body = tree.body[0].body
    documented = {stmt.target.id for stmt, nxt in zip(body, body[1:])
                  if isinstance(stmt, ast.AnnAssign) and isinstance(nxt, ast.Expr)
                  and isinstance(nxt.value, ast.Constant)}
    assert documented == {f.name for f in dataclasses.fields(BCQBaselineConfig)}
