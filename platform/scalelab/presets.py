"""Model presets and choices, torch-free (specs, sweeps and results read them without torch)."""

MLPS = ("gelu", "gated")
NORMS = ("layernorm", "rmsnorm")

# Named sizes. Shapes: head_dim >= 8, d/L between 8 and 75.
# Below 124M the name is the approximate NON-embedding count 12·d²·L (these run on small
# synthetic vocabularies, where total ≈ non-embedding). From 124M up the names are the
# published GPT-2 / GPT-3 names, which count the tied 50257-token embedding too:
#   124M = GPT-2 small (85.0M non-emb + 38.6M emb), 350M = GPT-2 medium (302M + 51.5M),
#   760M = GPT-3 "Large" 760M (680M + 77.2M), 1B = 925M + 90.1M (d=1792, L=24, head_dim 128).
SIZES: dict[str, dict] = {
    # 2-layer sizes for knowledge-capacity studies (docs/laws.md §3: widths 16-48)
    "6K": dict(d_model=16, n_layers=2, n_heads=2),  # 6,224 non-emb
    "14K": dict(d_model=24, n_layers=2, n_heads=3),  # 13,944
    "25K": dict(d_model=32, n_layers=2, n_heads=4),  # 24,736
    "50K": dict(d_model=32, n_layers=4, n_heads=4),  # 49.4K non-emb
    "55K": dict(d_model=48, n_layers=2, n_heads=6),  # 55,536
    "150K": dict(d_model=64, n_layers=3, n_heads=4),  # 148K
    "500K": dict(d_model=96, n_layers=5, n_heads=6),  # 554K
    "1M": dict(d_model=128, n_layers=5, n_heads=4),  # 984K
    "2M": dict(d_model=160, n_layers=6, n_heads=5),  # 1.85M
    "5M": dict(d_model=256, n_layers=6, n_heads=8),  # 4.72M
    "10M": dict(d_model=320, n_layers=8, n_heads=5),  # 9.84M
    "20M": dict(d_model=448, n_layers=8, n_heads=7),  # 19.3M
    "50M": dict(d_model=512, n_layers=16, n_heads=8),  # 50.3M
    "124M": dict(d_model=768, n_layers=12, n_heads=12),  # GPT-2 small
    "350M": dict(d_model=1024, n_layers=24, n_heads=16),  # GPT-2 medium
    "760M": dict(d_model=1536, n_layers=24, n_heads=16),  # GPT-3 760M
    "1B": dict(d_model=1792, n_layers=24, n_heads=14),
}
