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

from scalelab import files, status
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
        # a shared prefix: the trial it started from and after how many updates (provenance)
        "forked_from": (rec.get("forked_from") or {}).get("trial"),
        "fork_step": (rec.get("forked_from") or {}).get("step"),
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


class NoStudy(ValueError):
    """The folder holds no study (a mistyped path): nothing is read or written."""


def trial_dirs(root: Path) -> tuple[list[Path], dict[str, str | None], list[str]]:
    """The trial folders of the study as it is now (study.json), their expected hashes, and
    the folders left out (grid points edited away since). No study.json: every folder."""
    root = Path(root)
    if not (root / "trials").is_dir() and not (root / "study.json").is_file():
        raise NoStudy(
            f"{root}: holds no study (no study.json, no trials/); give a study results folder "
            "such as results/quickstart"
        )
    tdirs = sorted(p for p in (root / "trials").glob("*") if p.is_dir())
    try:
        expected = {
            t["name"]: t.get("content_hash") for t in files.read_json(root / "study.json")["trials"]
        }
    except (OSError, ValueError, KeyError, TypeError):
        return tdirs, {p.name: None for p in tdirs}, []
    stale = [p.name for p in tdirs if p.name not in expected]
    return [p for p in tdirs if p.name in expected], expected, stale


def _read_runs(tdirs, expected, problems: list[str]) -> list[dict]:
    rows = []
    for tdir in tdirs:
        info = status.inspect(tdir, expected.get(tdir.name))
        if info.state == "pending":
            if not ((tdir / "progress.json").exists() or (tdir / "ckpt").exists()):
                problems.append(f"{tdir}: no trial.json")
            continue  # running or interrupted: not a result yet
        if info.record is None or info.state == "mismatch":
            problems.extend(info.problems)
            continue
        try:
            rows.append(run_row(info.record))
        except (ValueError, KeyError, TypeError) as e:
            problems.append(f"{tdir / 'trial.json'}: {type(e).__name__}: {e}")
    return rows


# What a damaged curve file raises: polars panics (a BaseException, not an Exception) on some
# damaged pages, seen with polars 2.1 on a page whose length field was overwritten.
DAMAGED = (Exception, pl.exceptions.PanicException)


def _read_curves(root: Path, names: list[str], problems: list[str]) -> pl.DataFrame:
    """One scan over every curve (fast); if any file is damaged, each is read alone and the bad
    ones are named and left out."""
    paths = [root / "trials" / n / "curve.parquet" for n in names]
    paths = [p for p in paths if p.exists()]
    empty = pl.DataFrame(schema={"trial": pl.String, **files.CURVE_SCHEMA})
    if not paths:
        return empty
    try:
        return _scan(paths)
    except DAMAGED:  # a damaged page, a truncated footer, a column of the wrong type
        pass
    good = []
    for p in paths:
        try:
            good.append(_scan([p]))
        except DAMAGED as e:
            problems.append(f"{p}: unreadable ({type(e).__name__}: {str(e).splitlines()[0]})")
    return pl.concat(good) if good else empty


def _scan(paths: list[Path]) -> pl.DataFrame:
    return (
        pl.scan_parquet(paths, include_file_paths="_path", schema=files.CURVE_SCHEMA)
        .with_columns(trial=pl.col("_path").str.split("/").list.get(-2))
        .drop("_path")
        .select("trial", *files.CURVE_SCHEMA)
        .collect()
    )


def collect(
    root: str | Path, write: bool = True, problems: list[str] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Build (runs, curves) for a study folder; write runs.parquet and curves.parquet.

    Each trial is read on its own: a damaged or mismatched file is left out and named, in one
    warning at the end (and in `problems`, when given); the rest is collected. A folder that
    holds no study raises NoStudy and nothing is written.
    """
    root = Path(root)
    problems = [] if problems is None else problems
    tdirs, expected, stale = trial_dirs(root)
    rows = _read_runs(tdirs, expected, problems)
    runs = (
        pl.DataFrame(rows, infer_schema_length=None)
        if rows
        else pl.DataFrame(schema={"trial": pl.String, "status": pl.String})
    )
    curves = _read_curves(root, runs["trial"].to_list(), problems)
    if stale:
        problems.append(
            f"ignoring {len(stale)} trial folder(s) not in {root / 'study.json'} (e.g. {stale[0]})"
        )
    if problems:
        warnings.warn(
            f"collect {root}: {len(problems)} problem(s), left out: " + "; ".join(problems),
            stacklevel=2,
        )
    if write:
        files.write_parquet(root / "runs.parquet", runs, compression="lz4")
        files.write_parquet(root / "curves.parquet", curves, compression="lz4")
    return runs, curves
