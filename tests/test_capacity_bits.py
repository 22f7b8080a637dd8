"""Knowledge-capacity bit formulas (Allen-Zhu & Li arXiv 2404.05405; docs/laws.md §3)."""

import math

import numpy as np
import pytest

from scalelaws.capacity.law import (
    BIOS_N0,
    BIOS_S0,
    biod_bits,
    biod_max_bits,
    bios_bits,
    bios_max_bits,
    capacity_law,
    fit_ratio,
)

COMPACT = dict(N=500, K=8, C=1, D=64, L=1, T=260, n0=64**3)  # the CPU bioD of docs/laws.md


def test_bios_constants_and_per_person_max():
    # S0 = 2·67,200·200·300·100·263 = 212,083,200,000,000; N0 = 160,000,000
    assert BIOS_S0 == 212_083_200_000_000
    assert BIOS_N0 == 160_000_000
    assert math.log2(BIOS_S0) == pytest.approx(47.5916, abs=1e-4)  # docs/laws.md: 47.6
    assert math.log2(BIOS_N0) == pytest.approx(27.2535, abs=1e-4)  # docs/laws.md: 27.25
    for n in (1_000, 20_000, 10_000_000):
        per_person = bios_max_bits(n) / n
        assert per_person == pytest.approx(47.5916 + 27.2535 - math.log2(n), abs=2e-4)


def test_bios_zero_error_is_max_and_uniform_is_zero():
    n = 10_000
    assert bios_bits(n, p1=math.log(n), p2=0.0) == pytest.approx(bios_max_bits(n), rel=1e-12)
    assert bios_bits(n, p1=math.log(BIOS_N0), p2=math.log(BIOS_S0)) == pytest.approx(0, abs=1e-6)
    # one nat of attribute loss per person costs exactly N/ln 2 bits
    drop = bios_bits(n, math.log(n), 0.0) - bios_bits(n, math.log(n), 1.0)
    assert drop == pytest.approx(n / math.log(2), rel=1e-12)


def test_biod_max_hand_computed():
    # N=1000, K=4, C=2, D=50, L=3, T=100, N0=1.6e8:
    # 1000·log2(160,000) + 1000·4·2·log2(50) + 4·50·log2(100³/50 = 20,000)
    want = 1000 * math.log2(160_000) + 8000 * math.log2(50) + 200 * math.log2(20_000)
    assert want == pytest.approx(65296.104, abs=1e-3)
    assert biod_max_bits(1000, 4, 2, 50, 3, 100) == pytest.approx(want, rel=1e-12)


def test_compact_biod_max():
    # names: 500·log2(262,144/500) = 500·(18 − log2 500) = 4517.108
    # values: 500·8·log2 64 = 24,000 (48 bits per person); value sets: 8·64·log2(260/64)
    want = 500 * (18 - math.log2(500)) + 24_000 + 512 * math.log2(260 / 64)
    assert biod_max_bits(**COMPACT) == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx(29552.56, abs=0.01)
    # with the value set fixed (T^L = D) the last term vanishes: docs/laws.md's "≈ 28.5K bits"
    assert biod_max_bits(**{**COMPACT, "T": 64}) == pytest.approx(28517.108, abs=1e-3)


@pytest.mark.parametrize("case", [COMPACT, dict(N=1000, K=4, C=2, D=50, L=3, T=100, n0=BIOS_N0)])
def test_biod_zero_error_is_max_and_uniform_is_zero(case):
    N, K, C, D, L, T, n0 = (case[k] for k in ("N", "K", "C", "D", "L", "T", "n0"))
    full = biod_bits(N, K, C, D, L, T, p1=math.log(N), p2=0.0, p3=0.0, n0=n0)
    assert full == pytest.approx(biod_max_bits(N, K, C, D, L, T, n0=n0), rel=1e-12)
    # knows nothing: a name is one of N0, a value one of D^C, a chunk any of T^L strings
    none = biod_bits(
        N,
        K,
        C,
        D,
        L,
        T,
        p1=math.log(n0),
        p2=C * math.log(D),
        p3=L * math.log(T) - math.log(D),
        n0=n0,
    )
    assert none == pytest.approx(0.0, abs=1e-6)


def test_biod_terms_and_arrays():
    c = COMPACT
    base = dict(p1=math.log(c["n0"]), p2=math.log(64), p3=math.log(260 / 64))
    # learning 1 bit of each person's name (p1 lower by ln 2) adds exactly N bits
    one_bit = biod_bits(**c, **{**base, "p1": math.log(c["n0"]) - math.log(2)})
    assert one_bit == pytest.approx(500.0, rel=1e-12)
    # a perfectly known value set (p3 = 0) adds K·D·log2(T/D) = 512·log2(260/64)
    sets = biod_bits(**c, **{**base, "p3": 0.0})
    assert sets == pytest.approx(512 * math.log2(260 / 64), rel=1e-12)
    # arrays of losses give arrays of bits
    p2 = np.array([0.0, math.log(64)])
    got = biod_bits(**c, p1=math.log(500), p2=p2, p3=0.0)
    assert got.shape == (2,)
    assert got[0] - got[1] == pytest.approx(24_000, rel=1e-12)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="D=0"):
        biod_max_bits(10, 2, 1, 0, 1, 10)
    with pytest.raises(ValueError, match="exceeds"):
        bios_max_bits(BIOS_N0 + 1)


def test_fit_ratio_recovers_two_bits_per_param():
    rng = np.random.default_rng(0)
    params = np.geomspace(2_000, 60_000, 14)
    max_bits = 40_000.0
    bits = np.minimum(2.0 * params * np.exp(rng.normal(0, 0.05, params.size)), max_bits)
    fit = fit_ratio(params, bits, max_bits)
    lo, hi = fit.ratio_interval
    assert lo <= 2.0 <= hi
    assert fit.ratio == pytest.approx(2.0, abs=0.08)
    assert hi - lo < 0.3
    # the capacity-bound models are those with 2P < 0.9·40K, i.e. P < 18K (noise aside)
    assert fit.n_bound == int(np.sum(bits < 36_000))
    assert 8 <= fit.n_bound <= 10
    assert fit.ratios == pytest.approx(tuple(bits / params))
    assert fit.peak_ratio == pytest.approx(max(bits / params))
    assert fit.max_ratios[0] == pytest.approx(20.0)
    law = capacity_law(params, fit.ratio, max_bits)
    assert law[-1] == max_bits and law[0] == pytest.approx(fit.ratio * 2_000)


def test_fit_ratio_needs_bound_models():
    with pytest.raises(ValueError, match="capacity-bound"):
        fit_ratio([1e4, 2e4, 3e4], [9.5e3, 9.9e3, 1e4], 1e4)


def test_plot_capacity(tmp_path):
    from scalelaws.capacity.plots import plot_capacity

    params = np.geomspace(2_000, 60_000, 8)
    bits = np.minimum(2.0 * params, 40_000.0)
    fit = fit_ratio(params, bits, 40_000.0)
    out = plot_capacity(params, bits, 40_000.0, fit, tmp_path / "cap.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
