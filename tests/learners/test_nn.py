from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bmrl_bench.learners.nn import BatchedLinear, BatchedMLP, member_state, stack_states, true_parameters


def test_batched_linear_member_k_is_its_own_linear_layer() -> None:
    torch.manual_seed(0)
    layer = BatchedLinear(4, 5, 3, dtype=torch.float64)
    x = torch.randn(4, 7, 5, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (4, 7, 3)
    for k in range(4):
        expected = x[k] @ layer.weight[k] + layer.bias[k]
        torch.testing.assert_close(y[k], expected, rtol=0, atol=1e-12)
        ref = nn.Linear(5, 3, dtype=torch.float64)
        with torch.no_grad():
            ref.weight.copy_(layer.weight[k].T)
            ref.bias.copy_(layer.bias[k, 0])
        torch.testing.assert_close(y[k], ref(x[k]), rtol=0, atol=1e-12)
    # member k's output does not depend on the other members' inputs
    x2 = x.clone()
    x2[1:] = torch.randn(3, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(x2)[0], y[0], rtol=0, atol=0)


def test_batched_linear_init_matches_nn_linear_bounds() -> None:
    in_f, out_f, k = 9, 64, 32
    layer = BatchedLinear(k, in_f, out_f)
    bound = 1.0 / math.sqrt(in_f)
    assert layer.weight.shape == (k, in_f, out_f) and layer.bias.shape == (k, 1, out_f)
    for p in (layer.weight, layer.bias):
        assert p.abs().max().item() <= bound
        assert p.abs().max().item() > 0.95 * bound  # fills the whole interval ...
        assert abs(p.std().item() - bound / math.sqrt(3.0)) < 0.1 * bound  # ... uniformly
    ref = nn.Linear(in_f, out_f)  # nn.Linear's own bounds are the same
    assert ref.weight.abs().max().item() <= bound and ref.bias.abs().max().item() <= bound
    # members differ, and a seeded generator reproduces the draw
    assert not torch.equal(layer.weight[0], layer.weight[1])
    layer.reset_parameters(torch.Generator().manual_seed(3))
    w = layer.weight.detach().clone()
    layer.reset_parameters(torch.Generator().manual_seed(3))
    assert torch.equal(w, layer.weight)


def test_batched_mlp_member_equals_plain_mlp() -> None:
    torch.manual_seed(1)
    mlp = BatchedMLP(3, 4, [8, 6], 2, dtype=torch.float64)
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    y = mlp(x)
    assert y.shape == (3, 5, 2)
    for k in range(3):
        layers: list[nn.Module] = []
        for i, bl in enumerate(mlp.layers):
            lin = nn.Linear(bl.in_features, bl.out_features, dtype=torch.float64)
            with torch.no_grad():
                lin.weight.copy_(bl.weight[k].T)
                lin.bias.copy_(bl.bias[k, 0])
            layers.append(lin)
            if i < len(mlp.layers) - 1:
                layers.append(nn.ReLU())
        torch.testing.assert_close(y[k], nn.Sequential(*layers)(x[k]), rtol=0, atol=1e-12)
    params = [p.detach() for p in mlp.parameters()]
    torch.testing.assert_close(mlp.forward_with(x, params), y, rtol=0, atol=0)


def test_member_state_and_stack_states_round_trip() -> None:
    mlp = BatchedMLP(3, 4, [8], 2)
    sd = mlp.state_dict()
    members = [member_state(sd, k) for k in range(3)]
    assert members[1]["layers.0.weight"].shape == (1, 4, 8)
    one = BatchedMLP(1, 4, [8], 2)
    one.load_state_dict(members[2])  # a member's state is a valid 1-member state dict
    x = torch.randn(3, 5, 4)
    torch.testing.assert_close(one(x[2:3])[0], mlp(x)[2], rtol=0, atol=1e-6)
    back = stack_states(members)
    assert back.keys() == sd.keys()
    for n in sd:
        assert torch.equal(back[n], sd[n])
    with pytest.raises(IndexError):
        member_state(sd, 3)


@pytest.mark.parametrize("hidden,out", [((750, 300), 6), ((20, 33), 1), ((16, 32), 24)])
def test_gemm_friendly_mlp_is_the_same_function_with_the_same_gradients(hidden: tuple[int, ...], out: int) -> None:
    torch.manual_seed(2)
    plain = BatchedMLP(2, 7, hidden, out, dtype=torch.float64)
    fast = BatchedMLP(2, 7, hidden, out, dtype=torch.float64, gemm_friendly=True)
    fast.load_state_dict(plain.state_dict())
    sd = fast.state_dict()
    # padding is internal
    assert {n: t.shape for n, t in sd.items()} == {n: p.shape for n, p in plain.named_parameters()}
    for n, t in plain.state_dict().items():
        assert torch.equal(sd[n], t)
    x = torch.randn(2, 9, 7, dtype=torch.float64, requires_grad=True)
    y_plain, y_fast = plain(x), fast(x)
    assert y_fast.shape == (2, 9, out)
    torch.testing.assert_close(y_fast, y_plain, rtol=0, atol=1e-12)
    g = torch.randn_like(y_plain)
    grads_plain = torch.autograd.grad(y_plain, [x, *plain.parameters()], g)
    grads_fast = torch.autograd.grad(y_fast, [x, *fast.parameters()], g)
    torch.testing.assert_close(grads_fast[0], grads_plain[0], rtol=0, atol=1e-12)
    for (name, p, idx), a, b in zip(true_parameters(fast), grads_fast[1:], grads_plain[1:]):
        assert a.shape == p.shape and a.is_contiguous()
        torch.testing.assert_close(a[idx], b, rtol=0, atol=1e-12)
        pad = torch.ones_like(a, dtype=torch.bool)
        pad[idx] = False
        assert not a[pad].any(), f"{name}: padding got a nonzero gradient"  # so Adam keeps it at exactly 0
        assert not p.detach()[pad].any()
    params = [p.detach() for p in fast.parameters()]
    torch.testing.assert_close(fast.forward_with(x, params), y_fast, rtol=0, atol=0)


def test_padded_layer_draws_the_unpadded_initialization() -> None:
    plain = BatchedLinear(3, 5, 750)
    padded = BatchedLinear(3, 5, 750, pad_in=4, pad_out=2)
    assert padded.weight.shape == (3, 9, 752) and padded.bias.shape == (3, 1, 752)
    for layer in (plain, padded):
        layer.reset_parameters(torch.Generator().manual_seed(11))
    assert torch.equal(padded.weight[:, :5, :750], plain.weight) and torch.equal(padded.bias[..., :750], plain.bias)
    assert not padded.weight[:, 5:].any() and not padded.weight[..., 750:].any() and not padded.bias[..., 750:].any()
    with pytest.raises(RuntimeError, match="size mismatch"):
        padded.load_state_dict({"weight": torch.zeros(3, 9, 752), "bias": torch.zeros(3, 1, 750)})
    with pytest.raises(RuntimeError, match="Unexpected key.*scale"):
        padded.load_state_dict({**plain.state_dict(), "scale": torch.ones(1)})
    mlp = BatchedMLP(2, 3, (20,), 1, gemm_friendly=True)
    with pytest.raises(RuntimeError, match=r"Unexpected key.*layers\.0\.scale"):
        mlp.load_state_dict({**mlp.state_dict(), "layers.0.scale": torch.ones(1)})
