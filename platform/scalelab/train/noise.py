"""Gradient noise scale B_simple (McCandlish et al. 2018, App. A.1; docs/laws.md §2).

From the squared gradient norm at two batch sizes B_small < B_big,
    |G|^2 ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(S) ~ (|G_small|^2 - |G_big|^2) / (1/B_small - 1/B_big)
are unbiased estimates of the true gradient's squared norm and the trace of the per-example
gradient covariance; both are smoothed (EMA) apart, then B_simple = tr(S) / |G|^2. The trainer
takes B_small = half the global batch (its first half of the micro-batches) and B_big = the
whole batch, in sequences.
"""

from __future__ import annotations

import torch


def grad_norm(params) -> torch.Tensor:
    """|g| over all (possibly sharded) gradients, on the device (no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    n = torch.nn.utils.get_total_norm(grads, 2.0)
    return n.full_tensor() if hasattr(n, "full_tensor") else n


def grad_sq_norm(params) -> float:
    """|g|^2 over all (possibly sharded) gradients."""
    return float(grad_norm(params)) ** 2


class NoiseScale:
    """The EMA estimator above; `update` returns the current B_simple (NaN until |G|^2 > 0)."""

    def __init__(self, decay: float = 0.9):
        self.decay, self.g2, self.tr = decay, 0.0, 0.0

    def update(self, b_small: int, b_big: int, g2_small: float, g2_big: float) -> float:
        g2 = (b_big * g2_big - b_small * g2_small) / (b_big - b_small)
        tr = (g2_small - g2_big) / (1 / b_small - 1 / b_big)
        self.g2 = self.decay * self.g2 + (1 - self.decay) * g2
        self.tr = self.decay * self.tr + (1 - self.decay) * tr
        return self.value

    @property
    def value(self) -> float:
        return self.tr / self.g2 if self.g2 > 0 else float("nan")

    def state(self) -> list[float]:
        return [self.g2, self.tr]

    def load(self, state) -> None:
        self.g2, self.tr = (float(v) for v in state[:2])
