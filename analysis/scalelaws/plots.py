"""Figures for the multi-power law: measured vs predicted curves; a proposed schedule vs baselines.

matplotlib (Agg backend) is imported inside the functions, so `import scalelaws.plots` is cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(
    curves: Sequence,
    params: Mapping[str, float],
    path: str | Path,
    law: str = "multipower",
    title: str = "",
) -> Path:
    """Top: measured loss (dots) and predicted loss (line) per curve; bottom: residuals y − ŷ."""
    from scalelaws.multipower import predict

    plt = _pyplot()
    fig, (ax, axr) = plt.subplots(
        2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    colors = plt.cm.tab10(np.linspace(0, 1, max(len(curves), 1)))
    for cv, col in zip(curves, colors, strict=False):
        yhat = predict(params, cv.lr, cv.steps, law)
        style = "-" if cv.role == "fit" else "--"
        ax.plot(cv.steps, cv.loss, ".", ms=2, color=col, alpha=0.6)
        ax.plot(cv.steps, yhat, style, lw=1, color=col, label=f"{cv.name} ({cv.role})")
        axr.plot(cv.steps, cv.loss - yhat, style, lw=0.8, color=col)
    ax.set_ylabel("loss")
    ax.set_title(title or f"{law}: measured (dots) vs predicted (lines; dashed = test)")
    ax.legend(fontsize=7)
    axr.axhline(0, color="k", lw=0.5)
    axr.set_xlabel("step")
    axr.set_ylabel("y − ŷ")
    return save(fig, path)


def plot_schedule(
    lr: np.ndarray,
    params: Mapping[str, float],
    path: str | Path,
    baselines: Mapping[str, np.ndarray] | None = None,
    n_points: int = 200,
) -> Path:
    """Left: LR schedules; right: their predicted loss curves (MPL) and final losses."""
    from scalelaws.multipower import predict

    plt = _pyplot()
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
    return save(fig, path)


def plot_proposal(prop, path: str | Path) -> Path:
    """plot_schedule of a ScheduleProposal next to its cosine and best-WSD baselines."""
    base = {k: prop.baseline_lr(k) for k in ("cosine", "wsd") if k in prop.baselines}
    return plot_schedule(prop.lr, prop.params, path, baselines=base)


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Lay out, write the PNG (creating its folder) and free the figure."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
