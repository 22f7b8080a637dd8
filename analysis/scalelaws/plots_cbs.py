"""Figures for the critical batch size and knowledge capacity fits (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scalelaws.batchsize import CBSFit, steps_model  # noqa: E402
from scalelaws.capacity import CapacityFit, capacity_law  # noqa: E402


def plot_cbs(fits: list[CBSFit], scaling: dict, path: str | Path) -> Path:
    """Left: steps to target vs batch size with the fitted S_min + E_min/B per group.
    Right: CBS vs N (and vs D when D varies) with the power-law fits."""
    panels = 1 + sum(k in scaling for k in ("params", "tokens"))
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2), squeeze=False)
    ax = axes[0, 0]
    for i, f in enumerate(fits):
        color = f"C{i % 10}"
        b, t = np.array(f.batch_sizes), np.array(f.steps)
        grid = np.geomspace(b.min(), b.max(), 200)
        ax.scatter(b, t, color=color, s=18)
        ax.plot(grid, steps_model(grid, f.s_min, f.e_min), color=color, label=f"{f.group}")
        if np.isfinite(f.cbs):
            ax.axvline(f.cbs, color=color, ls=":", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="batch size (sequences)", ylabel="steps to target")
    ax.set_title("T(B) = S_min + E_min/B; dotted: CBS (20%)")
    ax.legend(fontsize=7)
    col = 1
    for key, attr, label in (
        ("params", "params", "N (params)"),
        ("tokens", "tokens", "D (tokens)"),
    ):
        if key not in scaling:
            continue
        law, ax = scaling[key], axes[0, col]
        col += 1
        pts = [(getattr(f, attr), f.cbs, f.cbs_interval) for f in fits if getattr(f, attr)]
        x = np.array([p[0] for p in pts], float)
        y = np.array([p[1] for p in pts], float)
        err = np.array([[p[1] - p[2][0], p[2][1] - p[1]] for p in pts], float).T
        ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt="o", capsize=3)
        grid = np.geomspace(x.min(), x.max(), 100)
        ax.plot(
            grid,
            law.coef * (grid / law.x_unit) ** law.exponent,
            "k--",
            label=f"{law.coef:.3g}·(x/{law.x_unit:.0e})^{law.exponent:.3f}",
        )
        ax.set(xscale="log", yscale="log", xlabel=label, ylabel="CBS (sequences)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
