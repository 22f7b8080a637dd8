"""Figure of a hyperparameter fit (matplotlib, Agg; docs/laws.md §9, docs/hparams.md).

Top: one panel per (N, D) cell, loss against the peak LR (log axis), one colour per batch size,
points = mean over seeds, lines = the cell's fitted surface along that batch size, star = the
reported optimum (bar: its 95% bootstrap interval in LR; hollow when the LR is not located).
Bottom: η* and B* against C = 6ND: located cells with their bootstrap bars (hollow grey: not
located), the compute-form law with its `level` prediction interval for a new cell, and the
primary (N, D) form at each cell (crosses). Nothing is fitted here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scalelaws.core.figures import band, band_label, diagnostics_box, pyplot, save
from scalelaws.core.prediction import Prediction
from scalelaws.hparams.law import num
from scalelaws.hparams.scaling import law_prediction, primary
from scalelaws.hparams.surface import LOCATED, evaluate

MAX_CELLS = 16  # panels; more cells are summarised in the bottom row only


def plot_hparams(fit, path: str | Path, *, level: float = 0.9) -> Path:
    """Draw `fit` (an HparamsFit) and write the PNG to `path` (module doc)."""
    import warnings

    plt = pyplot()
    cells = list(fit.cells)[:MAX_CELLS]
    ncols = 4 if len(cells) > 2 else 2
    rows = math.ceil(len(cells) / ncols)
    fig = plt.figure(figsize=(3.6 * ncols, 3.0 * (rows + 1.3)))
    grid = fig.add_gridspec(rows + 1, ncols, height_ratios=[1.0] * rows + [1.3])
    batches = sorted({b for c in fit.cells for b in c["points"]["batch"]})
    colors = {b: f"C{i % 10}" for i, b in enumerate(batches)}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # NaN intervals of unlocated cells on log axes
        for i, cell in enumerate(cells):
            _cell(fig.add_subplot(grid[i // ncols, i % ncols]), cell, colors)
        half = ncols // 2
        for j, target in enumerate(("lr", "batch")):
            ax = fig.add_subplot(grid[rows, j * half : (j + 1) * half])
            _law(ax, fit, target, level)
    handles = [
        plt.Line2D([], [], color=colors[b], marker="o", ls="-", label=f"B = {b:.4g}")
        for b in batches
    ]
    if cells:  # one legend for every panel: the batch sizes' colours
        fig.axes[0].legend(handles=handles, title=fit.info.get("batch_unit", "batch"),
                           fontsize=5, title_fontsize=5, loc="upper center")  # fmt: skip
    diagnostics_box(fig, fit.diagnostics)
    return save(fig, path, dpi=100)


def _cell(ax, cell: dict, colors: dict) -> None:
    from matplotlib.ticker import NullFormatter

    pts = cell["points"]
    lr, batch, loss = (np.asarray(pts[k], float) for k in ("lr", "batch", "loss"))
    grid = np.geomspace(lr.min() / 1.2, lr.max() * 1.2, 80)
    for b in sorted(set(batch.tolist())):
        m = batch == b
        ax.plot(lr[m], loss[m], "o", ms=3.5, color=colors[b])
        ax.plot(grid, evaluate(cell, grid, b), "-", lw=1.0, color=colors[b])
    located = cell["lr_status"] in LOCATED
    iv = cell["lr_interval"]
    xerr = None
    if iv is not None:
        xerr = [[cell["lr_opt"] - iv[0]], [iv[1] - cell["lr_opt"]]]
    ax.errorbar([cell["lr_opt"]], [cell["loss_opt"]], xerr=xerr, fmt="*", ms=11, color="k",
                mfc="k" if located else "none", capsize=3, zorder=5)  # fmt: skip
    top = np.quantile(loss, 0.75) + 0.5 * (np.quantile(loss, 0.75) - loss.min())
    ax.set_ylim(loss.min() - 0.1 * (top - loss.min()) - 1e-9, top + 1e-9)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor LR labels overlap
    ax.set_title(f"{cell['label']}\nlr {cell['lr_status']}, B {cell['batch_status']}", fontsize=7)
    ax.set_xlabel("peak LR", fontsize=7)
    ax.set_ylabel("final loss", fontsize=7)
    ax.tick_params(labelsize=6)


def _law(ax, fit, target: str, level: float) -> None:
    sym = "η*" if target == "lr" else "B*"
    cells = list(fit.cells)
    c = np.array([x["flops"] for x in cells], float)
    y = np.array([x[f"{target}_opt"] for x in cells], float)
    ok = np.array([x[f"{target}_status"] in LOCATED for x in cells], bool)
    lo = np.array([num((x[f"{target}_interval"] or [None, None])[0]) for x in cells])
    hi = np.array([num((x[f"{target}_interval"] or [None, None])[1]) for x in cells])
    err = np.nan_to_num(np.clip(np.array([y - lo, hi - y]), 0, None))
    ax.errorbar(c[ok], y[ok], yerr=err[:, ok], fmt="o", color="C0", capsize=3,
                label="cell optimum (95% bootstrap)")  # fmt: skip
    if (~ok).any():
        ax.plot(c[~ok], y[~ok], "o", mfc="none", color="0.5", label="not located (best run)")
    law_c = fit.laws.get(f"{target}~C")
    if law_c is not None:
        g = np.geomspace(c.min() / 1.5, c.max() * 1.5, 80)
        point, plo, phi = law_prediction(law_c, g / 6.0, 1.0, level)  # C = 6·(C/6)·1
        pred = Prediction(x=g, point=point, lo=plo, hi=phi, level=level)
        band(ax, g, pred, "C0", label=band_label(pred, "new cell, C form"))
        k, e = law_c["coef"], law_c["exponents"]["C"]
        ax.plot(g, point, "k--", lw=1, label=f"{sym} = {k:.3g}·C^{e:.3f}")
    main = primary(fit.laws, target)
    if main is not None and main["form"] != "C":
        n = np.array([x["params"] for x in cells])
        d = np.array([x["tokens"] for x in cells])
        ax.plot(c, law_prediction(main, n, d, level)[0], "x", color="C3",
                label=f"{main['form'][0] if main['form'] != 'ND' else '(N, D)'} form at the cells")  # fmt: skip
    unit = "" if target == "lr" else f" ({fit.info.get('batch_unit', '')})"
    ax.set(xscale="log", yscale="log", xlabel="C = 6ND (FLOPs)", ylabel=f"{sym}{unit}")
    ax.set_title(f"{sym} vs compute", fontsize=8)
    ax.legend(fontsize=6)
