"""Figures for the critical batch size fits (matplotlib, Agg; docs/laws.md §2)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scalelaws.core.figures import band, band_label, diagnostics_box, legend, save  # noqa: E402
from scalelaws.critical_batch.law import CBSFit, steps_model  # noqa: E402
from scalelaws.critical_batch.predict import scaling_prediction  # noqa: E402


def plot_cbs(
    fits: list[CBSFit], scaling: dict, path: str | Path, diagnostics=(), *, level: float = 0.9
) -> Path:
    """Left: steps to target vs batch size with the fitted S_min + E_min/B per group.
    Right: CBS vs N (and vs D when D varies) with the power-law fits; groups with an infinite
    CBS (S_min = 0) are left out there. The CBS-vs-N panel shades the `level` prediction
    interval of a new group's CBS (scalelaws.critical_batch.predict.scaling_prediction over the
    groups the law was fitted on); none when it cannot be made (< 3 such groups). The fit's
    warnings go in a box under the panels."""
    import warnings

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # inf / empty data on log axes: said by the diagnostics
        return _plot_cbs(fits, scaling, path, diagnostics, level)


def _scaling_band(fits, grid, level):
    """The CBS-vs-N prediction interval on `grid` (over the groups the scaling law used), or
    None."""
    try:
        return scaling_prediction(fits, grid, quantity="cbs", level=level)
    except ValueError:  # too few groups with a finite CBS and a model size
        return None


def _plot_cbs(fits, scaling, path, diagnostics, level) -> Path:
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
    legend(ax, len(fits))
    col = 1
    for key, attr, label in (
        ("params", "params", "N (params)"),
        ("tokens", "tokens", "D (tokens)"),
    ):
        if key not in scaling:
            continue
        law, ax = scaling[key], axes[0, col]
        col += 1
        pts = [
            (getattr(f, attr), f.cbs, f.cbs_interval)
            for f in fits
            if getattr(f, attr) and np.isfinite(f.cbs) and np.all(np.isfinite(f.cbs_interval))
        ]
        if not pts:
            continue
        x = np.array([p[0] for p in pts], float)
        y = np.array([p[1] for p in pts], float)
        err = np.array([[p[1] - p[2][0], p[2][1] - p[1]] for p in pts], float).T
        ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt="o", capsize=3)
        grid = np.geomspace(x.min(), x.max(), 100)
        pred = _scaling_band(fits, grid, level) if key == "params" else None
        if pred is not None:
            band(ax, grid, pred, "0.5", label=band_label(pred, "CBS of a new group"))
        ax.plot(
            grid,
            law.coef * (grid / law.x_unit) ** law.exponent,
            "k--",
            label=f"{law.coef:.3g}·(x/{law.x_unit:.0e})^{law.exponent:.3f}",
        )
        ax.set(xscale="log", yscale="log", xlabel=label, ylabel="CBS (sequences)")
        ax.legend(fontsize=8)
    diagnostics_box(fig, diagnostics)
    return save(fig, path, dpi=120)


def plot_cbs_study(fits: list[CBSFit], noise: dict, path: str | Path) -> Path:
    """A CBS study over model size N x data size D (Zhang et al. 2025, Figs. 1 and 3).

    One panel per N: steps to target vs B per D with the fitted S_min + E_min/B (dotted: the
    20% CBS). Then CBS (filled), B_crit = E_min/S_min (open squares) and the gradient noise
    scale B_simple at the target (triangles; `noise`: group -> value or None) vs D, one colour
    per N; and CBS vs N, one colour per D. Bars: 95% bootstrap intervals."""
    sizes = sorted({f.params for f in fits})
    datas = sorted({f.tokens for f in fits})
    panels = len(sizes) + 2
    fig, axes = plt.subplots(1, panels, figsize=(4.0 * panels, 3.7), squeeze=False)
    axes = axes[0]

    def bars(fs, attr):
        v = np.array([getattr(f, attr) for f in fs], float)
        ci = np.array([getattr(f, f"{attr}_interval") for f in fs], float)
        return v, np.clip(np.array([v - ci[:, 0], ci[:, 1] - v]), 0, None)

    for ax, n in zip(axes, sizes, strict=False):
        for f in (f for f in fits if f.params == n):
            color = f"C{datas.index(f.tokens) % 10}"
            b, t = np.array(f.batch_sizes), np.array(f.steps)
            grid = np.geomspace(b.min(), b.max(), 100)
            ax.scatter(b, t, color=color, s=16)
            ax.plot(
                grid, steps_model(grid, f.s_min, f.e_min), color=color, label=f"D={f.tokens:.3g}"
            )
            if np.isfinite(f.cbs):
                ax.axvline(f.cbs, color=color, ls=":", lw=0.9)
        ax.set(xscale="log", yscale="log", xlabel="batch size B (sequences)")
        ax.set(ylabel="steps to target", title=f"N={n:,}: T(B) = S_min + E_min/B")
        ax.legend(fontsize=7)
    ax = axes[-2]
    for i, n in enumerate(sizes):
        fs = sorted((f for f in fits if f.params == n), key=lambda f: f.tokens)
        d = np.array([f.tokens for f in fs], float)
        color = f"C{i % 10}"
        v, err = bars(fs, "cbs")
        ax.errorbar(d, v, yerr=err, fmt="o-", color=color, capsize=3, label=f"CBS, N={n:,}")
        v, err = bars(fs, "b_crit")
        ax.errorbar(
            d * 1.03,
            v,
            yerr=err,
            fmt="s--",
            mfc="none",
            color=color,
            capsize=3,
            label=f"B_crit, N={n:,}",
        )
        ns = np.array([noise.get(f.group) or np.nan for f in fs], float)
        ax.plot(d * 0.97, ns, "^", color=color, mfc="none", label=f"B_simple, N={n:,}")
    ax.set(xscale="log", yscale="log", xlabel="data size D (tokens)", ylabel="sequences")
    ax.set_title("CBS, B_crit, B_simple vs D")
    ax.legend(fontsize=6)
    ax = axes[-1]
    for j, d in enumerate(datas):
        fs = sorted((f for f in fits if f.tokens == d), key=lambda f: f.params)
        v, err = bars(fs, "cbs")
        n = np.array([f.params for f in fs], float)
        ax.errorbar(n, v, yerr=err, fmt="o-", color=f"C{j % 10}", capsize=3, label=f"D={d:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="N (non-embedding params)", ylabel="CBS (sequences)")
    ax.set_title("CBS vs N")
    ax.legend(fontsize=7)
    return save(fig, path, dpi=100)
