"""Trial files: the curve schema, and the atomic writers (one implementation: scalelaws.io)."""

from __future__ import annotations

import polars as pl

from scalelaws.io import atomic_write, read_json, write_json, write_parquet, write_text

__all__ = ["CURVE_SCHEMA", "atomic_write", "curve_frame", "read_json", "write_json"]
__all__ += ["write_parquet", "write_text"]


# One row per logged step; eval columns are null on steps without an eval.
CURVE_SCHEMA = {
    "step": pl.Int64,  # optimizer updates done
    "tokens": pl.Int64,  # training tokens seen
    "lr": pl.Float64,  # LR of the last update
    "train_loss": pl.Float64,  # mean loss of the last update's batch (nats/token)
    "eval_loss": pl.Float64,  # fixed held-out batch, after `step` updates
    "ewa_eval_loss": pl.Float64,  # same with the EWA weights (if ewa_decay > 0)
    "grad_norm": pl.Float64,  # global grad norm before clipping
    "noise_scale": pl.Float64,  # B_simple EMA, in sequences
    "tokens_per_s": pl.Float64,  # throughput since the previous row
    "elapsed_s": pl.Float64,  # wall seconds since this process started
}


def curve_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=CURVE_SCHEMA)
