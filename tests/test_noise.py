"""Gradient noise scale: a known answer through the trainer's own step and estimator.

Linear regression y = x·w* + ε, x ~ N(0, I_d), ε ~ N(0, σ²), per-example loss ½(x·w − y)².
At w = w* + δ the per-example gradient is g = x(x·δ − ε), so
    G = E[g] = δ                                   (E[x xᵀ] = I)
    E[g gᵀ] = |δ|² I + 2 δ δᵀ + σ² I               (Isserlis: E[x xᵀ (xᵀδ)²] = |δ|² I + 2 δδᵀ)
    tr Σ = tr(E[g gᵀ]) − |G|² = (d + 1)|δ|² + d σ²
and B_simple = tr Σ / |G|² (McCandlish et al. 2018, App. A.1; docs/laws.md §2).
"""

from __future__ import annotations

import math

import pytest
import torch

from scalelab.train.noise import NoiseScale
from scalelab.train.step import forward_backward, micro_chunks


def _estimate(d: int, sigma: float, delta_norm: float, batch: int, steps: int, micro: int):
    g = torch.Generator().manual_seed(0)
    w_star = torch.randn(d, generator=g, dtype=torch.float64)
    delta = torch.randn(d, generator=g, dtype=torch.float64)
    delta *= delta_norm / delta.norm()
    w = torch.nn.Parameter(w_star + delta)

    def loss_fn(rows: torch.Tensor) -> torch.Tensor:  # rows: (b, d + 1) = [x, ε]
        x, eps = rows[:, :d], rows[:, d]
        y = x @ w_star + eps
        return 0.5 * ((x @ w - y) ** 2).mean()

    noise = NoiseScale(decay=0.999)  # long memory: an average over most of the steps
    chunks = micro_chunks(batch, micro, probe=True)
    for _ in range(steps):
        x = torch.randn(batch, d, generator=g, dtype=torch.float64)
        eps = sigma * torch.randn(batch, 1, generator=g, dtype=torch.float64)
        stats = forward_backward(loss_fn, torch.cat([x, eps], 1), [w], chunks, True, 0.0)
        assert stats.g2_small is not None
        noise.update(batch // 2, batch, stats.g2_small, stats.grad_norm**2)
        w.grad = None  # the weights stay at w* + δ: the answer is known there
    return noise


@pytest.mark.parametrize("micro", [64, 16])  # whole batch (probe cuts it in two), 4 micro-batches
def test_noise_scale_matches_linear_regression_closed_form(micro):
    d, sigma, delta_norm, batch = 8, 1.0, 1.0, 64
    truth = ((d + 1) * delta_norm**2 + d * sigma**2) / delta_norm**2  # = 17
    noise = _estimate(d, sigma, delta_norm, batch, steps=6000, micro=micro)
    assert noise.value == pytest.approx(truth, rel=0.12), (noise.value, truth)
    # the two halves of the estimator separately: |G|² and tr Σ
    assert noise.g2 == pytest.approx(delta_norm**2, rel=0.12)
    assert noise.tr == pytest.approx(truth * delta_norm**2, rel=0.12)


def test_noise_scale_at_the_optimum_is_pure_noise():
    """At w = w*, G = 0: |G|² ≈ 0 while tr Σ = d σ², so B_simple is huge (not a finite answer)."""
    noise = _estimate(d=4, sigma=2.0, delta_norm=1e-9, batch=32, steps=3000, micro=32)
    assert noise.tr == pytest.approx(4 * 2.0**2, rel=0.15)
    assert abs(noise.g2) < 0.05 * noise.tr
    assert not math.isfinite(noise.value) or abs(noise.value) > 20
