"""Orchestration efficiency: 16 short trials on a local Ray against the same trials run one
after another in this process without Ray, divided by the concurrency.

    .venv/bin/python bench/sweep_overhead.py [--trials 16] [--steps 800]

overhead = wall(Ray) / (wall(in-process) / concurrency) - 1     (goal <= 5% for ~20 s trials)

A second reference trains the same trials in `concurrency` plain processes at once (no Ray, no
orchestration; sweep_scale.parallel): what running them at once costs on this machine by
itself (shared caches, memory bandwidth), which the first ratio counts as overhead too.

The default steps give trials of ~20 s of a 150K-parameter model on one core. Half of the
in-process trials run before the study and half after it (this VM's speed drifts between
minutes). It also splits the Ray wall time into training (train() inside the trial actors, from
each trial.json), the fixed set-up before the first trial starts (import, ray.init, Tune, actor
start, torch import), the gaps between trials, and the end (Tune's last round trip, stopping
Ray, the final collect).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch
from sweep_scale import parallel, timeline  # bench/ is on sys.path

from scalelab import launch
from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec, expand
from scalelab.train import train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--size", default="150K")
    a = ap.parse_args()
    # One thread per trial everywhere, as Ray gives each one-CPU trial runner (OMP_NUM_THREADS=1):
    # torch's default (a thread per core) would make the in-process baseline a 2-core one.
    os.environ["OMP_NUM_THREADS"] = "1"  # the plain processes and Ray's workers
    torch.set_num_threads(1)  # this process (torch is already imported)
    base = TrialSpec(
        model=ModelSpec(a.size),
        optim=OptimSpec(lr=3e-3),
        data=DataSpec("pcfg"),
        schedule=ScheduleSpec("cosine", 20),
        batch_size=16,
        seq_len=64,
        total_steps=a.steps,
        eval_batch_size=32,
    )
    spec = SweepSpec(
        "overhead", base, grid={"seed": list(range(a.trials))}, run=RunConfig(eval_every=50)
    )
    trials = expand(spec)
    concurrency = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as d:

        def sequential(part: list) -> float:
            t = time.perf_counter()
            for trial in part:
                train(trial, Path(d) / "plain" / trial.name)
            return time.perf_counter() - t

        half = len(trials) // 2
        before = sequential(trials[:half])
        t, launched = time.perf_counter(), time.time()
        launch.run(
            spec,
            storage=str(Path(d) / "ray"),
            wandb_mode=None,
            show_progress=False,
            max_concurrent=concurrency,
        )
        ray_wall = time.perf_counter() - t
        after = sequential(trials[half:])
        tl = timeline(Path(d) / "ray", launched, launched + ray_wall, concurrency)
        # warmed by a 40-step trial each: imports and data, not a whole untimed trial
        warm = dataclasses.replace(
            trials[0], spec=dataclasses.replace(trials[0].spec, total_steps=40)
        )
        together = parallel(trials, Path(d) / "par", None, concurrency, warm=warm)
    plain = before + after
    ideal = plain / concurrency
    print(f"{a.trials} trials of {a.steps} steps ({plain / a.trials:.1f}s each in-process)")
    print(
        f"in-process, sequential: {plain:7.1f}s ({before / half:.1f}s per trial before the "
        f"study, {after / (len(trials) - half):.1f}s after) -> ideal with {concurrency} at once: "
        f"{ideal:.1f}s"
    )
    print(
        f"{concurrency} plain processes, no Ray: {together:7.1f}s -> {together / ideal - 1:+.1%} "
        "(running at once on this machine, without any platform)"
    )
    print(f"local Ray, {concurrency} at once:   {ray_wall:7.1f}s")
    print(
        f"  training inside the trial actors: {tl['training']:.1f}s ({tl['trial_s'] / a.trials:.1f}s"
        f" per trial, {tl['trial_s'] / plain - 1:+.1%} vs in-process: {concurrency} at once on "
        f"{concurrency} cores); set-up before the first trial {tl['set-up']:.1f}s; gaps "
        f"{tl['gaps']:.1f}s; end {tl['end']:.1f}s"
    )
    fixed = ray_wall - tl["training"]
    print(
        f"orchestration overhead: {ray_wall / ideal - 1:+.1%} (goal <= 5%), "
        f"{ray_wall / together - 1:+.1%} vs {concurrency} plain processes; the platform's own "
        f"part (everything but training): {fixed:.1f}s = {fixed / ideal:.1%} of the ideal"
    )


if __name__ == "__main__":
    main()
