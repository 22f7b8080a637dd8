"""GPT decoder (single-device code, nanoGPT style), named sizes, parameter and FLOP counts.

No parallelism here: the trainer shards `model.blocks[i]` and then the root with FSDP2
(torchtitan order). Rotary positions (no learned position table), pre-norm, no biases, no
dropout, tied input/output embedding.

Meta-device flow (large models): build under `torch.device("meta")`, shard, `to_empty(...)`,
then call `model.init_weights()`, which redraws every parameter and recomputes the rotary
buffers (non-persistent buffers are garbage after `to_empty`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scalelab.presets import MLPS, NORMS, SIZES

__all__ = ["GPT", "MLPS", "NORMS", "SIZES", "ModelArgs", "args_from_spec", "flops_per_token"]
__all__ += ["gated_hidden", "model_args", "param_counts"]

ROPE_BASE = 10000.0
INIT_STD = 0.02  # GPT-2 init


@dataclass(frozen=True)
class ModelArgs:
    vocab_size: int  # tokens
    d_model: int  # residual width
    n_layers: int  # transformer blocks
    n_heads: int  # attention heads; head_dim = d_model / n_heads (even, for rotary)
    seq_len: int  # max context (tokens); rotary tables are built for this length
    mlp: str = "gelu"  # "gelu": 4d GELU MLP | "gated": LLaMA SiLU-gated MLP, hidden gated_hidden(d)
    norm: str = "layernorm"  # "layernorm" (no bias) | "rmsnorm"
    mlp_hidden: int = 0  # MLP hidden width; 0 = 4·d (gelu) or gated_hidden(d) (gated)

    def __post_init__(self) -> None:
        for field in ("vocab_size", "d_model", "n_layers", "n_heads", "seq_len"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"model.{field}: must be a positive int, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"model.n_heads: d_model {self.d_model} is not divisible by n_heads {self.n_heads}"
            )
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"model.n_heads: head_dim {self.d_model // self.n_heads} must be even for rotary"
            )
        if not isinstance(self.mlp_hidden, int) or self.mlp_hidden < 0:
            raise ValueError(f"model.mlp_hidden: must be an int >= 0, got {self.mlp_hidden!r}")
        if self.mlp not in MLPS:
            raise ValueError(f"model.mlp: unknown {self.mlp!r}; choose one of {MLPS}")
        if self.norm not in NORMS:
            raise ValueError(f"model.norm: unknown {self.norm!r}; choose one of {NORMS}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def hidden(self) -> int:
        """MLP hidden width."""
        if self.mlp_hidden:
            return self.mlp_hidden
        return gated_hidden(self.d_model) if self.mlp == "gated" else 4 * self.d_model


def gated_hidden(d_model: int) -> int:
    """Hidden width of the gated MLP: int(8/3·d) rounded up to a multiple of 8 (LLaMA).

    Three d×h matrices (3·d·h ≈ 8·d²) keep the count equal to the 4d GELU MLP (2·d·4d = 8·d²);
    e.g. d = 768 -> int(2048.0) = 2048 -> 3·768·2048 = 8·768².
    """
    h = int(8 * d_model / 3)
    return 8 * math.ceil(h / 8)


def model_args(size: str, vocab_size: int, seq_len: int, **overrides) -> ModelArgs:
    """ModelArgs for a named size; `overrides` replace any field (e.g. mlp="gated")."""
    if size not in SIZES:
        raise ValueError(f"model.size: unknown size {size!r}; choose one of {', '.join(SIZES)}")
    fields = dict(SIZES[size], vocab_size=vocab_size, seq_len=seq_len)
    fields.update(overrides)
    return ModelArgs(**fields)


def args_from_spec(m, data_vocab: int, seq_len: int) -> ModelArgs:
    """ModelArgs of a config.ModelSpec `m` on data with `data_vocab` tokens: the preset's shape
    with any explicit d_model / n_layers / n_heads over it; vocab_size 0 = the data's, then
    rounded up to a multiple of vocab_multiple (if set): 50,257 -> 393·128 = 50,304 rows."""
    vocab = m.vocab_size or data_vocab
    if vocab < data_vocab:
        raise ValueError(f"model.vocab_size: {vocab} is below the data's vocabulary {data_vocab}")
    if m.vocab_multiple:
        vocab = m.vocab_multiple * math.ceil(vocab / m.vocab_multiple)
    return ModelArgs(
        vocab_size=vocab,
        seq_len=seq_len,
        mlp=m.mlp,
        norm=m.norm,
        mlp_hidden=m.mlp_hidden,
        **m.shape(),
    )


def param_counts(args: ModelArgs) -> dict[str, int]:
    """Exact parameter counts of GPT(args); the tied embedding is counted once, rotary has none.

    per block: attention qkv 3d² + out d², MLP 2·d·h (gelu, h = 4d: 8d²) or 3·d·h (gated),
    two norms 2d; final norm d; embedding V·d (also the output layer).
    """
    d, h = args.d_model, args.hidden
    mlp = 2 * d * h if args.mlp == "gelu" else 3 * d * h
    block = 4 * d * d + mlp + 2 * d
    non_embedding = args.n_layers * block + d
    embedding = args.vocab_size * d
    return dict(total=non_embedding + embedding, non_embedding=non_embedding, embedding=embedding)


def flops_per_token(args: ModelArgs) -> int:
    """Training FLOPs per token: 6·N + 12·L·d·T (PaLM, Chowdhery et al. 2022, app. B;
    nanoGPT estimate_mfu).

    6·N: each weight does one multiply-add (2 FLOPs) per token forward and two backward
    (grad of input and of weight); N includes the tied embedding because it is the output
    layer's matmul (the input lookup itself costs nothing; norm weights are a rounding error).
    12·L·d·T: attention scores Q·Kᵀ and A·V cost 2·T·d each per token forward per layer
    (full T×T, causal mask not discounted), ×3 for forward+backward.
    torch FlopCounterMode agrees exactly with the math SDPA backend (bar 6 × norm weights); with
    flash/cuDNN attention it counts the backward as 2.5× the forward (the recomputed QKᵀ), so
    it reads ~2% above this for GPT-2 small at T = 1024 (checked on an H100: 873.5M vs 854.8M).
    """
    n = param_counts(args)["total"]
    return 6 * n + 12 * args.n_layers * args.d_model * args.seq_len


def _norm(args: ModelArgs) -> nn.Module:
    if args.norm == "rmsnorm":
        return nn.RMSNorm(args.d_model, eps=1e-6)
    return nn.LayerNorm(args.d_model, bias=False)


def rotary_tables(seq_len: int, head_dim: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (seq_len, head_dim/2): angle t·θ_i, θ_i = base^(-2i/head_dim) (RoFormer)."""
    inv_freq = ROPE_BASE ** (-torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    angles = torch.outer(torch.arange(seq_len, device=device).float(), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, use_complex: bool | None = None
) -> torch.Tensor:
    """Rotate each pair (x[2i], x[2i+1]) by the angle t·θ_i (LLaMA layout).

    x: (B, T, ..., head_dim); cos, sin: (T, head_dim/2). Eager: one complex multiply (~1.8x
    faster on CPU than rotate-half); under torch.compile the real form, which inductor fuses
    (it does not generate code for complex ops). Both give the same numbers.
    """
    if use_complex is None:
        use_complex = not torch.compiler.is_compiling()
    shape = (x.shape[1], *([1] * (x.ndim - 3)), -1)  # broadcast over batch and heads
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    cos, sin = cos.float(), sin.float()  # FSDP2 mixed precision casts block inputs to bf16
    if use_complex:
        z = torch.view_as_complex(pairs) * torch.complex(cos, sin).view(shape)
        return torch.view_as_real(z).flatten(-2).type_as(x)
    c, s = cos.view(shape), sin.view(shape)
    x0, x1 = pairs.unbind(-1)
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2).type_as(x)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.n_heads
        self.qkv = nn.Linear(args.d_model, 3 * args.d_model, bias=False)
        self.proj = nn.Linear(args.d_model, args.d_model, bias=False)  # residual projection

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads)
        qk = apply_rotary(qkv[:, :, :2], cos, sin)  # q and k in one go
        q, k = qk.permute(2, 0, 3, 1, 4)  # each (B, H, T, hd)
        v = qkv[:, :, 2].transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hd)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        d, h = args.d_model, args.hidden
        self.gated = args.mlp == "gated"
        self.fc = nn.Linear(d, h, bias=False)
        if self.gated:
            self.gate = nn.Linear(d, h, bias=False)
        self.proj = nn.Linear(h, d, bias=False)  # residual projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:  # LLaMA: w2(silu(w1 x) * w3 x)
            return self.proj(F.silu(self.gate(x)) * self.fc(x))
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.norm1 = _norm(args)
        self.attn = Attention(args)
        self.norm2 = _norm(args)
        self.mlp = MLP(args)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.tok_emb = nn.Embedding(args.vocab_size, args.d_model)
        self.blocks = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.norm = _norm(args)
        cos, sin = rotary_tables(args.seq_len, args.head_dim)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        if self.tok_emb.weight.device.type != "meta":
            self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2 init: N(0, 0.02) for every matrix, residual projections N(0, 0.02/√(2L)),
        norms 1; recompute the rotary buffers (needed after `to_empty`)."""
        cos, sin = rotary_tables(self.args.seq_len, self.args.head_dim, self.rope_cos.device)
        self.rope_cos.copy_(cos)
        self.rope_sin.copy_(sin)
        resid_std = INIT_STD / math.sqrt(2 * self.args.n_layers)
        for name, p in self.named_parameters():
            if p.ndim == 1:
                nn.init.ones_(p)
            elif name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, resid_std)
            else:
                nn.init.normal_(p, 0.0, INIT_STD)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx, targets: (B, T) int64, T <= seq_len; targets -100 are ignored.

        Returns (logits (B, T, V), loss): loss is a scalar for reduction "mean"/"sum", per-token
        (B, T) for "none" (0 where ignored), None without targets.
        """
        t = idx.shape[1]
        if t > self.args.seq_len:
            raise ValueError(f"idx: length {t} exceeds model.seq_len {self.args.seq_len}")
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        x = self.tok_emb(idx)
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = F.linear(self.norm(x), self.tok_emb.weight)  # tied output layer
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction=reduction
        )
        if reduction == "none":
            loss = loss.view(targets.shape)
        return logits, loss
