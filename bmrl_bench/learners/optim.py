"""The one optimizer every learner steps: fused Adam, with its non-contiguous-gradient trap fixed."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def fused_adam(params: Iterable[torch.Tensor], lr: float) -> torch.optim.Adam:
    """Adam with the fused (one kernel for all parameters) implementation; step it with `fused_step`."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def fused_step(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> None:
    """`optimizer.step()` after making every gradient of `params` contiguous.

    Fused Adam silently mis-updates a parameter whose gradient is a non-contiguous view
    (a batched layer's weight gradient can be one); a contiguous copy is updated correctly
    and is bit-identical where the gradient already was contiguous.
    """
    for p in params:
        g = p.grad
        if g is not None and not g.is_contiguous():
            p.grad = g.contiguous()
    optimizer.step()
