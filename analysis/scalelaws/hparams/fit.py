"""fit_hparams: the optimal peak LR η* and batch size B* per (N, D) cell and their scaling laws
(docs/laws.md §9; docs/hparams.md).

    fit = sl.fit_hparams(runs)                        # one row per finished run
    fit.cells, fit.laws["lr~ND"], fit.params["lr~ND.N"], fit.intervals["lr~ND.N"]
    p = fit.predict(params=1e9, tokens=2e10)          # p.lr, p.batch, p.intervals["lr"]
    fit.penalty(1e9, 2e10, lr=3e-3, batch=2**20).params["nats"]
    fit.plot("hparams.png")

Pipeline: runs.read_runs (checks, seeds averaged per point) -> surface.fit_cell per (N, D)
(robust quadratic in ln η, ln B; optimum; bootstrap) -> scaling.fit_laws for η* and B* (OLS
on logs in N, D and C = 6ND) -> surface.pooled_curvature (for the penalty).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.result import Result
from scalelaws.hparams import checks, scaling, surface
from scalelaws.hparams.runs import read_runs

DEFAULT_BATCH_UNIT = "tokens per optimizer step"


@dataclass(frozen=True, eq=False)
class HparamsFit(Result):
    """Per-cell optima of the peak LR and batch size and their power laws.

    cells: one dict per (N, D) cell: params, tokens, flops, label ("N=1e+08,D=2e+09"), mode
        ("2d", "lr", "batch", "none": which axes have >= 3 values), lr_opt, batch_opt,
        loss_opt, lr_status / batch_status ("stationary", "conditional", "edge",
        "not_convex", "few_values"), lr_interval / batch_interval (95% bootstrap; None when
        not located), stationary (the unclamped minimum), hessian (2x2 in (ln lr, ln batch),
        NaN where unmeasured), coef, center, levels, range (ln of the swept values), points
        (lr, batch, mean loss), seeds (rows per point), seed_sd, rmse, best (the best run),
        n_boot, boot_failed.
    laws: {"lr~ND", "lr~C", "batch~ND", "batch~C" (or "~D" / "~N" forms): dict}, each with
        coef, exponents, their 95% intervals, r2, sigma, n, cells, and the log design.
    curvature: the Hessian pooled over cells (surface.pooled_curvature) for the penalty.
    params / intervals: "<law>.coef" and "<law>.<var>" (the exponent of N, D or C), e.g.
        "lr~ND.N" = α in η* = a·N^α·D^β; "lr_opt[<cell>]", "batch_opt[<cell>]",
        "loss_opt[<cell>]"; "curvature.lr" (c_η = H_ηη/2), "curvature.batch",
        "curvature.cross" (H_ηB), so ΔL ≈ c_η·δ_η² + H_ηB·δ_η·δ_B + c_B·δ_B².
    metrics: "rmse[<cell>]" (nats), "r2[<law>]", "sigma[<law>]" (residual sd of ln y).
    info: batch_unit, compute ("C = 6*N*D FLOPs"), columns, rows, points, seeds, n_boot,
        rng_seed, method, input_sha256.
    """

    cells: tuple[dict[str, Any], ...]
    laws: dict[str, dict[str, Any]] = field(default_factory=dict)
    curvature: dict[str, Any] = field(default_factory=dict)
    params: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def cell(self, params: float, tokens: float) -> dict[str, Any]:
        """The cell at (N, D) = (params, tokens)."""
        for c in self.cells:
            if np.isclose(c["params"], params) and np.isclose(c["tokens"], tokens):
                return c
        raise ValueError(
            f"cell: no (N, D) = ({params:.4g}, {tokens:.4g}); cells: "
            f"{[c['label'] for c in self.cells]}"
        )

    def predict(self, params: float, tokens: float, level: float = 0.9):
        """η* and B* at (N, D) with `level` prediction intervals and diagnostics (extrapolation,
        forms disagreeing, missing laws): an HparamsPrediction (scalelaws.hparams.predict)."""
        from scalelaws.hparams.predict import predict

        return predict(self, params, tokens, level)

    def penalty(self, params: float, tokens: float, lr: float, batch: float | None = None):
        """The predicted loss increase (nats and relative) of running at (lr, batch) instead of
        the optimum at (N, D), from the pooled curvature: an HparamsPenalty."""
        from scalelaws.hparams.predict import penalty

        return penalty(self, params, tokens, lr, batch)

    def plot(self, path: str | Path, *, level: float = 0.9) -> Path:
        """Per-cell loss vs lr and the laws vs C, written to `path` (scalelaws.hparams.plots)."""
        from scalelaws.hparams.plots import plot_hparams

        return plot_hparams(self, path, level=level)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HparamsFit:
        out = super().from_dict(d)
        object.__setattr__(out, "cells", tuple(out.cells))
        return out


def fit_hparams(
    runs: pl.DataFrame,
    *,
    params: str = "params",
    tokens: str = "tokens",
    lr: str = "lr",
    batch: str = "batch_size",
    loss: str = "loss",
    seed: str | None = None,
    batch_unit: str = DEFAULT_BATCH_UNIT,
    laws: bool = True,
    n_boot: int = 200,
    rng_seed: int = 0,
    window: float = surface.WINDOW,
) -> HparamsFit:
    """Fit the optimal peak LR and batch size per (N, D) cell and their scaling laws.

    runs: a polars frame, one row per finished run; the column names are the keyword
        arguments. `seed`: a seed column (rows at the same (N, D, lr, batch) are averaged
        whether or not it is given; with it, duplicated seeds are refused and the seeds'
        scatter feeds the MISFIT check).
    batch_unit: what the batch column counts, kept in info (the scalelab study passes tokens
        per optimizer step, as DeepSeek LLM and Step Law state their B; sequences work too,
        only the coefficients of the B* laws change, by the sequence length).
    laws: fit the power laws across cells (a single N and a single D is then an error);
        False fits the cells alone.
    n_boot: bootstrap resamples per cell (0: no interval); rng_seed seeds them.
    window: each cell's quadratic is fitted to its runs within this fraction of the cell's
        best loss (at least the 12 lowest): a quadratic holds near the minimum only.
    """
    if not (isinstance(n_boot, int) and n_boot >= 0):
        raise ValueError(f"n_boot={n_boot!r}: must be an integer >= 0 (200 is the default)")
    if not (isinstance(window, int | float) and 0 < window < 1):
        raise ValueError(f"window={window!r}: must be a fraction in (0, 1), e.g. 0.02")
    pts = read_runs(
        runs, params=params, tokens=tokens, lr=lr, batch=batch, loss=loss, seed=seed, laws=laws
    )
    rng = np.random.default_rng(rng_seed)
    cells = []
    for n, d, idx in pts.cells():
        cells.append(
            surface.fit_cell(
                n,
                d,
                pts.lr[idx],
                pts.batch[idx],
                pts.loss[idx],
                pts.count[idx],
                pts.sd[idx],
                n_boot=n_boot,
                rng=rng,
                window=window,
            )
        )
    diags = [d for c in cells for d in checks.cell_diagnostics(c)]
    fitted: dict[str, dict] = {}
    if laws:
        for target in ("lr", "batch"):
            more, found = scaling.fit_laws(cells, target)
            fitted |= more
            diags += found
    curvature = surface.pooled_curvature(cells)
    p, iv, m = _summary(cells, fitted, curvature)
    info = pts.info | {
        "batch_unit": batch_unit,
        "compute": "C = 6*N*D FLOPs (N params, D tokens)",
        "cells": len(cells),
        "n_boot": n_boot,
        "rng_seed": rng_seed,
        "laws": laws,
        "window": window,
        "method": "per cell: Huber RLM quadratic of the mean loss in (ln lr, ln batch), "
        "residual bootstrap; across cells: OLS on logs",
    }
    return HparamsFit(tuple(cells), fitted, curvature, p, iv, m, tuple(diags), info)


def _summary(cells, laws, curvature):
    """params / intervals / metrics of the result convention (see HparamsFit)."""
    params, intervals, metrics = {}, {}, {}
    for c in cells:
        for key in ("lr", "batch"):
            params[f"{key}_opt[{c['label']}]"] = c[f"{key}_opt"]
            if c[f"{key}_interval"] is not None:
                intervals[f"{key}_opt[{c['label']}]"] = tuple(c[f"{key}_interval"])
        params[f"loss_opt[{c['label']}]"] = c["loss_opt"]
        metrics[f"rmse[{c['label']}]"] = c["rmse"]
    for key, fit in laws.items():
        params[f"{key}.coef"] = fit["coef"]
        intervals[f"{key}.coef"] = tuple(fit["coef_interval"])
        for var, e in fit["exponents"].items():
            params[f"{key}.{var}"] = e
            intervals[f"{key}.{var}"] = tuple(fit["exponent_intervals"][var])
        metrics[f"r2[{key}]"] = fit["r2"]
        metrics[f"sigma[{key}]"] = fit["sigma"]
    h = curvature["hessian"]
    params["curvature.lr"] = h[0][0] / 2
    params["curvature.batch"] = h[1][1] / 2
    params["curvature.cross"] = h[0][1]
    return params, intervals, metrics
