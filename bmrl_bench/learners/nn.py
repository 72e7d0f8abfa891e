"""K-member batched layers: K independent networks evaluated with one `baddbmm` per layer.

Every parameter carries the member index as its leading dimension, so member k of a
`BatchedMLP` is an ordinary MLP whose weights are `param[k]`. Inputs are `(K, B, in)`:
member k sees only `x[k]`, hence the gradient of a loss that is a sum of per-member
terms reaches member k's weights only through member k's own term.

`member_state` / `stack_states` split and join that leading dimension of a state dict
(a member's state keeps a leading dimension of size 1, so it is a valid state dict of
the same module built with one member).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn


class BatchedLinear(nn.Module):
    """K independent linear layers: `y[k] = x[k] @ weight[k] + bias[k]`.

    weight: `(K, in, out)` (the transpose of `nn.Linear.weight`), bias: `(K, 1, out)`.
    """

    def __init__(
        self,
        num_members: int,
        in_features: int,
        out_features: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if num_members < 1 or in_features < 1 or out_features < 1:
            raise ValueError(f"BatchedLinear needs positive sizes, got K={num_members}, in={in_features}, out={out_features}")
        self.num_members = num_members
        self.in_features = in_features
        self.out_features = out_features
        factory = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.empty(num_members, in_features, out_features, **factory))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_features, **factory))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Each member as `nn.Linear` would be: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.

        (`nn.Linear` uses kaiming_uniform_ with a=sqrt(5), whose bound is exactly 1/sqrt(in).)
        """
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound, generator=generator)
            self.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"num_members={self.num_members}, in_features={self.in_features}, out_features={self.out_features}"


class BatchedMLP(nn.Module):
    """K independent MLPs `in -> hidden... -> out` with an activation after every hidden layer."""

    def __init__(
        self,
        num_members: int,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: type[nn.Module] = nn.ReLU,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.num_members = num_members
        sizes = [in_features, *hidden, out_features]
        self.layers = nn.ModuleList(
            BatchedLinear(num_members, a, b, dtype=dtype, device=device) for a, b in zip(sizes[:-1], sizes[1:])
        )
        # ReLU in place on the fresh layer output: saves an allocation per hidden layer (baddbmm's
        # backward does not need its output; ReLU's backward uses only its result).
        self.activation = nn.ReLU(inplace=True) if activation is nn.ReLU else activation()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for layer in self.layers:
            layer.reset_parameters(generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.activation(x)
        return x

    def forward_with(self, x: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
        """The same network with other parameters `[w0, b0, w1, b1, ...]` (e.g. detached ones)."""
        last = len(self.layers) - 1
        for i in range(len(self.layers)):
            x = torch.baddbmm(params[2 * i + 1], x, params[2 * i])
            if i < last:
                x = self.activation(x)
        return x


def member_state(module_state: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Member k of a batched state dict: every tensor sliced to `[k:k+1]` (leading dim kept), cloned."""
    out = {}
    for name, t in module_state.items():
        if t.dim() == 0 or not 0 <= k < t.shape[0]:
            raise IndexError(f"member {k} is out of range for {name!r} of shape {tuple(t.shape)}")
        out[name] = t[k : k + 1].detach().clone()
    return out


def stack_states(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Join member state dicts (each with a leading dim, as `member_state` returns) along dim 0."""
    if not states:
        raise ValueError("stack_states needs at least one member state")
    names = list(states[0])
    for s in states[1:]:
        if list(s) != names:
            raise ValueError("stack_states: member states have different keys")
    return {n: torch.cat([s[n].detach() for s in states], dim=0).contiguous() for n in names}
