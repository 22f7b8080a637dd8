"""Trial states, as trial.json records them; torch-free, so launch and status stay light.

A trial folder is done when its trial.json says completed / diverged / stopped and its
content hash is the trial's. Records written before the identity/placement split (no `run`
key, FORMAT 1) are recognised as such: `scalelab migrate` renames and rewrites them.
"""

from __future__ import annotations

from pathlib import Path

from scalelab import files

FORMAT = 2  # trial.json layout: spec (identity), run (placement), grid, content_hash
STATUS_DONE = ("completed", "diverged", "stopped")  # final: a rerun skips these
STATUSES = (*STATUS_DONE, "failed", "running")


def read_record(tdir: Path) -> dict | None:
    """trial.json of a folder, or None when missing or unreadable."""
    try:
        rec = files.read_json(Path(tdir) / "trial.json")
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def is_legacy(rec: dict) -> bool:
    """Written by scalelab before the split (placement fields inside the hashed spec)."""
    return "run" not in rec and isinstance(rec.get("spec"), dict)


def is_done(tdir: Path, content_hash: str) -> bool:
    """Finished marker: trial.json with a final status and the same content hash."""
    rec = read_record(tdir)
    if rec is None or is_legacy(rec):
        return False
    return rec.get("status") in STATUS_DONE and rec.get("content_hash") == content_hash
