"""Distributed checkpoints (torch.distributed.checkpoint) of a trial, resumed exactly.

Layout under the trial folder:  ckpt/step_000123/{.metadata, *.distcp, meta.json, curve.parquet}
A checkpoint is written to `ckpt/tmp-step_*` and renamed when complete, so a kill mid-save
leaves the previous checkpoint intact. The data position is the step itself (data sources are
deterministic in (seed, step)), so resuming needs no data-loader state.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from scalelab import files, parallel


def latest(trial_dir: Path) -> Path | None:
    done = sorted((Path(trial_dir) / "ckpt").glob("step_*/meta.json"))
    return done[-1].parent if done else None


def save(
    trial_dir: Path,
    step: int,
    model,
    optimizer,
    extra: dict,
    rows: list[dict],
    rank: int,
    keep: int = 1,
) -> None:
    """Collective: every rank calls it. `rows` (the curve so far) matter on rank 0 only."""
    root = Path(trial_dir) / "ckpt"
    final = root / f"step_{step:07d}"
    tmp = root / f"tmp-step_{step:07d}"
    msd, osd = get_state_dict(model, optimizer)
    dcp.save({"model": msd, "optim": osd, **extra.get("tensors", {})}, checkpoint_id=str(tmp))
    if rank == 0:
        files.write_parquet(tmp / "curve.parquet", files.curve_frame(rows))
        rng = {"torch": torch.get_rng_state().tolist()}
        files.write_json(tmp / "meta.json", {"step": step, "rng": rng, **extra.get("meta", {})})
        tmp.rename(final)
        for old in sorted(root.glob("step_*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    parallel.barrier()


def load(path: Path, model, optimizer, tensors: dict | None = None) -> tuple[dict, list[dict]]:
    """Load into model/optimizer (and `tensors` in place); return (meta, curve rows)."""
    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optim": osd, **(tensors or {})}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
    )
    meta = files.read_json(Path(path) / "meta.json")
    torch.set_rng_state(torch.tensor(meta["rng"]["torch"], dtype=torch.uint8))
    rows = pl.read_parquet(Path(path) / "curve.parquet").to_dicts()
    return meta, rows


def clear(trial_dir: Path) -> None:
    shutil.rmtree(Path(trial_dir) / "ckpt", ignore_errors=True)


def clear_partial(trial_dir: Path) -> None:
    for tmp in (Path(trial_dir) / "ckpt").glob("tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
