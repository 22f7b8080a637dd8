"""Time `scalelaws.write_report` (what `scalelab report` runs) on a synthetic 300-trial study.

    .venv/bin/python bench/report.py [--trials 300] [--steps 2000] [--out DIR]

The study: model.size (5) x schedule (4) x optim.lr (3) x seed (5) = 300 trials, runs rows
built by scalelab.results.run_row from trial records (the real schema, grid columns and all),
one curve row every 10 steps (an eval every 20) whose eval loss follows the multi-power law
with a per-size offset; then an MPL fit on three curves and a schedule proposal, as a study's
hook would write them. Only the report is timed. Goal: under 10 s.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

import scalelaws as sl
from scalelab import launch, results
from scalelab.config import RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec, expand
from scalelaws.multipower import law as mp

PARAMS = dict(L0=2.3747, A=0.6542, alpha=0.4288, B=523.42, C=2.0246, beta=0.5935, gamma=0.6347)
SIZES = {"50K": 0.30, "150K": 0.20, "500K": 0.12, "1M": 0.06, "2M": 0.0}  # loss offsets
WARMUP = 100


def make_study(root: Path, steps: int, n_trials: int) -> Path:
    schedules = [
        ScheduleSpec("constant", WARMUP),
        ScheduleSpec("cosine", WARMUP, {"final_lr": 1e-4}),
        ScheduleSpec("wsdcon", WARMUP, {"drop_step": steps // 2, "value": 3e-4}),
        ScheduleSpec("wsd", WARMUP, {"decay_frac": 0.2, "shape": "linear", "final_lr": 1e-4}),
    ]
    grid = {
        "model.size": list(SIZES),
        "schedule": schedules,
        "optim.lr": [5e-4, 1e-3, 2e-3],
        "seed": [0, 1, 2, 3, 4],
    }
    base = TrialSpec(total_steps=steps, batch_size=16, seq_len=64)
    spec = SweepSpec("bench_report", base, run=RunConfig(eval_every=20, log_every=10), grid=grid)
    trials = expand(spec)[:n_trials]
    rng = np.random.default_rng(0)
    runs, curves = [], []
    logged = np.arange(10, steps + 1, 10)
    for t in trials:
        s = t.spec
        lr = s.lr_array()
        loss = mp.predict(PARAMS, lr * 1e-3 / s.optim.lr, logged) + SIZES[s.model.size]
        loss = loss + rng.normal(0, 0.003, loss.size) + 0.02 * abs(np.log(s.optim.lr / 1e-3))
        ev = np.where(logged % 20 == 0, loss, np.nan)
        final = float(loss[-1])
        rec = {
            "name": t.name,
            "study": s.study,
            "status": "completed",
            "content_hash": t.content_hash(),
            "spec": s.to_dict(),
            "run": t.run.to_dict(),
            "grid": s.grid,
            "params": {"non_embedding": 1000, "total": 2000},
            "steps_done": steps,
            "final_eval_loss": final,
            "best_eval_loss": float(loss.min()),
            "final_train_loss": final,
            "wall_s": 60.0,
        }
        runs.append(results.run_row(rec))
        curves.append(
            pl.DataFrame(
                {
                    "trial": t.name,
                    "step": logged,
                    "tokens": logged * 1024,
                    "lr": lr[logged - 1],
                    "train_loss": loss,
                    "eval_loss": ev,
                }
            ).with_columns(pl.col("eval_loss").fill_nan(None))
        )
    root.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(runs, infer_schema_length=None).write_parquet(root / "runs.parquet")
    pl.concat(curves).write_parquet(root / "curves.parquet")
    launch.write_study_json(root, spec, trials)
    return root


def add_fits(root: Path, steps: int) -> None:
    """The MPL fit on one (size, lr, seed)'s constant/cosine/wsdcon curves, WSD held out, and the
    schedule proposal: mpl_fit.json and proposed_schedule.json, as a hook writes them."""
    study = sl.load_study(root)
    one = study.curves.filter(
        (pl.col("grid.model.size") == "2M") & (pl.col("grid.optim.lr") == 1e-3)
    ).filter(pl.col("grid.seed") == 0)
    fit_rows = one.filter(pl.col("grid.schedule.name").is_in(["constant", "cosine", "wsdcon"]))
    test_rows = one.filter(pl.col("grid.schedule.name") == "wsd")
    fit = sl.fit_multipower(fit_rows, test=test_rows, study=study, n_boot=10)
    fit.to_json(root / "mpl_fit.json")
    sl.propose_schedule(fit, steps, 1e-3, warmup_steps=WARMUP).to_json(
        root / "proposed_schedule.json"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=None, help="keep the study here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp) / "bench_report"
        t0 = time.perf_counter()
        make_study(root, args.steps, args.trials)
        add_fits(root, args.steps)
        print(f"study built in {time.perf_counter() - t0:.1f} s -> {root}")
        study = sl.load_study(root)
        times = []
        for _ in range(2):  # the first call also imports matplotlib
            t0 = time.perf_counter()
            path = sl.write_report(root)
            times.append(time.perf_counter() - t0)
        keys = sl.grid_keys(study)
        print(
            f"report of {study.runs.height} trials ({study.curves.height:,} curve rows, "
            f"{len(keys)} grid keys, {len(sl.find_results(root))} results): "
            f"{times[0]:.2f} s cold, {times[1]:.2f} s warm, {path.stat().st_size / 1e6:.1f} MB "
            f"(goal < 10 s)"
        )
        for label, n in itertools.islice(sl.status_counts(study).items(), 3):
            print(f"  {label}: {n}")


if __name__ == "__main__":
    main()
