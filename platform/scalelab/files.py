"""Atomic file writes: write a temp file beside the target, then rename over it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import polars as pl


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_jsonable)

    _atomic(path, w)


def write_parquet(path: Path, df: pl.DataFrame) -> None:
    _atomic(path, lambda tmp: df.write_parquet(tmp))


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def _jsonable(x):
    if hasattr(x, "item"):  # numpy / torch scalars
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


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
