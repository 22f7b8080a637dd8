"""Figures for the Chinchilla fits (matplotlib, Agg). Figures only: every number drawn comes
from a fit result (scalelaws.chinchilla.isoflop, .fit, .propose) or from the runs; nothing is
fitted here.

Left panel: final loss against N per isoFLOP budget, with approach 2's parabola in ln N
(vertex form L = loss_min + curvature·(ln N − ln N_opt)², Hoffmann et al. 2022 §3.2) and the
approach-3 surface along the same budget (dashed). Right panel: N*(C) from both approaches with
their 95% bands, and the proposal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scalelaws.core.figures import save  # noqa: E402


def _f(v: Any) -> float:
    """A number from a result (None after a JSON round trip means NaN)."""
    return float("nan") if v is None else float(v)


def _slice_of(flops: np.ndarray, slices: Sequence[dict], tol: float = 0.05) -> np.ndarray:
    """Index of the slice whose compute is within `tol` in ln C of each run's; −1 for none
    (a run of a skipped slice)."""
    centres = np.log([s["flops"] for s in slices])
    dist = np.abs(np.log(flops)[:, None] - centres[None, :])
    return np.where(dist.min(1) <= tol, dist.argmin(1), -1)


def _surface_curve(surf, flops: float, n: np.ndarray) -> np.ndarray:
    """Approach-3 loss along an isoFLOP curve: D = C/(k·N), k = the fit's FLOPs per N·D."""
    return surf.predict(n, flops / (surf.info["flops_per_nd"] * n))


