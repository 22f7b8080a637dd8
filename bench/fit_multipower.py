"""Speed of the multi-power-law analysis: fit each published model size, optimise a schedule.

    .venv/bin/python bench/fit_multipower.py [REFDATA_DIR]

Fits the MPL on the official split (cosine_24000, constant_24000, wsdcon_9; LR rebuilt from the
rows) of the 25M/100M/400M reference curves, then optimises the 24,000-step schedule (warmup
2,160, peak 3e-4) under the published 400M parameters. Goal: a few seconds per fit on 2 cores.
Prints wall and CPU seconds; fit time excludes the exact evaluation of the test curves.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from scalelaws.multipower import fit as mpfit
from scalelaws.multipower import law as mp
from scalelaws.multipower.schedule import final_loss, optimise_schedule

FIT = ["cosine_24000", "constant_24000", "wsdcon_9"]
TEST = ["constant_72000", "cosine_72000", "wsd_20000_24000", "wsdld_20000_24000"]
TEST += ["wsdcon_3", "wsdcon_18"]
PARAMS_400M = dict(L0=2.3747, A=0.6542, alpha=0.4288, B=523.42, C=2.0246, beta=0.5935, gamma=0.6347)


def load(ref: Path, size: int) -> list[mp.Curve]:
    out = []
    for name in FIT + TEST:
        df = pl.read_csv(ref / f"csv_{size}" / f"{name}.csv")
        s = df["step"].to_numpy()
        lr = mp.build_lr(s, df["lr"].to_numpy(), 2160, int(s.max()) + 1)
        role = "fit" if name in FIT else "test"
        out.append(mp.Curve(name, lr, s + 1, df["loss"].to_numpy(), role=role))  # step s → s+1
    return out


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    default = Path(__file__).resolve().parents[2] / "shared" / "refdata" / "multipower"
    ref = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    print(
        f"{'model':>6} {'fit wall s':>10} {'fit cpu s':>9} {'eval s':>7} {'test R2':>8} {'test MAE':>9}"
    )
    for size in (25, 100, 400):
        curves = load(ref, size)
        fit_cv = [c for c in curves if c.role == "fit"]
        res, wall, cpu = timed(lambda fit_cv=fit_cv: mpfit.fit_curves(fit_cv))
        rows, ev, _ = timed(lambda res=res, curves=curves: mpfit.evaluate(res.params, curves))
        m = mpfit.summarise(rows)["test"]
        print(f"{size:>5}M {wall:>10.2f} {cpu:>9.2f} {ev:>7.2f} {m['r2']:>8.5f} {m['mae']:>9.5f}")
    fit_cv = [c for c in load(ref, 400) if c.role == "fit"]
    res, wall, cpu = timed(lambda: mpfit.fit_curves(fit_cv, n_boot=30))
    print(
        f"400M with a 30-resample bootstrap over curves: wall {wall:.2f}s, cpu {cpu:.2f}s (goal < 4 s)"
    )
    prop, wall, cpu = timed(lambda: optimise_schedule(PARAMS_400M, 24000, 2160, 3e-4))
    paper = np.concatenate(
        [np.linspace(0, 3e-4, 2160), np.load(ref / "optimized_schedules" / "400.npy")]
    )
    b = prop.baselines
    print(f"schedule (24,000 steps): wall {wall:.2f}s, cpu {cpu:.2f}s")
    print(
        f"  predicted final loss: proposed {prop.predicted_final_loss:.5f}, paper's optimum "
        f"{final_loss(PARAMS_400M, paper):.5f}, best WSD {b['wsd']['predicted_final_loss']:.5f} "
        f"({b['wsd']['shape']}, {b['wsd']['decay_fraction']:.3f}), cosine "
        f"{b['cosine']['predicted_final_loss']:.5f}"
    )


if __name__ == "__main__":
    main()
