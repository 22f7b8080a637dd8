"""One optimizer update: forward/backward over the micro-batches, the noise probe, clipping.

The model is anything `loss_fn(micro_batch) -> mean loss` (the GPT in training; a linear
regression in the noise-scale test). Gradients accumulate as the mean over micro-batches, so
the update is the same whatever the micro-batching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from scalelab.train.noise import grad_sq_norm


@dataclass(frozen=True)
class StepStats:
    loss: float  # mean loss of this rank's batch (before the update)
    grad_norm: float  # global gradient norm before clipping
    g2_small: float | None  # |G|^2 of the first half of the batch (noise probe), else None


def micro_chunks(per_rank: int, micro: int, probe: bool) -> int:
    """How many pieces this rank's batch is cut into. The noise probe needs an even count (to
    read the gradient after the first half): a batch taken whole is cut in two for it."""
    n = per_rank // micro
    if probe and n == 1 and per_rank % 2 == 0:
        return 2
    return n


def forward_backward(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    batch: torch.Tensor,
    params: Sequence[torch.nn.Parameter],
    chunks: int,
    probe: bool,
    grad_clip: float,
    autocast: AbstractContextManager | None = None,
) -> StepStats:
    """Accumulate the mean gradient over `chunks` pieces of `batch`, then clip (if grad_clip).

    Probe: after the first half of the pieces the gradient holds half of the half-batch mean
    gradient, so |G_small|^2 = 4·|g|^2 there.
    """
    autocast = autocast or nullcontext()
    probe = probe and chunks % 2 == 0
    loss_sum, g2_small = 0.0, None
    for i, mb in enumerate(torch.tensor_split(batch, chunks)):
        with autocast:
            loss = loss_fn(mb)
        (loss / chunks).backward()
        loss_sum += float(loss.detach()) / chunks
        if probe and i == chunks // 2 - 1:
            g2_small = grad_sq_norm(params) * 4
    if grad_clip:
        gn = torch.nn.utils.clip_grad_norm_(params, grad_clip)
        gn = float(gn.full_tensor() if hasattr(gn, "full_tensor") else gn)
    else:
        gn = grad_sq_norm(params) ** 0.5
    return StepStats(loss_sum, gn, g2_small)


def apply_update(opt, params, lr: float, ewa: list[torch.Tensor], ewa_decay: float) -> None:
    """Set the LR, step, clear the gradients, and move the EWA of the weights (if any)."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    opt.zero_grad(set_to_none=True)
    if ewa:  # exponentially weighted average of the weights (Zhang et al. 2025)
        torch._foreach_lerp_(ewa, [p.detach() for p in params], 1 - ewa_decay)
