"""Results lake: trial folders -> runs.parquet (one row per trial) and curves.parquet (long).

Curves are read with one lazy Polars scan over every trial's curve.parquet (the trial name comes
from the file path). A file whose Parquet footer cannot be read (truncated, half-written) or a
trial folder without a readable trial.json is skipped with a warning naming it. Both tables are
written to a temp file and renamed, so concurrent collects and readers never see half a file.
Schema: README, "Results tables".
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from scalelab import files
from scalelab.config import RUN_FIELDS
from scalelab.presets import SIZES


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "params":
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, dict):  # free-form params: one column per key
            for pk, pv in v.items():
                out[f"{prefix}{k}.{pk}"] = (
                    pv if isinstance(pv, int | float | str | bool) else (json.dumps(pv))
                )
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_row(rec: dict) -> dict:
    """One runs.parquet row from a trial.json record (either layout: README, "Results")."""
    spec = rec["spec"]
    run = rec.get("run") or {k: spec[k] for k in RUN_FIELDS if k in spec}  # old: inside spec
    seq_len = rec.get("seq_len", spec["seq_len"])
    shape = rec.get("shape") or SIZES.get(spec["model"].get("size"), {})  # old records: preset
    row = {
        "trial": rec["name"],
        "study": rec.get("study", ""),
        "status": rec["status"],
        "content_hash": rec.get("content_hash"),
        "model": _model_label(spec["model"]),
        "d_model": shape.get("d_model"),
        "n_layers": shape.get("n_layers"),
        "n_heads": shape.get("n_heads"),
        "params": rec["params"]["non_embedding"],
        "params_total": rec["params"]["total"],
        "batch_size": spec["batch_size"],
        "seq_len": seq_len,
        "lr": spec["optim"]["lr"],
        "schedule": spec["schedule"]["name"],
        "warmup_steps": spec["schedule"]["warmup_steps"],
        "total_steps": spec["total_steps"],
        "tokens": spec["total_steps"] * spec["batch_size"] * seq_len,
        "tokens_seen": rec.get("tokens_seen"),
        "steps_done": rec.get("steps_done"),
        "data": spec["data"]["name"],
        "seed": spec["seed"],
        "workers": run.get("workers", 1),
        "final_train_loss": rec.get("final_train_loss"),
        "final_eval_loss": rec.get("final_eval_loss"),
        "best_eval_loss": rec.get("best_eval_loss"),
        "diverged_step": rec.get("diverged_step"),
        "wall_s": rec.get("wall_s"),
        "flops_per_token": rec.get("flops_per_token"),
        "error": rec.get("error"),
        "spec": json.dumps({k: v for k, v in spec.items() if k not in RUN_FIELDS}, sort_keys=True),
        "run": json.dumps(run, sort_keys=True),
    }
    row.update(grid_columns(rec.get("grid") or {}))
    for k, v in (rec.get("knowledge") or {}).items():
        if isinstance(v, int | float):
            row[f"knowledge.{k}"] = v
    for k, v in _flat({k: v for k, v in spec.items() if k != "grid"}).items():
        row.setdefault(f"spec.{k}", v)
    return row


def grid_columns(point: dict) -> dict:
    """`grid.<key>` per grid key: scalars as they are; a structured value (a schedule) gets a
    readable label there and its fields flattened under `grid.<key>.<field>`."""
    out = {}
    for key, value in point.items():
        if isinstance(value, dict):
            out[f"grid.{key}"] = _label(value)
            for k, v in _flat(value).items():
                out[f"grid.{key}.{k}"] = v
        elif isinstance(value, list | tuple):
            out[f"grid.{key}"] = json.dumps(value)
        else:
            out[f"grid.{key}"] = value
    return out


def _label(d: dict) -> str:
    """`cosine(final_lr=0.0003)` for a schedule dict; sorted k=v for any other dict."""
    if "name" in d and "params" in d:
        from scalelab.config import ScheduleSpec

        return ScheduleSpec(d["name"], d.get("warmup_steps", 0), d["params"]).label
    return ",".join(f"{k}={v}" for k, v in sorted(d.items()))


def _model_label(m: dict) -> str:
    """Preset name, or d64L3H4 when the shape is given explicitly."""
    if m.get("size") and not any(m.get(k) for k in ("d_model", "n_layers", "n_heads")):
        return m["size"]
    from scalelab.config import ModelSpec

    return ModelSpec(**m).label


def _readable_parquet(path: Path) -> bool:
    try:
        pq.read_metadata(path)
        return True
    except Exception as e:  # truncated, empty or not Parquet at all
        warnings.warn(f"skipping unreadable {path}: {type(e).__name__}: {e}", stacklevel=3)
        return False


def collect(root: str | Path, write: bool = True) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Build (runs, curves) for a study folder; write runs.parquet and curves.parquet."""
    root = Path(root)
    rows = []
    tdirs = sorted(p for p in (root / "trials").glob("*") if p.is_dir())
    try:  # only the trials of the study as it is now; folders of edited-away points stay put
        names = {t["name"] for t in files.read_json(root / "study.json")["trials"]}
        stale = [p.name for p in tdirs if p.name not in names]
        tdirs = [p for p in tdirs if p.name in names]
        if stale:
            warnings.warn(
                f"ignoring {len(stale)} trial folder(s) not in {root / 'study.json'} "
                f"(e.g. {stale[0]})",
                stacklevel=2,
            )
    except (OSError, ValueError, KeyError):
        pass  # no study.json: every trial folder counts
    for tdir in tdirs:
        try:
            rows.append(run_row(files.read_json(tdir / "trial.json")))
        except FileNotFoundError:
            if (tdir / "progress.json").exists() or (tdir / "ckpt").exists():
                continue  # running or interrupted: not a result yet
            warnings.warn(f"skipping {tdir}: no trial.json", stacklevel=2)
        except (ValueError, KeyError, TypeError) as e:
            warnings.warn(f"skipping {tdir / 'trial.json'}: {type(e).__name__}: {e}", stacklevel=2)
    runs = (
        pl.DataFrame(rows, infer_schema_length=None)
        if rows
        else pl.DataFrame(schema={"trial": pl.String, "status": pl.String})
    )
    names = set(runs["trial"].to_list())
    paths = [
        p
        for p in sorted((root / "trials").glob("*/curve.parquet"))
        if p.parent.name in names and _readable_parquet(p)
    ]
    if paths:
        curves = (
            pl.scan_parquet(paths, include_file_paths="_path", schema=files.CURVE_SCHEMA)
            .with_columns(trial=pl.col("_path").str.split("/").list.get(-2))
            .drop("_path")
            .select("trial", *files.CURVE_SCHEMA)
            .collect()
        )
    else:
        curves = pl.DataFrame(schema={"trial": pl.String, **files.CURVE_SCHEMA})
    if write:
        files.write_parquet(root / "runs.parquet", runs)
        files.write_parquet(root / "curves.parquet", curves)
    return runs, curves
