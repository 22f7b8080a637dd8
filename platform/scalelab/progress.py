"""Live progress: a study's state from its trial folders (the live view during a run and
`scalelab status`), and progress bars for long analyses run from the CLI (`shown`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live as RichLive
from rich.progress_bar import ProgressBar
from rich.table import Table

# The study-state modules read trial folders with polars: imported where used, so that
# `shown` (which `scalelab` enters for every command, --help included) stays cheap.


def trial_state(tdir: Path, expected_hash: str | None = None) -> dict:
    """{state, step, total, loss, error} of one trial folder (status.inspect, then the live
    progress.json of a running trial)."""
    from scalelab import files, status

    info = status.inspect(tdir, expected_hash)
    rec = info.record or {}
    out = {
        "state": info.state,
        "step": rec.get("steps_done") or 0,
        "total": (rec.get("spec") or {}).get("total_steps", 0),
        "loss": rec.get("final_eval_loss"),
        "error": "; ".join(info.problems) or rec.get("error"),
    }
    if info.state in ("running", "interrupted", "pending"):
        try:
            p = files.read_json(tdir / "progress.json")
            out.update(step=p["step"], total=p["total_steps"])
            out["loss"] = p.get("eval_loss") or p.get("train_loss")
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if info.state == "pending" and status.alive(tdir):
            out["state"] = "running"  # started, still building its model and data
    return out


def scan(root: Path, names: list[str] | None = None) -> dict[str, dict]:
    """State of every trial of a study (names and expected hashes from study.json unless
    names are given)."""
    from scalelab import files

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


ACTIVE = ("running", "interrupted", "failed", "corrupt", "mismatch")


def table(states: dict[str, dict], title: str, show: str = "active") -> Group:
    from scalelab.status import STATES
    from scalelab.summary import short_names

    counts = {s: sum(v["state"] == s for v in states.values()) for s in STATES}
    head = "  ".join(f"{s}: {counts[s]}" for s in STATES if counts[s] or s == "completed")
    t = Table(title=f"{title}  ({len(states)} trials)  {head}", expand=False)
    for col in ("trial", "state", "progress", "step", "loss"):
        t.add_column(col)
    short = short_names(list(states))
    for name, v in states.items():
        if show == "active" and v["state"] not in ACTIVE:
            continue
        total = max(v["total"], 1)
        t.add_row(
            short[name],
            v["state"],
            ProgressBar(total=total, completed=v["step"], width=16),
            f"{v['step']}/{v['total']}",
            "" if v["loss"] is None else f"{v['loss']:.4f}",
        )
    return Group(t)


def rate_line(states: dict[str, dict], t0: float, done0: int, now: float | None = None) -> str:
    """`running 2, done 14/300 (completed 13, failed 1), pending 284; 3.1 trials/min, ETA 1h32m`:
    the rate counts trials finished since this run started (t0, with done0 already done)."""
    from scalelab.status import FINISHED, STATES

    now = time.time() if now is None else now
    n = {s: sum(v["state"] == s for v in states.values()) for s in STATES}
    finished = sum(n[s] for s in FINISHED)
    parts = ", ".join(f"{s} {n[s]}" for s in FINISHED if n[s])
    line = (
        f"running {n['running']}, done {finished}/{len(states)}"
        + (f" ({parts})" if parts else "")
        + f", pending {n['pending'] + n['interrupted']}"
    )
    new, minutes = finished - done0, (now - t0) / 60
    if new > 0 and minutes > 0:
        rate = new / minutes
        left = (len(states) - finished) / rate
        line += f"; {rate:.1f} trials/min, ETA {_duration(left * 60)}"
    return line


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Live:
    """While Tune runs: on a terminal, a table of running trials redrawn every second under a
    line of counts, rate and ETA; to a file or CI log, that line alone every 30 s."""

    def __init__(self, root: Path, trials, concurrency: int, every_s: float = 30.0):
        self.root, self.names, self.n = Path(root), [t.name for t in trials], concurrency
        self.every_s = every_s

    def loop(self, stop) -> None:
        import sys

        from scalelab.status import FINISHED

        t0 = time.time()
        done0 = sum(v["state"] in FINISHED for v in scan(self.root, self.names).values())
        if not sys.stdout.isatty():
            last = 0.0
            while not stop.wait(1.0):
                if time.time() - last >= self.every_s:
                    last = time.time()
                    print(rate_line(scan(self.root, self.names), t0, done0), flush=True)
            print(rate_line(scan(self.root, self.names), t0, done0), flush=True)
            return
        title = f"{self.root.name}: up to {self.n} at once"
        with RichLive(console=Console(), refresh_per_second=2, transient=False) as live:
            while True:
                states = scan(self.root, self.names)
                live.update(Group(table(states, title), rate_line(states, t0, done0)))
                if stop.wait(1.0):
                    break


# Progress bars for long analyses run from the CLI (bootstrap refits, schedule optimisation).
# The library is quiet by default (scalelaws.core.progress); `scalelab` installs this reporter for
# every command, like the live table of a sweep: rich bars on a terminal, nothing otherwise.


@contextmanager
def shown(enabled: bool | None = None, console: Console | None = None) -> Iterator[None]:
    """Within the block, every long library step without its own `progress` gets a bar.
    enabled: default, when stderr is a terminal."""
    console = console or Console(stderr=True)
    if enabled is None:
        enabled = sys.stderr.isatty() and console.is_terminal
    if not enabled:
        yield
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    import scalelaws.core.progress as lib

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bars = Progress(*columns, console=console)
    started = False

    def factory(label: str):
        nonlocal started
        if not started:  # lazily: a sweep's live table may hold the terminal until then
            bars.start()
            started = True
        task = bars.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bars.update(task, completed=done, total=total)

        return update

    try:
        with lib.reporting(factory):
            yield
    finally:
        if started:
            bars.stop()
