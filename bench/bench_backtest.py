"""Coverage of the 90% prediction intervals on every public dataset (docs/analysis.md
"Prediction intervals and back-tests"), with the full bootstrap (20 refits per MPL split).

    .venv/bin/python bench/bench_backtest.py [--seeds 50]

Prints one line per dataset (coverage, held-out points, median / worst relative error,
diagnostics, seconds), then the synthetic known-law check of the CBS back-test over --seeds
seeds (the tests run 6).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

import scalelaws as sl

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
REF = REPO.parent / "shared" / "refdata"
sys.path.insert(0, str(REPO / "tests"))


def line(name: str, bt, t0: float) -> None:
    m = bt.metrics
    codes = ",".join(d.code for d in bt.diagnostics) or "-"
    print(f"{name:<34} coverage {m['coverage']:6.1%}  n {m['n_points']:5d}  median rel "
          f"{m['median_rel_error']:.3g}  worst {m['worst_rel_error']:.3g}  {codes}  "
          f"({time.time() - t0:.0f} s)")  # fmt: skip


def chin_lines(name: str, bt, t0: float) -> None:
    """A Chinchilla back-test per quantity (loss from approach 3, N_opt from approach 2)."""
    for q in dict.fromkeys(r["quantity"] for r in bt.rows):
        rows = [r for r in bt.rows if r["quantity"] == q]
        cov = np.mean([r["covered"] for r in rows])
        med = np.median([r["rel_error"] for r in rows])
        codes = ",".join(d.code for d in bt.diagnostics if d.subject == q) or "-"
        print(f"{name + ' ' + q:<34} coverage {cov:6.1%}  n {len(rows):5d}  median rel "
              f"{med:.3g}  {codes}  ({time.time() - t0:.0f} s)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=50)
    seeds = ap.parse_args().seeds
    for size in ("25", "100", "400"):
        d = REF / "multipower" / f"csv_{size}"
        if not d.is_dir():
            continue
        fits = [d / f"{n}.csv" for n in ("cosine_24000", "constant_24000", "wsdcon_9")]
        tests = sorted(set(d.glob("*.csv")) - set(fits))
        t0 = time.time()
        line(f"Luo {size}M MPL", sl.backtest(fits, test=tests, warmup_steps=2160, step_offset=1),
             t0)  # fmt: skip
    s = DATA / "schaipp2025"
    for lr in ("0.0005", "0.001"):
        t0 = time.time()
        fits = [s / f"{k}_lr{lr}.csv" for k in ("constant", "cosine")]
        line(f"Schaipp 124M peak {lr} MPL",
             sl.backtest(fits, test=[s / f"wsd_lr{lr}.csv"], warmup_steps=300), t0)  # fmt: skip
    z = pl.read_csv(DATA / "zhang2025" / "steps_to_target.csv")
    tab = z.select(group=pl.col("model"), params=pl.col("params_M") * 1e6,
                   batch_size=pl.col("batch_size_seqs"),
                   steps_to_target=pl.col("steps_to_target_used_in_fit"))  # fmt: skip
    t0 = time.time()
    line("Zhang CBS", sl.backtest(tab, "cbs", ref_batch=256), t0)
    t0 = time.time()
    line("study_quickstart MPL", sl.backtest(DATA / "study_quickstart"), t0)
    t0 = time.time()
    line("study_capacity", sl.backtest(DATA / "study_capacity", "capacity"), t0)
    from test_backtest_chinchilla import epoch_runs

    t0 = time.time()
    chin_lines("Epoch (Hoffmann runs) Chinchilla", sl.backtest(epoch_runs(), law="chinchilla"), t0)
    porian = pl.read_csv(DATA / "porian2024_isoflop_slices.csv")
    for config in porian["config"].unique(maintain_order=True):
        t0 = time.time()
        runs = porian.filter(pl.col("config") == config).drop("config")
        chin_lines(f"Porian {config}", sl.backtest(runs, law="chinchilla"), t0)
    from test_backtest import _cbs_table

    t0 = time.time()
    covs = [
        sl.backtest(_cbs_table(k), "cbs", ref_batch=32).metrics["coverage"] for k in range(seeds)
    ]
    print(f"synthetic CBS law, sigma 0.05, {seeds} seeds: mean coverage {np.mean(covs):.1%} "
          f"(sd {np.std(covs):.1%})  ({time.time() - t0:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
