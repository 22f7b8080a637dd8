"""What a trial writes: the trial.json record, curve rows, live progress, W&B (rank 0 only).

    DIR/trial.json      spec, run, grid point, parameter counts, status, timings (README)
    DIR/curve.parquet   one row per logged step (files.CURVE_SCHEMA)
    DIR/progress.json   live step counter for `scalelab status` (throttled)
Every file is written atomically; only rank 0 writes, every rank keeps the same record.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from scalelab import files
from scalelab.config import Trial
from scalelab.status import FORMAT, HEARTBEAT, HEARTBEAT_S
from scalelab.tracking.runs import Tracker


def new_record(trial: Trial, **facts) -> dict:
    """The trial.json record of a trial that is starting ("running" until it ends)."""
    spec = trial.spec
    return {
        "format": FORMAT,
        "name": spec.name,
        "study": spec.study,
        "spec": spec.to_dict(),
        "run": trial.run.to_dict(),
        "grid": spec.grid,
        "content_hash": spec.content_hash(),
        "status": "running",
        **facts,
    }


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


class Heartbeat:
    """Touches DIR/heartbeat every HEARTBEAT_S seconds from a daemon thread while the trial
    runs: `status` calls a `running` trial whose heartbeat stopped `interrupted`."""

    def __init__(self, out: Path):
        self.path, self.stop = Path(out) / HEARTBEAT, threading.Event()
        touch(self.path)
        self.thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")
        self.thread.start()

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                touch(self.path)
            except OSError:
                pass  # a full or gone disk: the lease runs out, which is the truth

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class Recorder:
    def __init__(self, out: Path, record: dict, rank: int, t_start: float | None = None):
        self.out, self.record, self.rank = Path(out), record, rank
        self.rows: list[dict] = []
        self.t_start = time.time() if t_start is None else t_start
        self.tracker: Tracker | None = None
        self.heartbeat = Heartbeat(self.out) if rank == 0 else None

    @property
    def writes(self) -> bool:
        return self.rank == 0

    def start(self, trial: Trial, wandb_mode: str | None) -> None:
        """Open W&B and write the "running" trial.json (rank 0)."""
        if self.writes:
            self.tracker = Tracker(trial, self.out, wandb_mode, replay=self.rows)
            files.write_json(self.out / "trial.json", self.record)

    def add(self, row: dict, total_steps: int) -> None:
        self.rows.append(row)
        if self.writes and self.tracker is not None:
            self.tracker.log(row)
            self.tracker.progress(row["step"], total_steps, row)

    def flush_curve(self) -> None:
        if self.writes:
            files.write_parquet(self.out / "curve.parquet", files.curve_frame(self.rows))

    def finish(self, status: str, error: str | None, diverged_step: int | None = None) -> dict:
        """Fill in the record on every rank; rank 0 writes curve.parquet, then trial.json."""
        rows = self.rows
        evals = [r["eval_loss"] for r in rows if r["eval_loss"] is not None]
        self.record.update(
            status=status,
            error=error,
            diverged_step=diverged_step,
            steps_done=rows[-1]["step"] if rows else 0,
            tokens_seen=rows[-1]["tokens"] if rows else 0,
            final_train_loss=rows[-1]["train_loss"] if rows else None,
            final_eval_loss=evals[-1] if evals else None,
            best_eval_loss=min(evals) if evals else None,
            wall_s=time.time() - self.t_start,
            finished_at=time.time(),
        )
        if self.writes:
            self.flush_curve()
            files.write_json(self.out / "trial.json", self.record)
            if self.tracker is not None:
                self.tracker.finish(self.record)
        self.close()
        return self.record

    def close(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.close()
            self.heartbeat = None
