"""Where a study writes: its folder, a folder per trial, study.json; which trials are done."""

from __future__ import annotations

import os
from pathlib import Path

from scalelab import files, status
from scalelab.config import SpecError, Trial
from scalelab.sweep import SweepSpec


def study_dir(spec: SweepSpec, storage: str | None = None) -> Path:
    """The study folder: `storage` or spec.storage itself, else $SCALELAB_STORAGE/<study> (set
    once per cluster, on its shared file system), else ./results/<study>."""
    root = storage or spec.storage
    shared = os.environ.get("SCALELAB_STORAGE", "")
    if "://" in (root or shared):
        raise SpecError(
            f"storage: {root or shared!r} is a URI; trials write through a POSIX file system, "
            "so mount the bucket or share (EFS, FSx, NFS, ...) and pass the mount path"
        )
    if root:
        return Path(root).absolute()
    return (Path(shared).absolute() if shared else Path.cwd() / "results") / spec.name


def trial_dir(root: Path, trial: Trial) -> Path:
    return Path(root) / "trials" / trial.name


def is_done(root: Path, trial: Trial) -> bool:
    """Finished marker: trial.json with a final status and the same content hash."""
    return status.is_done(trial_dir(root, trial), trial.content_hash())


def check_not_legacy(root: Path) -> None:
    """Refuse a results folder written before the identity/placement split (its trial names
    and hashes differ): `scalelab migrate` converts it in place, recomputing nothing."""
    old = [p.parent.name for p in Path(root).glob("trials/*/trial.json")]
    old = [
        n
        for n in old
        if (r := status.read_record(Path(root) / "trials" / n)) and status.is_legacy(r)
    ]
    if old:
        raise SpecError(
            f"storage: {root} holds {len(old)} trial folder(s) in the old layout (e.g. {old[0]}); "
            f"run `scalelab migrate {root}` first (renames and rewrites them, recomputes nothing)"
        )


def write_study_json(root: Path, spec: SweepSpec, trials: list[Trial]) -> None:
    """study.json: the sweep as declared and the trials it expands to (names, hashes, points)."""
    import dataclasses
    import json

    files.write_json(
        Path(root) / "study.json",
        {
            "name": spec.name,
            "sweep": json.loads(json.dumps(dataclasses.asdict(spec), default=str)),
            "format": status.FORMAT,
            "trials": [
                {"name": t.name, "content_hash": t.content_hash(), "grid": t.spec.grid}
                for t in trials
            ],
        },
    )
