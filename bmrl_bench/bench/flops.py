"""FLOPs of one update: counted by torch (`counted_flops`, what the rows report) and from the layer sizes
(`mlp_flops`, the hand sums the counts are checked against)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

COUNTED = ("matmuls (mm, addmm, bmm, baddbmm) forward and backward, counted by torch's FlopCounterMode; "
           "not counted: elementwise work (activations, losses, Adam's step), reductions and sampling")


def counted_flops(step: Callable[[], object], calls: int = 1) -> float:
    """FLOPs of one call of `step` (mean of `calls` calls), counted by `torch.utils.flop_counter.FlopCounterMode`.

    It counts what autograd really runs, so a gradient nobody needs is not counted; see `COUNTED`."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        for _ in range(calls):
            step()
    return counter.get_total_flops() / calls


def mlp_flops(
    sizes: Sequence[int], rows: int, *, weight_grad: bool = False, input_grad: bool = False,
    first_input_grad: bool = False,
) -> int:
    """Matmul FLOPs of a linear stack `sizes[0] -> ... -> sizes[-1]` on `rows` inputs.

    Forward `2 * in * out * rows` per layer; `weight_grad` adds the same per layer (dW = x^T g);
    `input_grad` adds it for every layer but the first (the gradient flows back through the
    net), `first_input_grad` for the first too (the input itself needs a gradient).
    """
    per_layer = [2 * a * b * rows for a, b in zip(sizes[:-1], sizes[1:])]
    total = sum(per_layer)
    if weight_grad:
        total += sum(per_layer)
    if input_grad or first_input_grad:
        total += sum(per_layer[1:])
    if first_input_grad:
        total += per_layer[0]
    return total


def bcq_update_flops(
    obs_dim: int, act_dim: int, batch: int, n_action_samples: int = 10,
    actor_hidden: Sequence[int] = (400, 300), critic_hidden: Sequence[int] = (400, 300),
    vae_hidden: Sequence[int] = (750, 750), latent_dim: int | None = None,
) -> int:
    """FLOPs of one BCQ update of one agent (official order: VAE, critics, perturbation actor)."""
    o, a = obs_dim, act_dim
    lat = latent_dim if latent_dim is not None else 2 * a
    enc = [o + a, *vae_hidden, 2 * lat]
    dec = [o + lat, *vae_hidden, a]
    actor = [o + a, *actor_hidden, a]
    critic = [o + a, *critic_hidden, 1]
    n = batch * n_action_samples
    return (
        # VAE: encoder trained (its input needs no gradient); decoder trained and its input (z) does.
        mlp_flops(enc, batch, weight_grad=True, input_grad=True)
        + mlp_flops(dec, batch, weight_grad=True, first_input_grad=True)
        # critic target on n decoded actions per next state: decoder, target actor, 2 target critics
        + mlp_flops(dec, n) + mlp_flops(actor, n) + 2 * mlp_flops(critic, n)
        # two critics trained on the batch
        + 2 * mlp_flops(critic, batch, weight_grad=True, input_grad=True)
        # actor step: decoder (no grad), actor trained, Q1 on its action (gradient to the action only)
        + mlp_flops(dec, batch) + mlp_flops(actor, batch, weight_grad=True, input_grad=True)
        + mlp_flops(critic, batch, first_input_grad=True)
    )


def sac_update_flops(obs_dim: int, act_dim: int, batch: int, hidden: Sequence[int] = (256, 256)) -> int:
    """FLOPs of one SAC update of one agent (critics, actor, temperature; two critics)."""
    actor = [obs_dim, *hidden, 2 * act_dim]
    critic = [obs_dim + act_dim, *hidden, 1]
    return (
        # target: actor on s', two target critics
        mlp_flops(actor, batch) + 2 * mlp_flops(critic, batch)
        # two critics trained
        + 2 * mlp_flops(critic, batch, weight_grad=True, input_grad=True)
        # actor trained through both critics (critic weights frozen: gradient to the action only)
        + mlp_flops(actor, batch, weight_grad=True, input_grad=True)
        + 2 * mlp_flops(critic, batch, first_input_grad=True)
    )
