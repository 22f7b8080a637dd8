"""The runs table a hyperparameter fit reads (docs/laws.md §9.1): one row per finished run
with model size N, tokens D, peak LR η, batch size B and final loss (and optionally a seed).

Every check here runs before any fitting and fails with one line naming the field and the
fix. Rows at the same (N, D, η, B) (seeds, or repeats) are averaged into one point; their
spread is kept per point so the cell fit can compare its residuals with the seeds' noise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

MIN_VALUES = 3  # distinct values a quadratic needs along one axis to place a minimum

# what each column holds, for the error messages
MEANING = {
    "params": "model size N (parameters)",
    "tokens": "training tokens D",
    "lr": "peak learning rate",
    "batch": "batch size",
    "loss": "final loss",
    "seed": "seed",
}


@dataclass(frozen=True)
class Points:
    """One row per distinct (N, D, η, B): the mean final loss over its rows (seeds), the number
    of rows, and their standard deviation (NaN for a single row)."""

    n: np.ndarray
    d: np.ndarray
    lr: np.ndarray
    batch: np.ndarray
    loss: np.ndarray
    count: np.ndarray
    sd: np.ndarray
    info: dict[str, Any]

    def cells(self) -> list[tuple[float, float, np.ndarray]]:
        """(N, D, index of the cell's points) for each (N, D) cell, sorted by N then D."""
        keys = sorted(set(zip(self.n.tolist(), self.d.tolist(), strict=True)))
        return [(n, d, np.flatnonzero((self.n == n) & (self.d == d))) for n, d in keys]


def read_runs(
    runs: pl.DataFrame,
    *,
    params: str = "params",
    tokens: str = "tokens",
    lr: str = "lr",
    batch: str = "batch_size",
    loss: str = "loss",
    seed: str | None = None,
    laws: bool = True,
) -> Points:
    """Check the runs table and average its rows per (N, D, η, B). ValueError, one line naming
    the field and the fix, for: not a polars frame, missing columns, no rows, non-numeric
    columns, N / D / η / B missing, not finite or <= 0, losses missing or not finite (the count
    named), a seed repeated at one (N, D, η, B), no (N, D) cell with MIN_VALUES distinct LRs
    (no optimum can be located), and, when `laws`, a single N and a single D (one cell: no
    scaling law). Otherwise the rows averaged per point, with their count and spread."""
    if not isinstance(runs, pl.DataFrame):
        raise ValueError(
            f"runs: a {type(runs).__name__}, not a polars DataFrame; pass pl.DataFrame(...) "
            "(or pl.from_pandas) with one row per finished run"
        )
    cols = {"params": params, "tokens": tokens, "lr": lr, "batch": batch, "loss": loss}
    if seed is not None:
        cols["seed"] = seed
    for field, name in cols.items():
        if name not in runs.columns:
            arg = "batch" if field == "batch" else field
            raise ValueError(
                f"{arg}: runs has no column {name!r} ({MEANING[field]}); its columns are "
                f"{runs.columns}: pass {arg}='<your column>'"
            )
    if runs.height == 0:
        raise ValueError("runs: no rows; give one row per finished run (N, D, lr, batch, loss)")
    values = {f: _numbers(runs, f, c) for f, c in cols.items() if f != "seed"}
    for field in ("params", "tokens", "lr", "batch"):
        v = values[field]
        bad = ~(np.isfinite(v) & (v > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{field}: {int(bad.sum())} of {v.size} rows of column {cols[field]!r} are "
                f"missing, not finite or <= 0 (first: row {i}, value {v[i]}); every "
                f"{MEANING[field]} must be a finite number > 0: fix or drop those rows"
            )
    bad = ~np.isfinite(values["loss"])
    if bad.any():
        raise ValueError(
            f"loss: {int(bad.sum())} of {bad.size} rows of column {loss!r} are NaN, inf or "
            "missing (diverged or unfinished runs?); drop those rows before fitting: a run "
            "without a finite final loss has no place on the loss surface"
        )
    n_seeds = _check_seeds(runs, cols) if seed is not None else None
    pts = _average(values)
    _check_cells(pts)
    n_sizes, d_sizes = np.unique(pts.n).size, np.unique(pts.d).size
    if laws and n_sizes == 1 and d_sizes == 1:
        raise ValueError(
            f"params, tokens: every run has N = {pts.n[0]:.4g} and D = {pts.d[0]:.4g}: one "
            "(N, D) cell, so no scaling law in N, D or C can be fitted; pass laws=False to "
            "fit the cell alone, or add model or data sizes"
        )
    digest = hashlib.sha256(runs.select(list(cols.values())).write_csv().encode()).hexdigest()
    info = {
        "columns": cols,
        "rows": runs.height,
        "points": int(pts.n.size),
        "rows_per_point": [int(pts.count.min()), int(pts.count.max())],
        "seeds": n_seeds,
        "input_sha256": digest,
    }
    return Points(pts.n, pts.d, pts.lr, pts.batch, pts.loss, pts.count, pts.sd, info)


def _numbers(runs: pl.DataFrame, field: str, name: str) -> np.ndarray:
    try:
        col = runs[name].cast(pl.Float64, strict=True)
    except pl.exceptions.PolarsError:
        raise ValueError(
            f"{field}: column {name!r} holds {runs[name].dtype}, not numbers; give the "
            f"{MEANING[field]} as numbers"
        ) from None
    return col.fill_null(float("nan")).to_numpy().astype(float)


def _average(values: dict[str, np.ndarray]) -> Points:
    """Mean loss, row count and standard deviation per (N, D, η, B)."""
    frame = pl.DataFrame({k: values[k] for k in ("params", "tokens", "lr", "batch", "loss")})
    out = (
        frame.group_by("params", "tokens", "lr", "batch")
        .agg(
            pl.col("loss").mean().alias("mean"),
            pl.len().alias("count"),
            pl.col("loss").std().alias("sd"),
        )
        .sort("params", "tokens", "batch", "lr")
    )
    a = {c: out[c].cast(pl.Float64).fill_null(float("nan")).to_numpy() for c in out.columns}
    count = a["count"].astype(int)
    return Points(a["params"], a["tokens"], a["lr"], a["batch"], a["mean"], count, a["sd"], {})


def _check_seeds(runs: pl.DataFrame, cols: dict[str, str]) -> int:
    """The number of distinct seeds; ValueError when two rows share (N, D, η, B, seed)."""
    keys = [cols[f] for f in ("params", "tokens", "lr", "batch", "seed")]
    dup = runs.select(keys).is_duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(
            f"seed: {int(dup.sum())} rows repeat the same (N, D, lr, batch, seed) as another "
            f"row (first: row {i}); keep one row per run, or give seed=None to average repeats"
        )
    return int(runs[cols["seed"]].n_unique())


def _check_cells(pts: Points) -> None:
    """At least one (N, D) cell must have MIN_VALUES distinct LRs, else no η* can be placed."""
    most = max(np.unique(pts.lr[idx]).size for _, _, idx in pts.cells())
    if most < MIN_VALUES:
        raise ValueError(
            f"lr: no (N, D) cell has {MIN_VALUES} or more distinct learning rates (most in one "
            f"cell: {most}), so no optimum can be located (a quadratic in ln η needs "
            f"{MIN_VALUES}); sweep at least {MIN_VALUES} LRs in each cell"
        )
