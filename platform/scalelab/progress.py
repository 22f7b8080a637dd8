"""Study state from the trial folders: the live view during a run and `scalelab status`."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live as RichLive
from rich.progress_bar import ProgressBar
from rich.table import Table

from scalelab import files, status
from scalelab.status import STATES


def trial_state(tdir: Path, expected_hash: str | None = None) -> dict:
    """{state, step, total, loss, error} of one trial folder (status.inspect, then the live
    progress.json of a running trial)."""
    info = status.inspect(tdir, expected_hash)
    rec = info.record or {}
    out = {
        "state": info.state,
        "step": rec.get("steps_done") or 0,
        "total": (rec.get("spec") or {}).get("total_steps", 0),
        "loss": rec.get("final_eval_loss"),
        "error": "; ".join(info.problems) or rec.get("error"),
    }
    if info.state in ("running", "pending"):
        try:
            p = files.read_json(tdir / "progress.json")
            out.update(step=p["step"], total=p["total_steps"])
            out["loss"] = p.get("eval_loss") or p.get("train_loss")
            out["state"] = "running"
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return out


def scan(root: Path, names: list[str] | None = None) -> dict[str, dict]:
    """State of every trial of a study (names and expected hashes from study.json unless
    names are given)."""
    root = Path(root)
    expected: dict[str, str | None] = {}
    if names is None:
        try:
            for t in files.read_json(root / "study.json")["trials"]:
                expected[t["name"]] = t.get("content_hash")
        except (OSError, ValueError, KeyError, TypeError):
            expected = {p.name: None for p in sorted((root / "trials").glob("*")) if p.is_dir()}
    else:
        expected = dict.fromkeys(names)
    return {n: trial_state(root / "trials" / n, h) for n, h in expected.items()}


def table(states: dict[str, dict], title: str, show: str = "active") -> Group:
    counts = {s: sum(v["state"] == s for v in states.values()) for s in STATES}
    head = "  ".join(f"{s}: {counts[s]}" for s in STATES if counts[s] or s == "completed")
    t = Table(title=f"{title}  ({len(states)} trials)  {head}", expand=False)
    for col in ("trial", "state", "progress", "step", "loss"):
        t.add_column(col)
    for name, v in states.items():
        if show == "active" and v["state"] not in ("running", "failed", "corrupt", "mismatch"):
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
