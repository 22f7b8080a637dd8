"""Orchestration efficiency: 16 short trials on a local Ray against the same trials run one
after another in this process without Ray, divided by the concurrency.

    .venv/bin/python bench/sweep_overhead.py [--trials 16] [--steps 800]

overhead = wall(Ray) / (wall(in-process) / concurrency) - 1     (goal <= 15% for ~20 s trials)
The default steps give trials of ~20 s of a 150K-parameter model on one core. It also splits
the Ray wall time into training (train() inside the trial actors, from each trial.json) and the
rest (ray.init, Tuner set-up, actor start-up, scheduling gaps, the final collect).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

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
        t = time.perf_counter()
        for trial in trials:
            train(trial, Path(d) / "plain" / trial.name)
        plain = time.perf_counter() - t
        t = time.perf_counter()
        launch.run(
            spec,
            storage=str(Path(d) / "ray"),
            wandb_mode=None,
            show_progress=False,
            max_concurrent=concurrency,
        )
        ray_wall = time.perf_counter() - t
        inside = [
            json.loads((Path(d) / "ray" / "trials" / x.name / "trial.json").read_text())["wall_s"]
            for x in trials
        ]
    ideal = plain / concurrency
    print(f"{a.trials} trials of {a.steps} steps ({plain / a.trials:.1f}s each in-process)")
    print(
        f"in-process, sequential: {plain:7.1f}s  -> ideal with {concurrency} at once: {ideal:.1f}s"
    )
    print(f"local Ray, {concurrency} at once:   {ray_wall:7.1f}s")
    busy = sum(inside) / concurrency
    print(
        f"  of which training itself (train() inside the trial actors): {busy:.1f}s "
        f"({sum(inside) / a.trials:.1f}s per trial, {sum(inside) / plain - 1:+.1%} vs in-process);"
        f" set-up, scheduling and gaps: {ray_wall - busy:.1f}s"
    )
    print(f"orchestration overhead: {ray_wall / ideal - 1:+.1%} (goal <= 15%)")


if __name__ == "__main__":
    main()
