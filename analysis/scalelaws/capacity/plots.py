"""Figures for the knowledge capacity fits (matplotlib, Agg; docs/laws.md §3, Allen-Zhu & Li 2024)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scalelaws.capacity.law import CapacityFit, capacity_law  # noqa: E402
from scalelaws.core.figures import band, band_label, diagnostics_box, save  # noqa: E402


def plot_capacity(params, bits, max_bits, fit: CapacityFit, path: str | Path) -> Path:
    """Bits vs parameters with the law min(R·P, max bits) (Allen-Zhu & Li)."""
    p = np.asarray(params, float)
    y = np.asarray(bits, float)
    mx = np.broadcast_to(np.asarray(max_bits, float), p.shape)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    bound = np.array(fit.bound)
    ax.scatter(p[bound], y[bound], label="capacity-bound (fitted)")
    ax.scatter(p[~bound], y[~bound], marker="x", label="near max")
    grid = np.geomspace(p.min(), p.max(), 200)
    ax.plot(
        grid,
        capacity_law(grid, fit.ratio, float(mx.max())),
        "k--",
        label=f"min({fit.ratio:.2f}·P, max)",
    )
    ax.set(xscale="log", yscale="log", xlabel="parameters P", ylabel="bits")
    ax.legend(fontsize=8)
    return save(fig, path, dpi=120)


def plot_capacity_study(
    trials: list[dict],
    ratio: float | None,
    path: str | Path,
    diagnostics=(),
    *,
    result=None,
    level: float = 0.9,
) -> Path:
    """Capacity study (Allen-Zhu & Li, Fig. 1): left, bits vs P per (data, N), with max bits per
    N, the 2 bits/param line and the fitted R·P; right, R = bits/P vs R_max = max bits/P (R can
    never exceed R_max: points on the diagonal store everything). Marker: exposures.

    trials: dicts with params, bits, max_bits, n_people, exposures, data. result: the
    CapacityResult behind `ratio`; with it, R·P gets the shaded `level` prediction interval of
    a new trial (`result.prediction` at the largest max bits) where the law is R·P, i.e. below
    that cap; none when R is not fitted."""
    groups = sorted({(t["data"], t["n_people"]) for t in trials})
    exposures = sorted({t["exposures"] for t in trials}, reverse=True)
    markers = dict(zip(exposures, "os^vDP*", strict=False))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    p_all = np.array([t["params"] for t in trials], float)
    grid = np.geomspace(p_all.min() / 1.5, p_all.max() * 1.5, 100)
    for i, (data, n) in enumerate(groups):
        color = f"C{i % 10}"
        rows = [t for t in trials if (t["data"], t["n_people"]) == (data, n)]
        ax.axhline(rows[0]["max_bits"], color=color, ls=":", lw=1)
        for e in exposures:
            sel = [t for t in rows if t["exposures"] == e]
            if not sel:
                continue
            p = np.array([t["params"] for t in sel], float)
            b = np.array([t["bits"] for t in sel], float)
            mx = np.array([t["max_bits"] for t in sel], float)
            label = f"{data} N={n:,}, {e:g} exp."
            ax.scatter(p, np.clip(b, 1, None), color=color, marker=markers[e], label=label)
            ax2.scatter(mx / p, b / p, color=color, marker=markers[e], label=label)
    ax.plot(grid, 2 * grid, "k:", lw=1, label="2 bits/param")
    if ratio is not None and np.isfinite(ratio):
        ax.plot(grid, ratio * grid, "k--", lw=1, label=f"fit R = {ratio:.2f}")
        cap = max(t["max_bits"] for t in trials)
        pred = _ratio_band(result, grid, cap, level)
        if pred is not None:
            below = np.asarray(pred.point) < cap  # where the law is R·P, not the cap
            band(ax, grid, pred, "k", label=band_label(pred, "R·P, new trial"), where=below)
    ax.set(xscale="log", yscale="log", xlabel="parameters P (used embedding rows)")
    ax.set(ylabel="bits stored (dotted: max per N)", title="bits vs P")
    ax.legend(fontsize=7)
    rmax = np.array([t["max_bits"] / t["params"] for t in trials], float)
    diag = np.geomspace(rmax.min() / 1.5, rmax.max() * 1.5, 50)
    ax2.plot(diag, diag, "k-", lw=0.8, label="R = R_max (stores all)")
    ax2.axhline(2, color="k", ls=":", lw=1, label="2 bits/param")
    ax2.set(xscale="log", xlabel="R_max = max bits / P", ylabel="R = bits / P")
    ax2.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax2.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax2.set_title("capacity ratio vs its ceiling")
    ax2.legend(fontsize=7)
    diagnostics_box(fig, diagnostics)
    return save(fig, path, dpi=120)


def _ratio_band(result, grid, max_bits, level):
    """result.prediction(grid, max_bits), or None without a result or when R is not fitted."""
    if result is None:
        return None
    try:
        return result.prediction(grid, max_bits, level=level)
    except ValueError:  # fewer than 2 capacity-bound trials at that exposure count
        return None
