"""One optimizer update: forward/backward over the micro-batches, the noise probe, clipping.

The model is anything `loss_fn(micro_batch) -> mean loss` (the GPT in training; a linear
regression in the noise-scale test). Gradients accumulate as the mean over micro-batches, so
the update is the same whatever the micro-batching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor

from scalelab.train.noise import grad_norm


class StepStats:
    """The scalars of one update, kept on the device until read: no host sync inside a step.

    Reading `loss`, `grad_norm` or `g2_small` waits for the device; `read_all` fetches many
    steps' scalars in one copy. The host arithmetic is the one the trainer always did, done
    later: loss = sum of float(micro-batch loss) / chunks in float64 (on the device: IEEE
    float64 either way), grad norm = float(|g|) from clip_grad_norm_, or (float(|g|)²)^½
    without clipping, g2_small = float(|g_half|)²·4.
    """

    def __init__(self, loss_sum: Tensor, norm: Tensor, norm_small: Tensor | None, clipped: bool):
        self.loss_sum = loss_sum  # float64: this rank's mean loss (the trainer sums over ranks)
        self.norm = norm  # global gradient norm before clipping
        self.norm_small = norm_small  # |g| after the first half of the micro-batches, or None
        self.clipped = clipped
        self.probed = norm_small is not None
        self._host: list[float] | None = None

    def tensors(self) -> list[Tensor]:
        return [t for t in (self.loss_sum, self.norm, self.norm_small) if t is not None]

    def _values(self) -> list[float]:
        if self._host is None:
            read_all([self])
        assert self._host is not None
        return self._host

    @property
    def loss(self) -> float:
        """Mean loss of this rank's batch (before the update)."""
        return self._values()[0]

    @property
    def grad_norm(self) -> float:
        """Global gradient norm before clipping."""
        n = self._values()[1]
        return n if self.clipped else (n**2) ** 0.5

    @property
    def g2_small(self) -> float | None:
        """|G|^2 of the first half of the batch (noise probe), else None."""
        return self._values()[2] ** 2 * 4 if self.probed else None


def read_all(stats: Sequence[StepStats]) -> None:
    """Bring the scalars of many updates to the host in one copy (one sync per logged row).
    float32 -> float64 is exact, so each value is what float(tensor) gave before."""
    todo = [st for st in stats if st._host is None]
    if not todo:
        return
    flat = torch.stack([t.detach().reshape(()).double() for st in todo for t in st.tensors()])
    values = flat.tolist()
    i = 0
    for st in todo:
        n = len(st.tensors())
        st._host, i = values[i : i + n], i + n
        st.loss_sum = st.norm = st.norm_small = None  # free the device scalars


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
    loss_sum = norm_small = None
    for i, mb in enumerate(torch.tensor_split(batch, chunks)):
        with autocast:
            loss = loss_fn(mb)
        (loss / chunks).backward()
        part = loss.detach().double() / torch.full_like(loss, chunks, dtype=torch.float64)
        loss_sum = part if loss_sum is None else loss_sum + part
        if probe and i == chunks // 2 - 1:
            norm_small = grad_norm(params)
    if grad_clip:
        gn = torch.nn.utils.clip_grad_norm_(params, grad_clip)
        norm = gn.full_tensor() if hasattr(gn, "full_tensor") else gn
    else:
        norm = grad_norm(params)
    return StepStats(loss_sum, norm, norm_small, clipped=bool(grad_clip))


def apply_update(opt, params, lr: float, ewa: list[torch.Tensor], ewa_decay: float) -> None:
    """Set the LR, step, clear the gradients, and move the EWA of the weights (if any)."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    opt.zero_grad(set_to_none=True)
    if ewa:  # exponentially weighted average of the weights (Zhang et al. 2025)
        torch._foreach_lerp_(ewa, [p.detach() for p in params], 1 - ewa_decay)
