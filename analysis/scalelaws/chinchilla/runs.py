"""The runs table that Chinchilla approaches 2 and 3 share: one row per usable run with N, D,
final loss, training compute C under a stated FLOPs convention (law.COMPUTE; Porian et al. 2024,
arXiv 2406.19146), and the bootstrap / isoFLOP group. Not `scalelaws.study.summary.runs_table`
(a study at a glance)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from scalelaws.chinchilla.law import COMPUTE


@dataclass(frozen=True)
class ChinchillaRuns:
    """One row per usable run: N, D, final loss, training compute C, bootstrap group."""

    n: np.ndarray
    d: np.ndarray
    loss: np.ndarray
    flops: np.ndarray
    groups: np.ndarray
    info: dict[str, Any]

    @property
    def flops_per_nd(self) -> float:
        """k in C = k·N·D: 6 under "6ND", else the median of C/(N·D) over the runs."""
        return float(np.median(self.flops / (self.n * self.d)))


def chinchilla_runs(
    frame: pl.DataFrame,
    *,
    params_col: str | None = None,
    tokens_col: str = "tokens_seen",
    loss_col: str = "final_eval_loss",
    flops_col: str = "flops_per_token",
    compute: str = "6ND",
    statuses: tuple[str, ...] | None = ("completed",),
    group_col: str | None = None,
) -> ChinchillaRuns:
    """Pick and check the columns. `params_col=None` uses `params`, else `params_total`.
    `flops_col` is read only when compute is "flops_per_token" (FLOPs per token) or "total"
    (total training FLOPs). Rows whose `status` is not in `statuses` (when the frame has a
    status column), or with a missing, non-finite or non-positive value, are dropped and
    counted in info."""
    if compute not in COMPUTE:
        raise ValueError(f"compute={compute!r}: use one of {sorted(COMPUTE)} ({COMPUTE})")
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"expected a polars DataFrame, got {type(frame).__name__}")
    if params_col is None:
        params_col = "params" if "params" in frame.columns else "params_total"
    cols = [params_col, tokens_col, loss_col] + ([flops_col] if compute != "6ND" else [])
    missing = [c for c in cols + ([group_col] if group_col else []) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; it has {frame.columns}")
    rows = frame.height
    if statuses is not None and "status" in frame.columns:
        frame = frame.filter(pl.col("status").is_in(list(statuses)))
    by_status = rows - frame.height
    ok = pl.all_horizontal(
        [pl.col(c).cast(pl.Float64).is_finite().fill_null(False) for c in cols]
        + [pl.col(c).cast(pl.Float64).fill_null(0.0) > 0 for c in cols]
    )
    frame = frame.filter(ok)
    n, d, loss = (frame[c].cast(pl.Float64).to_numpy() for c in cols[:3])
    if compute == "6ND":
        flops = 6.0 * n * d
    elif compute == "flops_per_token":
        flops = frame[flops_col].cast(pl.Float64).to_numpy() * d
    else:
        flops = frame[flops_col].cast(pl.Float64).to_numpy()
    groups = frame[group_col].to_numpy() if group_col else np.arange(frame.height)
    k = flops / (n * d) if frame.height else np.array([np.nan])
    info = {
        "columns": {"params": params_col, "tokens": tokens_col, "loss": loss_col}
        | ({"flops": flops_col} if compute != "6ND" else {}),
        "compute": compute,
        "compute_convention": COMPUTE[compute],
        "rows": rows,
        "rows_used": frame.height,
        "rows_dropped_status": by_status,
        "rows_dropped_invalid": rows - by_status - frame.height,
        "flops_per_nd_range": [float(k.min()), float(k.max())],
    }
    return ChinchillaRuns(n, d, loss, flops, groups, info)
