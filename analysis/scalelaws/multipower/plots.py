"""Figures for the multi-power law: measured vs predicted curves; a proposed schedule vs baselines.

matplotlib (Agg backend) is imported inside the functions, so `import scalelaws.multipower.plots` is cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from scalelaws.core.figures import band, band_label, diagnostics_box, legend, pyplot, save


def plot_curves(
    curves: Sequence,
    params: Mapping[str, float],
    path: str | Path,
    law: str = "multipower",
    title: str = "",
    diagnostics: Sequence = (),
    *,
    fit=None,
    band_roles: Sequence[str] = ("test",),
    level: float = 0.9,
) -> Path:
    """Top: measured loss (dots) and the law (line, evaluated at every step on a dense grid, not
    interpolated between measurements) per curve; bottom: residuals y − ŷ at the measured steps
    (markers only). Many curves put the legend beside the axes; the fit's warnings go in a box.

    fit: the MultipowerFit behind `params`; when it has bootstrap refits, the curves whose role
    is in `band_roles` (default the held-out test curves; ("fit", "test") for all) get the
    shaded `level` prediction interval of `fit.prediction` on the same grid. Without a fit or
    without refits: lines only (the title says which)."""
    from scalelaws.multipower.law import predict

    plt = pyplot()
    fig, (ax, axr) = plt.subplots(
        2, 1, figsize=(9 if len(curves) > 6 else 8, 7), sharex=True,
        gridspec_kw={"height_ratios": [3, 1]},
    )  # fmt: skip
    cmap = plt.cm.tab10 if len(curves) <= 10 else plt.cm.viridis
    colors = cmap(np.linspace(0, 1, max(len(curves), 1)))
    shade = fit is not None and bool(fit.bootstrap_params)
    shaded = 0
    for cv, col in zip(curves, colors, strict=False):
        steps = np.asarray(cv.steps)
        dense = np.unique(np.linspace(steps.min(), steps.max(), 400).astype(int))
        style = "-" if cv.role == "fit" else "--"
        ax.plot(steps, cv.loss, ".", ms=2, color=col, alpha=0.6)
        ax.plot(dense, predict(params, cv.lr, dense, law), style, lw=1, color=col,
                label=f"{cv.name} ({cv.role})")  # fmt: skip
        if shade and cv.role in band_roles:
            pred = fit.prediction(cv.lr, dense, level=level)
            band(ax, dense, pred, col, label=None if shaded else band_label(pred))
            shaded += 1
        axr.plot(steps, cv.loss - predict(params, cv.lr, steps, law), ".", ms=2, color=col)
    ax.set_ylabel("loss")
    what = f"{law}: measured (dots) vs law (lines; dashed = test)"
    if shaded:
        roles = " and ".join(band_roles)
        what += (f"\nshaded: {100 * level:.0f}% prediction interval of the {roles} curves "
                 f"({len(fit.bootstrap_params)} bootstrap refits + residual scatter)")  # fmt: skip
    elif fit is not None and not shade:
        what += "\nno prediction interval: the fit has no bootstrap refits"
    ax.set_title(title or what, **({"fontsize": 9} if "\n" in (title or what) else {}))
    legend(ax, len(curves) + (shaded > 0))
    axr.axhline(0, color="k", lw=0.5)
    axr.set_xlabel("step")
    axr.set_ylabel("y − ŷ")
    diagnostics_box(fig, diagnostics)
    return save(fig, path)


def plot_schedule(
    lr: np.ndarray,
    params: Mapping[str, float],
    path: str | Path,
    baselines: Mapping[str, np.ndarray] | None = None,
    n_points: int = 200,
    diagnostics: Sequence = (),
) -> Path:
    """Left: LR schedules; right: their predicted loss curves (MPL) and final losses."""
    from scalelaws.multipower.law import predict

    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    schedules = {"proposed": np.asarray(lr)} | dict(baselines or {})
    for name, sched in schedules.items():
        sched = np.asarray(sched)
        steps = np.unique(np.linspace(max(1, len(sched) // 20), len(sched), n_points).astype(int))
        yhat = predict(params, sched, steps)
        a1.plot(np.arange(len(sched)), sched, lw=1.2, label=name)
        a2.plot(steps, yhat, lw=1.2, label=f"{name}: final {yhat[-1]:.4f}")
    a1.set_xlabel("step")
    a1.set_ylabel("learning rate")
    a1.legend()
    a2.set_xlabel("step")
    a2.set_ylabel("predicted loss")
    a2.legend()
    diagnostics_box(fig, diagnostics)
    return save(fig, path)


def plot_proposal(prop, path: str | Path) -> Path:
    """plot_schedule of a ScheduleProposal next to its cosine and best-WSD baselines, with its
    warnings in a box."""
    base = {k: prop.baseline_lr(k) for k in ("cosine", "wsd") if k in prop.baselines}
    return plot_schedule(prop.lr, prop.params, path, baselines=base, diagnostics=prop.diagnostics)
