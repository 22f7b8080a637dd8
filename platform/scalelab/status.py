"""Trial states, as trial.json records them, checked; torch-free, so launch and status stay light.

A trial folder is done when its trial.json says completed / diverged / stopped, names this
folder, and carries the trial's content hash. `inspect` says what a folder holds and every
problem with it (unreadable or truncated record, a record naming another trial, a spec whose
hash is not the recorded one, a hash the study no longer expects). Records written before the
identity/placement split (no `run` key) are recognised: `scalelab migrate` converts them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from scalelab import files

FORMAT = 2  # trial.json layout: spec (identity), run (placement), grid, content_hash
STATUS_DONE = ("completed", "diverged", "stopped")  # final: a rerun skips these
STATUSES = (*STATUS_DONE, "failed", "running")
FINISHED = (*STATUS_DONE, "failed")  # ended, well or not: what progress counts as done
# what `status` shows: the recorded statuses; `interrupted` (says running, but its heartbeat
# stopped: the process is gone); folders whose record cannot be trusted; not started yet
STATES = (*STATUSES, "interrupted", "corrupt", "mismatch", "pending")
HEARTBEAT = "heartbeat"  # a file the running trial touches every HEARTBEAT_S seconds
HEARTBEAT_S = 10.0
LEASE_S = 60.0  # no touch for this long: the trial's process is gone
_NEEDED = ("name", "status", "spec", "content_hash")


@dataclass
class TrialInfo:
    state: str  # one of STATES
    record: dict | None = None  # trial.json, when readable
    problems: list[str] = field(default_factory=list)  # one line each, naming the file


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


def spec_hash(spec: dict) -> str | None:
    """The content hash of a recorded spec, or None when it is not a valid TrialSpec."""
    from scalelab.config import SpecError, TrialSpec

    try:
        return TrialSpec.from_dict(spec).content_hash()
    except (SpecError, TypeError, ValueError):
        return None


def inspect(tdir: Path, expected_hash: str | None = None) -> TrialInfo:
    """The state of one trial folder and every problem found in its trial.json."""
    tdir = Path(tdir)
    path = tdir / "trial.json"
    if not path.exists():
        return TrialInfo("pending")
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return TrialInfo("corrupt", None, [f"{path}: unreadable ({type(e).__name__}: {e})"])
    if not isinstance(rec, dict) or any(k not in rec for k in _NEEDED):
        missing = [k for k in _NEEDED if not isinstance(rec, dict) or k not in rec]
        return TrialInfo("corrupt", None, [f"{path}: missing {', '.join(missing)}"])
    info = TrialInfo(rec["status"] if rec["status"] in STATUSES else "corrupt", rec)
    if info.state == "running" and not alive(tdir):
        info.state = "interrupted"  # rerunning the study resumes it from its checkpoint
    if info.state == "corrupt":
        info.problems.append(f"{path}: unknown status {rec['status']!r}")
    if rec["name"] != tdir.name:
        info.state = "mismatch"
        info.problems.append(f"{path}: names trial {rec['name']!r}, not its folder {tdir.name!r}")
    if is_legacy(rec):
        info.problems.append(f"{path}: old layout; run `scalelab migrate {tdir.parent.parent}`")
        return info
    if spec_hash(rec["spec"]) != rec["content_hash"]:
        info.state = "mismatch"
        info.problems.append(
            f"{path}: its spec does not hash to its content_hash {rec['content_hash']!r} "
            "(edited by hand?); rerunning the study retrains it"
        )
    elif expected_hash is not None and rec["content_hash"] != expected_hash:
        info.state = "mismatch"
        info.problems.append(
            f"{path}: content hash {rec['content_hash']} is not the study's {expected_hash} "
            "(the spec changed); rerunning the study retrains it"
        )
    return info


def alive(tdir: Path, now: float | None = None) -> bool:
    """True while the trial's process touches its heartbeat (lease LEASE_S)."""
    import time

    try:
        age = (time.time() if now is None else now) - (Path(tdir) / HEARTBEAT).stat().st_mtime
    except OSError:
        return False
    return age < LEASE_S


def is_done(tdir: Path, content_hash: str) -> bool:
    """Finished marker: a trustworthy trial.json with a final status and this content hash."""
    info = inspect(tdir, content_hash)
    return info.state in STATUS_DONE and not info.problems
