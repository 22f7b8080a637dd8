"""Study state from the trial folders: the live view during a run and `scalelab status`."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live as RichLive
from rich.progress_bar import ProgressBar
from rich.table import Table

from scalelab import files

STATES = ("completed", "diverged", "stopped", "failed", "running", "pending")


def trial_state(tdir: Path) -> dict:
    """{state, step, total, loss} of one trial folder, from trial.json / progress.json."""
    try:
        rec = files.read_json(tdir / "trial.json")
        spec = rec.get("spec", {})
        if rec["status"] == "running":
            raise KeyError("running: read progress.json")
        return {
            "state": rec["status"],
            "step": rec.get("steps_done", 0),
            "total": spec.get("total_steps", 0),
            "loss": rec.get("final_eval_loss"),
            "error": rec.get("error"),
        }
    except (OSError, ValueError, KeyError):
        pass
    try:
        p = files.read_json(tdir / "progress.json")
        return {
            "state": "running",
            "step": p["step"],
            "total": p["total_steps"],
            "loss": p.get("eval_loss") or p.get("train_loss"),
            "error": None,
        }
    except (OSError, ValueError, KeyError):
        return {"state": "pending", "step": 0, "total": 0, "loss": None, "error": None}


def scan(root: Path, names: list[str] | None = None) -> dict[str, dict]:
    """State of every trial of a study (names from study.json unless given)."""
    root = Path(root)
    if names is None:
        try:
            names = [t["name"] for t in files.read_json(root / "study.json")["trials"]]
        except (OSError, ValueError, KeyError):
            names = sorted(p.name for p in (root / "trials").glob("*") if p.is_dir())
    return {n: trial_state(root / "trials" / n) for n in names}


def table(states: dict[str, dict], title: str, show: str = "active") -> Group:
    counts = {s: sum(v["state"] == s for v in states.values()) for s in STATES}
    head = "  ".join(f"{s}: {counts[s]}" for s in STATES if counts[s] or s == "completed")
    t = Table(title=f"{title}  ({len(states)} trials)  {head}", expand=False)
    for col in ("trial", "state", "progress", "step", "loss"):
        t.add_column(col)
    for name, v in states.items():
        if show == "active" and v["state"] not in ("running", "failed", "diverged"):
            continue
        total = max(v["total"], 1)
        t.add_row(
            name,
            v["state"],
            ProgressBar(total=total, completed=v["step"], width=24),
            f"{v['step']}/{v['total']}",
            "" if v["loss"] is None else f"{v['loss']:.4f}",
        )
    return Group(t)


class Live:
    """Redraws a table of running trials about once a second while Tune runs."""

    def __init__(self, root: Path, trials, concurrency: int):
        self.root, self.names, self.n = Path(root), [t.name for t in trials], concurrency

    def loop(self, stop) -> None:
        console = Console()
        title = f"{self.root.name}: up to {self.n} at once"
        with RichLive(console=console, refresh_per_second=2, transient=False) as live:
            while not stop.is_set():
                live.update(table(scan(self.root, self.names), title))
                time.sleep(1.0)
            live.update(table(scan(self.root, self.names), title))
