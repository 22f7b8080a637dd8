"""Distributed checkpoints (torch.distributed.checkpoint) of a trial, resumed exactly.

Layout under the trial folder:
    ckpt/step_000123/{.metadata, *.distcp, meta.json, curve.parquet, manifest.json}
    forks/step_000400/...   the same, saved where another trial forks (prefix.py); kept when
                            the trial ends, removed by the driver once every branch finished
A checkpoint is written to `ckpt/tmp-step_*`, then its manifest (sha256 and size of every
file), then renamed when complete, so a kill mid-save leaves the previous checkpoint intact.
Resume verifies the manifest first and refuses a checkpoint whose files differ from it (a
damaged or half-copied checkpoint, a file added by hand): the trainer moves it aside to
`ckpt/bad-step_*` and starts from the previous good one or from scratch. torch DCP unpickles
its metadata, so a results folder is trusted like code (README, "Trust"). The data position
is the step itself (sources are deterministic in (seed, step)): no data-loader state.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import polars as pl
import torch

from scalelab import files, parallel

MANIFEST = "manifest.json"


class BadCheckpoint(RuntimeError):
    """A checkpoint whose files do not match its manifest (or that has none)."""


def latest(trial_dir: Path) -> Path | None:
    done = candidates(trial_dir)
    return done[-1] if done else None


def candidates(trial_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    return [p.parent for p in sorted((Path(trial_dir) / "ckpt").glob("step_*/meta.json"))]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    files_ = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = {
        str(p.relative_to(folder)): {"sha256": _sha256(p), "bytes": p.stat().st_size}
        for p in files_
    }
    files.write_json(folder / MANIFEST, {"files": entries})


def verify(folder: Path) -> None:
    """Raise BadCheckpoint unless every file matches the manifest and nothing else is there."""
    folder = Path(folder)
    try:
        want = files.read_json(folder / MANIFEST)["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadCheckpoint(f"{folder}: no readable {MANIFEST} ({type(e).__name__})") from None
    have = {
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
    }
    extra, missing = sorted(have - set(want)), sorted(set(want) - have)
    if extra or missing:
        raise BadCheckpoint(f"{folder}: files {extra or missing} differ from its manifest")
    for rel, entry in want.items():
        p = folder / rel
        if p.stat().st_size != entry["bytes"] or _sha256(p) != entry["sha256"]:
            raise BadCheckpoint(f"{p}: content differs from the manifest")


def move_aside(path: Path) -> Path:
    """ckpt/step_X -> ckpt/bad-step_X (kept for a post-mortem, never loaded)."""
    path = Path(path)
    dest = path.with_name(f"bad-{path.name}")
    shutil.rmtree(dest, ignore_errors=True)
    path.rename(dest)
    return dest


def save(
    trial_dir: Path,
    step: int,
    model,
    optimizer,
    extra: dict,
    rows: list[dict],
    rank: int,
    keep: int | None = 1,
    folder: str = "ckpt",
) -> None:
    """Collective: every rank calls it. `rows` (the curve so far) matter on rank 0 only.
    `keep`: the newest checkpoints kept in `folder` (None: all)."""
    root = Path(trial_dir) / folder
    final = root / f"step_{step:07d}"
    tmp = root / f"tmp-step_{step:07d}"
    dcp, get_state_dict, _ = _dcp()
    msd, osd = get_state_dict(model, optimizer)
    dcp.save({"model": msd, "optim": osd, **extra.get("tensors", {})}, checkpoint_id=str(tmp))
    if rank == 0:
        files.write_parquet(tmp / "curve.parquet", files.curve_frame(rows))
        rng = {"torch": torch.get_rng_state().tolist()}
        files.write_json(tmp / "meta.json", {"step": step, "rng": rng, **extra.get("meta", {})})
        write_manifest(tmp)
        tmp.rename(final)
        for old in sorted(root.glob("step_*"))[:-keep] if keep else []:
            shutil.rmtree(old, ignore_errors=True)
    parallel.barrier()


def _dcp():
    """torch DCP, imported at the first save or load: 0.8 s of CPU (DTensor, sympy) that a
    trial runner would otherwise pay before its first step, and a short trial never needs."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    return dcp, get_state_dict, set_state_dict


def load(path: Path, model, optimizer, tensors: dict | None = None) -> tuple[dict, list[dict]]:
    """Verify, then load into model/optimizer (and `tensors` in place); return (meta, rows)."""
    verify(path)
    dcp, get_state_dict, set_state_dict = _dcp()
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
    for folder in ("ckpt", FORKS):
        for tmp in (Path(trial_dir) / folder).glob("tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)


FORKS = "forks"


def fork_path(trial_dir: Path, step: int) -> Path:
    """Where a trunk saves its state after `step` updates for the trials that fork there."""
    return Path(trial_dir) / FORKS / f"step_{step:07d}"


def clear_fork(trial_dir: Path, step: int) -> None:
    path = fork_path(trial_dir, step)
    shutil.rmtree(path, ignore_errors=True)
    try:
        path.parent.rmdir()  # the last one: no empty forks/ left behind
    except OSError:
        pass
