import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from scalelab.model import (
    GPT,
    SIZES,
    ModelArgs,
    apply_rotary,
    flops_per_token,
    gated_hidden,
    model_args,
    param_counts,
    rotary_tables,
)


def tiny(**overrides) -> ModelArgs:
    fields = dict(vocab_size=32, d_model=32, n_layers=2, n_heads=4, seq_len=16)
    fields.update(overrides)
    return ModelArgs(**fields)


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("mlp, norm", [("gelu", "layernorm"), ("gated", "rmsnorm")])
def test_param_counts_match_module(size, mlp, norm):
    args = model_args(size, vocab_size=50257, seq_len=1024, mlp=mlp, norm=norm)
    with torch.device("meta"):
        model = GPT(args)
    counts = param_counts(args)
    assert numel(model) == counts["total"]
    assert counts["total"] == counts["non_embedding"] + counts["embedding"]
    assert counts["embedding"] == 50257 * args.d_model  # tied: counted once
    assert numel(model) - model.tok_emb.weight.numel() == counts["non_embedding"]


def test_size_names_match_counts():
    def parse(name):
        return float(name[:-1]) * {"K": 1e3, "M": 1e6, "B": 1e9}[name[-1]]

    for name, shape in SIZES.items():
        assert shape["d_model"] // shape["n_heads"] >= 8, name
        assert 8 <= shape["d_model"] / shape["n_layers"] <= 75, name
        target = parse(name)
        if target < 124e6:  # small sizes: the name is the non-embedding count
            n = param_counts(model_args(name, vocab_size=64, seq_len=64))["non_embedding"]
            assert abs(n / target - 1) < 0.12, (name, n)
        else:  # GPT-2/GPT-3 names: total with the 50257-token tied embedding
            n = param_counts(model_args(name, vocab_size=50257, seq_len=1024))["total"]
            assert abs(n / target - 1) < 0.02, (name, n)
    assert SIZES["124M"] == dict(d_model=768, n_layers=12, n_heads=12)  # GPT-2 small
    # GPT-2 small without biases or learned positions: 12·(12·768² + 2·768) + 768 = 84,953,856
    # non-embedding + 50257·768 = 38,597,376 embedding
    counts = param_counts(model_args("124M", 50257, 1024))
    assert counts == dict(total=123_551_232, non_embedding=84_953_856, embedding=38_597_376)


def test_gated_mlp_width():
    assert gated_hidden(768) == 2048  # int(8/3·768) = 2048, already a multiple of 8
    assert gated_hidden(100) == 272  # int(266.67) = 266 -> 272
    for d in (32, 100, 160, 768, 1792):
        h = gated_hidden(d)
        assert h % 8 == 0 and abs(3 * d * h / (8 * d * d) - 1) < 0.1


def test_model_args_errors():
    with pytest.raises(ValueError, match=r"^model\.size: unknown size 'x'; choose one of 6K"):
        model_args("x", vocab_size=10, seq_len=8)
    assert model_args("1M", 10, 8, mlp="gated").mlp == "gated"
    with pytest.raises(ValueError, match=r"^model\.n_heads: "):
        tiny(n_heads=5)
    with pytest.raises(ValueError, match=r"^model\.mlp: "):
        tiny(mlp="relu")
    with pytest.raises(ValueError, match=r"^model\.norm: "):
        tiny(norm="batchnorm")
    with pytest.raises(ValueError, match=r"^idx: length 17 exceeds model\.seq_len 16"):
        GPT(tiny())(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("mlp", ["gelu", "gated"])
def test_flops_per_token_matches_flop_counter(mlp):
    """FlopCounterMode counts each matmul as 2·m·n·k. With the math SDPA backend attention
    is two bmm (Q·Kᵀ, A·V) of 2·T²·d_head·H = 2·T²·d each per layer forward (full T×T, no
    causal discount) and twice that backward: 12·T²·d per sequence = 12·T·d per token, the
    PaLM term. Linear layers and the tied output give 6 FLOPs per weight per token. The only
    difference is 6 × the norm weights, which the estimate counts and no matmul uses."""
    args = tiny(d_model=64, n_layers=3, n_heads=4, seq_len=128, vocab_size=64, mlp=mlp)
    torch.manual_seed(0)
    model = GPT(args)
    b, t = 2, args.seq_len
    x = torch.randint(0, args.vocab_size, (b, t))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, loss = model(x, x)
        loss.backward()
    counted = counter.get_total_flops() / (b * t)
    norm_params = (2 * args.n_layers + 1) * args.d_model
    assert counted == flops_per_token(args) - 6 * norm_params
    attn = counter.get_flop_counts()["Global"][torch.ops.aten.bmm] / (b * t)
    assert attn == 12 * args.n_layers * args.d_model * args.seq_len


def test_gpt2_small_flops():
    # 6·N + 12·L·d·T for GPT-2 small shape, T = 1024
    args = model_args("124M", vocab_size=50257, seq_len=1024)
    n = param_counts(args)["total"]
    assert flops_per_token(args) == 6 * n + 12 * 12 * 768 * 1024
    assert flops_per_token(args) == pytest.approx(8.55e8, rel=0.01)


def test_forward_shapes_and_reductions():
    args = tiny()
    torch.manual_seed(0)
    model = GPT(args)
    x = torch.randint(0, 32, (3, 16))
    y = torch.randint(0, 32, (3, 16))
    y[0, :5] = -100
    logits, loss = model(x, y)
    assert logits.shape == (3, 16, 32) and loss.ndim == 0
    _, per_token = model(x, y, reduction="none")
    assert per_token.shape == y.shape
    assert torch.all(per_token[0, :5] == 0)
    assert (per_token.sum() / (y != -100).sum()).item() == pytest.approx(loss.item(), rel=1e-6)
    manual = F.cross_entropy(logits[1], y[1], reduction="none")
    torch.testing.assert_close(per_token[1], manual)
    assert model(x)[1] is None
    assert model(x[:, :7])[0].shape == (3, 7, 32)  # shorter than seq_len


@pytest.mark.parametrize("mlp, norm", [("gelu", "layernorm"), ("gated", "rmsnorm")])
def test_causal_mask(mlp, norm):
    torch.manual_seed(0)
    model = GPT(tiny(mlp=mlp, norm=norm)).eval()
    x = torch.randint(0, 32, (2, 16))
    x2 = x.clone()
    x2[:, 9] = (x[:, 9] + 1) % 32
    with torch.no_grad():
        a, b = model(x)[0], model(x2)[0]
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=0, atol=0)
    assert (a[:, 9:] - b[:, 9:]).abs().amax(dim=-1).min() > 1e-6  # every later position moves


