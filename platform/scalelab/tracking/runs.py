"""Rank-0 tracking: Weights & Biases (offline by default) and a live progress.json.

Under Ray Train V2 `setup_wandb(rank_zero_only=True)` opens a run on every rank, so the trainer
creates a Tracker on world rank 0 only and calls wandb.init itself.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from pathlib import Path

from scalelab import files

# What a trial's W&B run leaves out, so W&B costs little next to short trials: the system
# monitor (a `wandb-symon` process per run), the environment snapshot (a requirements.txt
# copy per trial), code and git capture, job creation and console capture. The curve, config
# and summary are all there. The W&B service itself is started once per trial runner process
# and reused by every trial it runs (Ray reuses the actors).
LEAN = dict(
    x_disable_stats=True,
    x_disable_meta=True,
    x_save_requirements=False,
    save_code=False,
    disable_git=True,
    disable_job_creation=True,
    console="off",
)


# Rows are handed to W&B in bursts, at most this many seconds apart and at the end: each
# run.log is a round trip to W&B's service thread, and ~70 of them between the training
# steps of a 1-s trial cost it ~12% (bench/wandb_cost.py); in one burst, with the eval-aligned
# cadence below, W&B costs it ~3%.
FLUSH_S = 30.0


class Tracker:
    """W&B for one trial (rank 0). `replay`: the curve rows a resumed trial already has. Offline,
    W&B cannot append to a run file, so the earlier offline run of this trial is replaced by
    one run (the same id) that logs the replayed rows, then the new ones: one run per trial.
    The run opens at once (a bad W&B set-up fails the trial before it trains); its history
    rows wait in `pending` until the next flush (every FLUSH_S seconds, and at the end)."""

    def __init__(self, trial, out: Path, wandb_mode: str | None, replay: list[dict] = ()):
        self.out, self.run, self._last = Path(out), None, 0.0
        self.pending, self._flushed = [], time.monotonic()
        spec = trial.spec
        self.every, self.last_step = wandb_cadence(trial), spec.total_steps
        if wandb_on(wandb_mode):
            wandb = wandb_session(wandb_mode)
            if wandb_mode == "offline":
                for old in (self.out / "wandb").glob(f"offline-run-*-{_run_id(spec)}"):
                    shutil.rmtree(old, ignore_errors=True)
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "scalelab"),
                group=spec.study or None,
                name=spec.name,
                id=_run_id(spec),
                # grid keys at the top level: W&B's parallel coordinates work across the group
                config={
                    **grid_config(spec.grid),
                    "spec": spec.to_dict(),
                    "run": trial.run.to_dict(),
                },
                job_type="trial",
                dir=str(self.out),
                mode=wandb_mode,
                resume="allow",
                reinit="finish_previous",
                settings=wandb.Settings(**LEAN),
            )
            for row in replay:
                self.log(row)

    def log(self, row: dict) -> None:
        step = row["step"]
        if self.run is None:
            return
        if step % self.every == 0 or row.get("eval_loss") is not None or step == self.last_step:
            self.pending.append({k: v for k, v in row.items() if v is not None})
        if time.monotonic() - self._flushed >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        for row in self.pending:
            self.run.log(row, step=row["step"])
        self.pending.clear()
        self._flushed = time.monotonic()

    def progress(self, step: int, total: int, row: dict, every_s: float = 2.0) -> None:
        now = time.time()
        if now - self._last >= every_s or step == total:
            self._last = now
            files.write_json(
                self.out / "progress.json",
                {
                    "step": step,
                    "total_steps": total,
                    "train_loss": row["train_loss"],
                    "eval_loss": row["eval_loss"],
                    "time": now,
                },
            )

    def finish(self, record: dict) -> None:
        if self.run is not None:
            self.flush()
            # one update, no None: W&B would import pandas (~0.4 s) to check what None is
            keys = ("status", "final_eval_loss", "best_eval_loss", "wall_s")
            self.run.summary.update({k: record[k] for k in keys if record.get(k) is not None})
            self.run.finish(exit_code=0 if record["status"] != "failed" else 1)


def wandb_session(mode: str):
    """W&B for this process, quiet, in `mode`; returns the wandb module. Setting the mode
    process-wide keeps W&B's own usage telemetry off in offline mode, as WANDB_MODE does
    (otherwise OpenTelemetry: ~110 modules to import, ~0.1 ms per run.log). It starts this
    process's W&B service, which sets WANDB_SERVICE in os.environ: not while Ray starts."""
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    wandb.setup(wandb.Settings(mode=mode))
    return wandb


def wandb_on(mode: str | None) -> bool:
    """W&B is on in this mode ("offline", "online"); None, "" and "disabled" are off."""
    return bool(mode) and mode != "disabled"


def wandb_cadence(trial) -> int:
    """Steps between the W&B history rows of a trial (every eval row and the last are logged
    too): a multiple of the curve's cadence that keeps them to `run.wandb_rows`, 1 if 0.
    Where it can, up to twice as coarse, it falls on the eval steps, so the eval rows are among
    the evenly spaced ones instead of extra rows beside them:
        250 steps, 50 rows, evals every 20:  every 5th step (50 rows, the evals among them)
        300 steps, 50 rows, evals every 10:  6 would do, 10 is taken (30 rows, all evals)
        1000 steps, 50 rows, evals every 7:  20 would do, 21 is taken (48 rows, all on evals)
    """
    rows, log, ev = trial.run.wandb_rows, trial.run.log_every, trial.run.eval_every
    if rows <= 0:
        return 1
    need = log * math.ceil(trial.spec.total_steps / log / rows)
    # a divisor of the eval cadence (every eval step among the rows), else a multiple of it
    divisors = [d for d in range(need, min(ev, 2 * need) + 1, log) if ev % d == 0]
    if divisors:
        return divisors[0]
    base = math.lcm(log, ev)  # the steps that hold both a curve row and an eval
    on_evals = base * math.ceil(need / base)
    return on_evals if on_evals <= 2 * need else need


def grid_config(point: dict) -> dict:
    """The grid point as W&B config: a dotted key nested (`model.size` -> {"model": {"size": v}},
    which W&B shows and addresses as `model.size`, like its own nested config), a structured
    value (a schedule) as its label, `cosine(final_lr=0.0003)`, as in the runs table's
    `grid.<key>` column. A key that cannot nest (its parent is a value) stays flat."""
    from scalelab.results import grid_columns

    out: dict = {}
    for col, value in grid_columns(point).items():
        key = col.removeprefix("grid.")
        if key not in point:  # a field of a structured value: its label stands for it
            continue
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                out[key] = value
                break
        else:
            node[leaf] = value
    return out


def _run_id(spec) -> str:
    """Stable W&B run id, so a resumed trial continues the same run."""
    raw = f"{spec.study or 'trial'}-{spec.name}-{spec.content_hash()}"
    return re.sub(r"[^A-Za-z0-9_-]", "_", raw)[:128]
