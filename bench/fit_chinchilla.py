"""Speed and numbers of the Chinchilla analysis on Besiroglu et al.'s extracted data.

    .venv/bin/python bench/fit_chinchilla.py [N_BOOT]

Approach 3 on their 240 runs (the 5 highest losses dropped, tokens = FLOP/(6N)) with the
default 1000 bootstrap resamples, next to their published estimates and 95% intervals
(tests/data/README_chinchilla.md); approach 2 on the runs that sit within 0.03 dex of one of
Hoffmann et al.'s nine isoFLOP budgets (6e18 ... 3e21); the two side by side; a proposal at
Chinchilla's budget (6 · 70e9 · 1.4e12 FLOPs). Prints wall and CPU seconds per fit.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from scalelaws.chinchilla.fit import fit_loss_surface
from scalelaws.chinchilla.isoflop import fit_isoflop
from scalelaws.chinchilla.propose import compare_approaches, propose_size

DATA = Path(__file__).parents[1] / "tests" / "data" / "besiroglu2024_chinchilla_svg_extracted.csv"
COLS = {"params_col": "model_size", "tokens_col": "tokens", "loss_col": "loss"}
PUBLISHED = {  # estimate, 95% interval (data_analysis.ipynb cells 25-26)
    "A": (482.01, (285.214, 743.626)),
    "B": (2085.43, (1042.357, 5810.344)),
    "E": (1.81686, (1.769, 1.871)),
    "alpha": (0.34781, (0.317, 0.373)),
    "beta": (0.36585, (0.331, 0.415)),
}
HOFFMANN_BUDGETS = np.array([6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21])


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main(n_boot: int = 1000) -> None:
    df = pl.read_csv(DATA).with_columns(tokens=pl.col("training_flop") / (6 * pl.col("model_size")))
    kept = df.filter(pl.col("loss") < df["loss"].sort()[-5])
    surf, wall, cpu = timed(lambda: fit_loss_surface(kept, **COLS, n_boot=n_boot))
    print(f"approach 3, {kept.height} runs, n_boot={n_boot}: {wall:.1f} s wall, {cpu:.1f} s CPU")
    print(f"{'param':6} {'ours':>10} {'ours 95%':>22} {'published':>10} {'published 95%':>22}")
    for k, (est, (lo, hi)) in PUBLISHED.items():
        a, b = surf.intervals[k]
        print(
            f"{k:6} {surf.params[k]:10.5g} ({a:9.5g}, {b:9.5g}) {est:10.5g} ({lo:9.5g}, {hi:9.5g})"
        )
    lad, wall, _ = timed(lambda: fit_loss_surface(kept, **COLS, n_boot=0, delta=1e-8))
    print(f"delta=1e-8 (their likelihood's limit), {wall:.1f} s: ", end="")
    print(", ".join(f"{k}={lad.params[k]:.6g}" for k in PUBLISHED))

    dist = np.abs(np.log10(df["training_flop"].to_numpy())[:, None] - np.log10(HOFFMANN_BUDGETS))
    budget = np.where(dist.min(1) < 0.03, HOFFMANN_BUDGETS[dist.argmin(1)], np.nan)
    snapped = df.with_columns(budget=pl.Series(budget)).filter(pl.col("budget").is_not_nan())
    iso, wall, _ = timed(lambda: fit_isoflop(snapped, budget_col="budget", **COLS))
    lo, hi = iso.intervals["n_exponent"]
    print(f"approach 2, {snapped.height} runs in {iso.metrics['n_slices']} slices, {wall:.2f} s:")
    print(f"  N_opt ∝ C^{iso.params['n_exponent']:.3f} ({lo:.3f}, {hi:.3f})")
    cmp = compare_approaches(iso, surf)
    print(f"  approach 3: beta/(alpha+beta) = {surf.params['n_exponent']:.3f}")
    for b in cmp.budgets:
        flag = "  DISAGREE" if b["disagree"] else ""
        print(f"  C={b['flops']:.3g}: N*_2/N*_3 = {b['ratio']:.3f}{flag}")
    for d in iso.diagnostics + cmp.diagnostics:
        print(" ", d.line())
    prop = propose_size(surf, 6 * 70e9 * 1.4e12)
    n, (nlo, nhi) = prop.params["n"], prop.intervals["n"]
    r, (rlo, rhi) = prop.params["tokens_per_param"], prop.intervals["tokens_per_param"]
    print(f"proposal at Chinchilla's 5.88e23 FLOPs: N = {n:.3g} ({nlo:.3g}, {nhi:.3g}), ", end="")
    print(
        f"D/N = {r:.1f} ({rlo:.1f}, {rhi:.1f}), {prop.info['extrapolation_decades']:.2f} decades out"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