def test_rotary_depends_on_relative_position_only():
    torch.manual_seed(0)
    cos, sin = rotary_tables(64, 16)
    q, k = torch.randn(16), torch.randn(16)

    def score(m, n):
        qm = apply_rotary(q.view(1, 1, 16), cos[m : m + 1], sin[m : m + 1])
        kn = apply_rotary(k.view(1, 1, 16), cos[n : n + 1], sin[n : n + 1])
        return (qm * kn).sum().item()

    assert score(10, 3) == pytest.approx(score(50, 43), rel=1e-4)
    assert score(10, 3) != pytest.approx(score(10, 4), rel=1e-3)
    assert score(0, 0) == pytest.approx((q * k).sum().item(), rel=1e-6)  # position 0: identity


def test_rotary_complex_and_real_forms_agree():
    torch.manual_seed(0)
    cos, sin = rotary_tables(16, 8)
    x = torch.randn(2, 16, 2, 3, 8)  # (B, T, q/k, H, hd) as in Attention
    a = apply_rotary(x, cos, sin, use_complex=True)
    b = apply_rotary(x, cos, sin, use_complex=False)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # pair (x[0], x[1]) at t = 3 turns by angle 3·θ_0 = 3 rad
    x0, x1 = x[0, 3, 0, 0, 0], x[0, 3, 0, 0, 1]
    c, s = math.cos(3.0), math.sin(3.0)
    torch.testing.assert_close(a[0, 3, 0, 0, :2], torch.stack((x0 * c - x1 * s, x0 * s + x1 * c)))
    assert torch.allclose(a.norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # a rotation


def test_init_is_gpt2_and_deterministic():
    args = tiny(d_model=128, n_layers=8, vocab_size=256)
    torch.manual_seed(1)
    a = GPT(args)
    torch.manual_seed(1)
    b = GPT(args)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert a.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert a.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    resid = 0.02 / math.sqrt(2 * 8)
    assert a.blocks[3].attn.proj.weight.std().item() == pytest.approx(resid, rel=0.05)
    assert a.blocks[3].mlp.proj.weight.std().item() == pytest.approx(resid, rel=0.05)
    assert torch.all(a.norm.weight == 1)
    # rotary buffers are not saved
    assert not any("rope" in k for k in a.state_dict())


def test_meta_then_to_empty_then_init_weights():
    args = tiny()
    with torch.device("meta"):
        model = GPT(args)
    model.to_empty(device="cpu")
    torch.manual_seed(3)
    model.init_weights()
    ref = GPT(args)
    torch.manual_seed(3)
    ref.init_weights()
    torch.testing.assert_close(model.rope_cos, ref.rope_cos, rtol=0, atol=0)
    x = torch.randint(0, 32, (2, 16))
    torch.testing.assert_close(model(x)[0], ref(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("mlp, norm", [("gelu", "layernorm"), ("gated", "rmsnorm")])
def test_overfits_one_batch(mlp, norm):
    args = tiny(mlp=mlp, norm=norm)
    torch.manual_seed(0)
    model = GPT(args)
    x = torch.randint(0, 32, (4, 17))
    inputs, targets = x[:, :-1], x[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    first = model(inputs, targets)[1].item()
    assert first == pytest.approx(math.log(32), abs=0.1)  # ~uniform at init
    for _ in range(60):
        _, loss = model(inputs, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