def _loss_panel(ax, iso, surf, runs, follow_up) -> None:
    slices = list(iso.slices) if iso is not None else []
    if runs is not None and slices:
        which = _slice_of(np.asarray(runs.flops), slices)
    for i, s in enumerate(slices):
        color = f"C{i % 10}"
        if runs is not None:
            sel = which == i
            ax.scatter(np.asarray(runs.n)[sel], np.asarray(runs.loss)[sel], color=color, s=18)
        lo, hi = math.log(s["n_min"]) - 0.3, math.log(s["n_max"]) + 0.3
        x = np.linspace(lo, hi, 100)
        n_opt, c2 = s["n_opt"], s["curvature"]
        ax.plot(np.exp(x), s["loss_min"] + c2 * (x - math.log(n_opt)) ** 2, color=color, lw=1.2)
        err = [[n_opt - _f(s["n_opt_lo"])], [_f(s["n_opt_hi"]) - n_opt]]
        ax.errorbar([n_opt], [s["loss_min"]], xerr=np.nan_to_num(err), fmt="v", color=color,
                    capsize=3, label=f"C = {s['flops']:.2g}")  # fmt: skip
        if surf is not None:
            ax.plot(np.exp(x), _surface_curve(surf, s["flops"], np.exp(x)), color=color, ls="--",
                    lw=0.8)  # fmt: skip
    if runs is not None and slices and (which < 0).any():
        out = which < 0
        ax.scatter(np.asarray(runs.n)[out], np.asarray(runs.loss)[out], marker="x", color="0.5",
                   s=22, label="runs of skipped slices")  # fmt: skip
    if runs is not None and not slices:
        sc = ax.scatter(runs.n, runs.loss, c=np.log10(runs.flops), s=14, cmap="viridis")
        plt.colorbar(sc, ax=ax, label="log10 C (FLOPs)")
    if follow_up:
        n = np.array([r["n"] for r in follow_up], float)
        c = follow_up[0]["flops"]
        ax.scatter(n, [r["measured"] for r in follow_up], marker="*", s=110, color="k", zorder=5,
                   label=f"follow-up C = {c:.2g}: measured")  # fmt: skip
        ax.scatter(n, [r["predicted"] for r in follow_up], marker="o", s=40, facecolors="none",
                   edgecolors="k", zorder=5, label="follow-up: approach-3 prediction")  # fmt: skip
        if surf is not None:
            x = np.geomspace(n.min() / 1.4, n.max() * 1.4, 100)
            ax.plot(x, _surface_curve(surf, c, x), color="k", ls="--", lw=0.8)
    ax.set(xscale="log", xlabel="N (parameters)", ylabel="final eval loss (nats/token)")
    ax.set_title("isoFLOP slices: parabola in ln N (solid), approach 3 (dashed)", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _optimum_panel(ax, iso, surf, proposal, follow_up) -> None:
    cs = [s["flops"] for s in iso.slices] if iso is not None else []
    lo = min(cs + ([surf.info["flops_range"][0]] if surf is not None else []))
    hi = max(cs + ([surf.info["flops_range"][1]] if surf is not None else []))
    if proposal is not None:
        hi = max(hi, proposal.params["flops"])
    grid = np.geomspace(lo / 1.5, hi * 1.5, 100)
    if iso is not None:
        n = np.array([s["n_opt"] for s in iso.slices])
        err = np.array([[s["n_opt"] - _f(s["n_opt_lo"]), _f(s["n_opt_hi"]) - s["n_opt"]]
                        for s in iso.slices]).T  # fmt: skip
        ax.errorbar(cs, n, yerr=np.nan_to_num(err), fmt="o", color="C0", capsize=3,
                    label="approach 2: N_opt per budget")  # fmt: skip
        band = iso.optimal_intervals(grid)["n"]
        a = iso.params["n_exponent"]
        ax.plot(grid, iso.predict(grid)[0], color="C0", label=f"approach 2: N* ∝ C^{a:.3f}")
        ax.fill_between(grid, band[0], band[1], color="C0", alpha=0.2)
    if surf is not None:
        band = surf.optimal_intervals(grid)["n"]
        a = surf.params["n_exponent"]
        ax.plot(grid, surf.optimal(grid)[0], color="C1", ls="--",
                label=f"approach 3: N* ∝ C^{a:.3f} (β/(α+β))")  # fmt: skip
        if np.isfinite(band).all():
            ax.fill_between(grid, band[0], band[1], color="C1", alpha=0.15)
    if proposal is not None:
        p, (nlo, nhi) = proposal.params, proposal.intervals["n"]
        ax.errorbar([p["flops"]], [p["n"]], yerr=[[p["n"] - nlo], [nhi - p["n"]]], fmt="D",
                    color="C3", capsize=4, ms=7,
                    label=f"proposal (approach {proposal.info['approach']}): "
                    f"N = {p['n']:.3g}")  # fmt: skip
    if follow_up:
        for r in follow_up:
            ax.scatter([r["flops"]], [r["n"]], marker="_", s=200, color="k", zorder=5)
        ax.scatter([], [], marker="_", color="k", label="follow-up shapes")
    ax.set(xscale="log", yscale="log", xlabel="C (training FLOPs)", ylabel="N* (parameters)")
    ax.set_title("compute-optimal N with 95% bands", fontsize=9)
    ax.legend(fontsize=7)


def plot_isoflop(
    path: str | Path,
    *,
    iso=None,
    surf=None,
    runs=None,
    proposal=None,
    follow_up: Sequence[dict] | None = None,
) -> Path:
    """isoFLOP figure. `iso`: an IsoFLOPFit (approach 2), `surf`: a ChinchillaFit (approach 3),
    either may be None; `runs`: the fitted runs (anything with arrays .n, .flops, .loss, e.g.
    scalelaws.chinchilla.runs.chinchilla_runs(...)); `proposal`: a SizeProposal; `follow_up`:
    dicts with n, flops, measured, predicted (the validation runs at the proposal's budget)."""
    if iso is None and surf is None:
        raise ValueError("plot_isoflop needs an approach-2 or an approach-3 fit")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
    _loss_panel(a1, iso, surf, runs, follow_up)
    _optimum_panel(a2, iso, surf, proposal, follow_up)
    return save(fig, path, dpi=120)
