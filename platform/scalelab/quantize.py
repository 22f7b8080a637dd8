"""Weight quantization for the capacity study: per-channel symmetric round-to-nearest (RTN).

Allen-Zhu & Li (arXiv 2404.05405, Result 8): knowledge survives int8 and loses more than half
at int4. Here every weight matrix (ndim >= 2: attention, MLP, the tied embedding / output
layer) gets one scale per output channel (row), and is rounded in place ("fake quantization":
the weights stay fp32 but take only 2^b - 1 values per row):

    qmax = 2^(b-1) - 1              (127 for int8, 7 for int4; symmetric, -qmax..qmax)
    scale_i = max_j |W_ij| / qmax   (row i; a row of zeros keeps scale 1)
    W_ij <- clamp(round(W_ij / scale_i), -qmax, qmax) * scale_i

Norm gains (1-D) stay fp32. Under FSDP2 each rank holds whole rows (Shard(0)), so rounding the
local shard row by row is the same as rounding the full matrix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def qmax(bits: int) -> int:
    """Largest integer level of a symmetric b-bit code: 2^(b-1) - 1."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 16:
        raise ValueError(f"bits: must be an int in [2, 16], got {bits!r}")
    return 2 ** (bits - 1) - 1


def channel_scales(w: torch.Tensor, bits: int) -> torch.Tensor:
    """One scale per output channel (row of w, flattened over the other dims): max|row| / qmax."""
    if w.ndim < 2:
        raise ValueError(f"w: per-channel quantization needs ndim >= 2, got shape {tuple(w.shape)}")
    amax = w.detach().abs().flatten(1).amax(1)
    return torch.where(amax > 0, amax / qmax(bits), torch.ones_like(amax))


def quantize_rtn(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-channel symmetric RTN of w (a new tensor of the same dtype): q·scale, q in ±qmax."""
    q = qmax(bits)
    scale = channel_scales(w, bits).view(-1, *([1] * (w.ndim - 1)))
    return (torch.round(w.detach().float() / scale).clamp(-q, q) * scale).to(w.dtype)


def _local(p: torch.Tensor) -> torch.Tensor:
    """The tensor a rank holds: the local shard of an FSDP2 DTensor, else the tensor itself."""
    data = p.data
    return data.to_local() if hasattr(data, "to_local") else data


def quantize_model_(model: torch.nn.Module, bits: int) -> dict:
    """Round every weight matrix of `model` in place; return {matrices, weights, rel_error}.

    rel_error = |W_q - W| / |W| over all rounded weights of this rank (Frobenius norms).
    """
    mats, n, err2, norm2 = 0, 0, 0.0, 0.0
    with torch.no_grad():
        for p in model.parameters():
            w = _local(p)
            if w.ndim < 2 or w.numel() == 0:
                continue
            wq = quantize_rtn(w, bits)
            err2 += float((wq.float() - w.float()).pow(2).sum())
            norm2 += float(w.float().pow(2).sum())
            w.copy_(wq)
            mats += 1
            n += w.numel()
    return {"matrices": mats, "weights": n, "rel_error": (err2 / norm2) ** 0.5 if norm2 else 0.0}


@contextmanager
def quantized(model: torch.nn.Module, bits: int) -> Iterator[dict]:
    """`with quantized(model, 8) as stats:` the model holds RTN weights inside the block and
    its exact original weights (bit for bit) after it, even if the block raises."""
    params = list(model.parameters())
    backup = [_local(p).detach().clone() for p in params]
    try:
        yield quantize_model_(model, bits)
    finally:
        with torch.no_grad():
            for p, b in zip(params, backup, strict=True):
                _local(p).copy_(b)
