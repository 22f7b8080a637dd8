"""Hundreds of short trials: is the platform's cost near zero next to the training?

    .venv/bin/python bench/sweep_scale.py [--trials 300] [--steps 300] [--wandb offline]

300 trials of a 6K-parameter GPT (lr × schedule × seeds), each ~1.5 s of training on one core
(300 steps), with W&B offline (the default mode). Baseline: the same trials trained one after
another in this process (warm: torch, data and W&B already loaded; half of them before the
study, half after, against this VM's drift), divided by the slots Ray runs at once. A second reference splits them over that many plain processes (no Ray): what
running at once costs on this machine without any platform.

    ratio = wall(study on local Ray) / (wall(in-process, sequential) / slots)   (goal <= 1.15)

and where the rest goes: training inside the trial actors (from each trial.json's wall_s),
set-up before the first trial, gaps between trials, and the end (collect, summary). Then the
no-op rerun's wall time (goal < 2 s) and the bytes each trial leaves (W&B vs curve).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = """
from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec

SPEC = SweepSpec(
    "scale",
    TrialSpec(model=ModelSpec("6K"), data=DataSpec("pcfg"), batch_size=8, seq_len=32,
              total_steps={steps}, eval_batch_size=16),
    grid={{"optim.lr": [1e-3, 3e-3, 1e-2], "schedule": [ScheduleSpec("constant", 4),
          ScheduleSpec("cosine", 4, {{"final_lr": 1e-4}})], "seed": list(range({seeds}))}},
    run=RunConfig(eval_every=10, noise_every=0, cpus_per_worker=1),
)
"""


def sequential(trials: list, out: Path, wandb_mode: str | None, barrier=None, warm=None) -> float:
    """The trials one after another in this process, warm (after one untimed trial, `warm` or
    the first: imports, data, W&B service); `barrier`: wait there before the clock starts."""
    from scalelab.train import train

    first = warm or trials[0]
    train(first, out / f"warm-{first.name}", wandb_mode=wandb_mode)
    if barrier is not None:
        barrier.wait()
    t = time.perf_counter()
    for trial in trials:
        train(trial, out / trial.name, wandb_mode=wandb_mode)
    return time.perf_counter() - t


def _worker(trials, out, wandb_mode, part, barrier, warm, times) -> None:
    times[part] = sequential(trials, out, wandb_mode, barrier, warm)


def parallel(trials: list, out: Path, wandb_mode: str | None, slots: int, warm=None) -> float:
    """The same trials split over `slots` plain processes (no Ray, warm, no orchestration): what
    the cores give when they run at once (shared caches, memory bandwidth, W&B's own process)."""
    ctx = mp.get_context("spawn")
    barrier, times = ctx.Barrier(slots), ctx.Array("d", slots)
    procs = [
        ctx.Process(
            target=_worker, args=(trials[i::slots], out, wandb_mode, i, barrier, warm, times)
        )
        for i in range(slots)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise SystemExit("a plain process failed: see its output above")
    return max(times)


def run_study(study: Path, storage: Path, wandb: bool) -> None:
    """`scalelab run` of the study in a fresh process (its own local Ray), W&B offline or off;
    one thread per process, as Ray gives each one-CPU trial runner."""
    wait_study(start_study(study, storage, wandb))


def start_study(
    study: Path, storage: Path, wandb: bool, core: int | None = None
) -> subprocess.Popen:
    """run_study without waiting (wait_study); `core`: the study and every process it starts
    (its Ray, trial runners, W&B services) on that one core, one trial at a time. Its output
    goes to <storage>.log."""
    cmd = [sys.executable, "-m", "scalelab.cli", "run", str(study), "--storage", str(storage),
           "--no-progress"] + ([] if wandb else ["--no-wandb"])  # fmt: skip
    if core is not None:
        cmd += ["--max-concurrent", "1"]
    with open(f"{storage}.log", "w") as log:  # the child keeps its own copy
        return subprocess.Popen(
            cmd,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=None if core is None else lambda: os.sched_setaffinity(0, {core}),
        )


def wait_study(proc: subprocess.Popen) -> None:
    if proc.wait():
        log = proc.args[proc.args.index("--storage") + 1] + ".log"
        raise SystemExit(f"the study failed (exit {proc.returncode}): see {log}")


def timeline(root: Path, started: float, exited: float, slots: int = 1) -> dict[str, float]:
    """A study's phases in seconds, from its trial.json files: set-up before the first trial,
    training (the trials' wall_s over the slots that ran them at once), gaps between trials,
    the end after the last; trial_s: the trials' wall_s summed."""
    recs = [json.loads(p.read_text()) for p in Path(root).glob("trials/*/trial.json")]
    first = min(r["finished_at"] - r["wall_s"] for r in recs)
    last = max(r["finished_at"] for r in recs)
    trial_s = sum(r["wall_s"] for r in recs)
    return {
        "wall": exited - started,
        "set-up": first - started,
        "training": trial_s / slots,
        "gaps": last - first - trial_s / slots,
        "end": exited - last,
        "trial_s": trial_s,
    }


def main() -> None:
    from scalelab.study import load
    from scalelab.sweep import expand

    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--wandb", default="offline", choices=["offline", "disabled"])
    ap.add_argument("--keep", help="write the studies here and keep them (default: a temp dir)")
    a = ap.parse_args()
    seeds = max(1, a.trials // 6)
    slots = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as d:
        d = Path(a.keep or d)
        d.mkdir(parents=True, exist_ok=True)
        study = d / "scale.py"
        study.write_text(STUDY.format(steps=a.steps, seeds=seeds))
        mode = None if a.wandb == "disabled" else a.wandb
        # This VM's speed drifts by 10-30% between minutes: half the baseline runs before the
        # study and half after it, so a steady drift cancels (both halves are printed).
        trials = expand(load(study).SPEC)
        halves = trials[0::2], trials[1::2]
        before = sequential(halves[0], d / "plain", mode)
        t, launched = time.perf_counter(), time.time()
        run_study(study, d / "ray", a.wandb == "offline")
        wall = time.perf_counter() - t
        after = sequential(halves[1], d / "plain", mode)
        (n0, n1), n = map(len, halves), len(trials)
        plain = before + after
        ideal = plain / slots
        together = parallel(trials, d / "par", mode, slots)
        tl = timeline(d / "ray", launched, launched + wall, slots)
        t = time.perf_counter()
        run_study(study, d / "ray", a.wandb == "offline")
        rerun = time.perf_counter() - t
        per_trial = {"wandb": 0, "curve": 0, "other": 0}
        for folder, _, names in os.walk(d / "ray" / "trials"):  # W&B's symlinks not followed
            for name in names:
                p = Path(folder, name)
                if p.is_symlink():
                    continue
                kind = (
                    "wandb"
                    if "wandb" in p.parts
                    else "curve"
                    if name == "curve.parquet"
                    else "other"
                )
                per_trial[kind] += p.stat().st_size
    print(f"{n} trials of {a.steps} steps, W&B {a.wandb}, {slots} slots")
    print(f"in-process, sequential (warm): {plain:7.1f}s ({plain / n:.2f}s per trial: "
          f"{before / n0:.2f}s before the study, {after / n1:.2f}s after)")  # fmt: skip
    print(f"ideal with {slots} at once:        {ideal:7.1f}s")
    print(f"{slots} plain processes, no Ray:     {together:7.1f}s  ratio {together / ideal:.3f}"
          " (what running at once costs without any platform)")  # fmt: skip
    print(f"study on local Ray:            {wall:7.1f}s  ratio {wall / ideal:.3f} (goal <= 1.15),"
          f" {wall / together:.3f} vs {slots} plain processes")  # fmt: skip
    print(
        f"  training inside the actors {tl['training']:.1f}s ({tl['trial_s'] / n:.2f}s "
        f"per trial, {tl['trial_s'] / plain - 1:+.1%} vs in-process); "
        f"set-up before the first trial {tl['set-up']:.1f}s; gaps between trials "
        f"{tl['gaps']:.1f}s; after the last {tl['end']:.1f}s"
    )
    print(f"no-op rerun: {rerun:.2f}s (goal < 2 s)")
    print(
        "bytes per trial: " + ", ".join(f"{k} {v / n / 1024:.1f} KB" for k, v in per_trial.items())
    )


if __name__ == "__main__":
    main()
