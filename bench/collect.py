"""Time `results.collect` on 1,000 trials x 2,000 steps against reading Tune's own per-trial
result files (result.json: one JSON object per reported step) into one table.

    .venv/bin/python bench/collect.py [--trials 1000] [--steps 2000]

Both inputs are written first (same numbers); then each reader runs once. Goal: >= 5x faster.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from scalelab import files, results
from scalelab.config import Trial, TrialSpec
from scalelab.train.recorder import new_record


def make_study(root: Path, n_trials: int, n_steps: int) -> None:
    rng = np.random.default_rng(0)
    spec = TrialSpec(total_steps=n_steps)
    step = np.arange(1, n_steps + 1)
    for i in range(n_trials):
        d = root / "trials" / f"trial-{i:04d}"
        loss = 2.0 + 3.0 * step**-0.3 + rng.normal(0, 0.01, n_steps)
        rows = {
            "step": step,
            "tokens": step * 2048,
            "lr": np.full(n_steps, 3e-3),
            "train_loss": loss,
            "eval_loss": np.where(step % 10 == 0, loss, np.nan),
            "ewa_eval_loss": np.full(n_steps, np.nan),
            "grad_norm": rng.random(n_steps),
            "noise_scale": rng.random(n_steps) * 100,
            "tokens_per_s": np.full(n_steps, 1e4),
            "elapsed_s": step * 0.01,
        }
        df = pl.DataFrame(rows).cast(files.CURVE_SCHEMA).fill_nan(None)
        files.write_parquet(d / "curve.parquet", df)
        rec = new_record(Trial(dataclasses.replace(spec, name=d.name, grid={"seed": i})))
        rec |= {"status": "completed", "params": {"total": 1000, "non_embedding": 900}}
        files.write_json(d / "trial.json", rec | {"seq_len": 64, "steps_done": n_steps})
        with open(d / "result.json", "w") as f:  # what Tune writes per trial (JSON lines)
            for r in df.iter_rows(named=True):
                f.write(
                    json.dumps({**r, "trial_id": d.name, "training_iteration": r["step"]}) + "\n"
                )


def read_tune_results(root: Path) -> pl.DataFrame:
    """The usual hand-rolled reader of Tune's per-trial result.json files."""
    frames = []
    for path in sorted(root.glob("trials/*/result.json")):
        with open(path) as f:
            frames.append(pl.DataFrame([json.loads(line) for line in f]))
    return pl.concat(frames)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=2000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        t = time.perf_counter()
        make_study(root, a.trials, a.steps)
        print(f"wrote {a.trials} trials x {a.steps} steps in {time.perf_counter() - t:.1f}s")
        results.collect(root, write=False)  # warm the page cache for both readers
        t = time.perf_counter()
        runs, curves = results.collect(root)
        ours = time.perf_counter() - t
        assert runs.height == a.trials
        t = time.perf_counter()
        tune = read_tune_results(root)
        theirs = time.perf_counter() - t
        assert curves.height == tune.height == a.trials * a.steps
        print(f"scalelab collect (writes runs + curves): {ours:7.2f}s  {curves.height:,} rows")
        print(f"reading Tune result.json files:          {theirs:7.2f}s")
        print(f"ratio: {theirs / ours:.1f}x faster (goal >= 5x); collect goal < 1 s")


if __name__ == "__main__":
    main()
