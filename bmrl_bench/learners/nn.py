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

    `pad_in` / `pad_out` store the parameters zero-padded to `(K, in + pad_in, out + pad_out)`
    and `(K, 1, out + pad_out)`, for faster GEMM shapes (see `BatchedMLP(gemm_friendly=True)`);
    the layer then takes `in + pad_in` features. The padding is kept in storage rather than
    added per forward pass because padding a 750x750 weight on every call cost 16% of a BCQ
    update. `state_dict` and `load_state_dict` still show the true `(K, in, out)` shapes, and
    `true_index` names the true block of each parameter.
    """

    def __init__(
        self,
        num_members: int,
        in_features: int,
        out_features: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        pad_in: int = 0,
        pad_out: int = 0,
    ) -> None:
        super().__init__()
        if num_members < 1 or in_features < 1 or out_features < 1 or pad_in < 0 or pad_out < 0:
            raise ValueError(
                f"BatchedLinear needs positive sizes, got K={num_members}, in={in_features}, out={out_features}")
        self.num_members = num_members
        self.in_features = in_features
        self.out_features = out_features
        factory = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.zeros(num_members, in_features + pad_in, out_features + pad_out, **factory))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, out_features + pad_out, **factory))
        self.true_index: dict[str, tuple[slice, ...]] = {
            "weight": (slice(None), slice(None, in_features), slice(None, out_features)),
            "bias": (slice(None), slice(None), slice(None, out_features)),
        }
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Each member as `nn.Linear` would be: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.

        (`nn.Linear` uses kaiming_uniform_ with a=sqrt(5), whose bound is exactly 1/sqrt(in).)
        The draws are those of the unpadded shapes, so padding does not change the initialization.
        """
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            for name in ("weight", "bias"):
                self.get_parameter(name)[self.true_index[name]].uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)

    # The state dict holds the true blocks only, so padded and unpadded layers share checkpoints.
    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:  # type: ignore[override]
        for name, idx in self.true_index.items():
            p = self.get_parameter(name)[idx]
            destination[prefix + name] = p if keep_vars else p.detach()

    def _load_from_state_dict(self, state_dict: Mapping[str, torch.Tensor], prefix: str, local_metadata: dict,
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        for name, idx in self.true_index.items():
            key = prefix + name
            if key not in state_dict:
                missing_keys.append(key)
                continue
            dst = self.get_parameter(name)[idx]
            if state_dict[key].shape != dst.shape:
                error_msgs.append(f"size mismatch for {key}: copying a param with shape "
                                  f"{tuple(state_dict[key].shape)}, the shape in current model is {tuple(dst.shape)}.")
                continue
            with torch.no_grad():
                dst.copy_(state_dict[key])
        if strict:  # as nn.Module's own loader: a key of this layer that names no parameter is an error
            unexpected_keys.extend(k for k in state_dict
                                   if k.startswith(prefix) and k[len(prefix):].split(".", 1)[0] not in self.true_index)

    def extra_repr(self) -> str:
        pad = self.weight.shape[1] - self.in_features, self.weight.shape[2] - self.out_features
        return (f"num_members={self.num_members}, in_features={self.in_features}, out_features={self.out_features}"
                + (f", padding={pad}" if any(pad) else ""))


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
        gemm_friendly: bool = False,
    ) -> None:
        super().__init__()
        self.num_members = num_members
        sizes = [in_features, *hidden, out_features]
        pads = [0] * len(sizes)
        if gemm_friendly and activation is nn.ReLU:
            for i in range(1, len(sizes) - 1):
                pads[i] = -sizes[i] % 16
        self.layers = nn.ModuleList(
            BatchedLinear(num_members, a, b, dtype=dtype, device=device, pad_in=pa, pad_out=pb)
            for a, b, pa, pb in zip(sizes[:-1], sizes[1:], pads[:-1], pads[1:])
        )
        # ReLU in place on the fresh layer output: saves an allocation per hidden layer (baddbmm's
        # backward does not need its output; ReLU's backward uses only its result).
        self.activation = nn.ReLU(inplace=True) if activation is nn.ReLU else activation()
        # `gemm_friendly`: the same function computed with faster kernel shapes (rounding-level
        # differences only, so off by default: data-collection SAC must reproduce published bytes).
        # Measured on a Zen 4 core, torch 2.13 / MKL:
        # - a hidden width that is not a multiple of 16 leaves a ragged GEMM edge: 1000x750 @ 750x750
        #   runs at ~70 GFLOP/s, 1000x752 @ 752x752 at ~95. Hidden units are padded with zero weights
        #   and biases (stored padded, see BatchedLinear); the extra units are exactly 0 after ReLU,
        #   add exactly 0 to the next layer and get exactly zero gradients, so Adam and Polyak
        #   averaging keep them at 0. State dicts show the true shapes.
        # - a narrow output layer (1 < out < 16) is ~2.7x faster with the weight in transposed layout;
        # - one output (a critic) is a batched GEMV that bmm runs at ~2 GFLOP/s: a multiply-and-sum is
        #   2-5x faster forward and faster still backward.
        self._narrow_out = gemm_friendly and 1 < out_features < 16
        self._vector_out = gemm_friendly and out_features == 1
        self._plain = not (self._narrow_out or self._vector_out)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for layer in self.layers:
            layer.reset_parameters(generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._plain:
            return self.forward_with(x, [p for layer in self.layers for p in (layer.weight, layer.bias)])
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.activation(x)
        return x

    def forward_with(self, x: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
        """The same network with other parameters `[w0, b0, w1, b1, ...]` (e.g. detached ones),
        each shaped as this network's own (padded) parameter, or a slice of it along the members."""
        last = len(self.layers) - 1
        for i in range(len(self.layers)):
            w, b = params[2 * i], params[2 * i + 1]
            if i < last:
                x = self.activation(torch.baddbmm(b, x, w))
            elif self._vector_out:
                x = (x * w.mT).sum(-1, keepdim=True) + b  # (K, B, in) . (K, 1, in) -> (K, B, 1)
            elif self._narrow_out:
                x = torch.baddbmm(b, x, w.mT.contiguous().mT)
            else:
                x = torch.baddbmm(b, x, w)
        return x


def true_parameters(net: nn.Module) -> list[tuple[str, nn.Parameter, tuple[slice, ...]]]:
    """`(name, parameter, index of its true block)` for every parameter of `net`, in `named_parameters` order.

    The index selects what `state_dict` shows: all of a plain parameter, the unpadded block of a
    padded `BatchedLinear` one.
    """
    index = {f"{m}.{n}" if m else n: idx
             for m, mod in net.named_modules() if isinstance(mod, BatchedLinear) for n, idx in mod.true_index.items()}
    return [(name, p, index.get(name, (slice(None),))) for name, p in net.named_parameters()]


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
