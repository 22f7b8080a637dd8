"""Coverage of approach 2's exponent interval on the known-answer case of issue #26.

    .venv/bin/python bench/isoflop_coverage.py [SEEDS] [N_BOOT]

Loss from Hoffmann et al.'s fitted law (E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28, so
N* ∝ C^0.4516), 7 budgets 1e16–1e19, the same 12 sizes 3e5–5e8 at every budget, Gaussian
noise 0.003 on the loss; SEEDS noise seeds (default 50), N_BOOT bootstrap draws (default
1000). Prints the textbook fit, then per seed a and its 95% interval, then the mean, the
largest error and the share of intervals that contain the true exponent (issue: >= 90%).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from test_isoflop_known_answer import A_TRUE, TEXTBOOK, known_answer  # noqa: E402

from scalelaws.chinchilla.isoflop import fit_isoflop  # noqa: E402


def main(seeds: int = 50, n_boot: int = 1000) -> None:
    old = fit_isoflop(known_answer(0), budget_col="budget", **TEXTBOOK)
    lo, hi = old.intervals["n_exponent"]
    print(f"true a = {A_TRUE:.4f}; textbook (one parabola per slice, OLS): "
          f"{old.params['n_exponent']:.4f} [{lo:.4f}, {hi:.4f}]")  # fmt: skip
    est, hits, t0 = [], 0, time.perf_counter()
    for seed in range(seeds):
        fit = fit_isoflop(known_answer(seed), budget_col="budget", n_boot=n_boot, seed=seed)
        a, (lo, hi) = fit.params["n_exponent"], fit.intervals["n_exponent"]
        est.append(a)
        hits += lo < A_TRUE < hi
        print(
            f"seed {seed:2d}: a = {a:.4f} [{lo:.4f}, {hi:.4f}]{'' if lo < A_TRUE < hi else '  MISS'}"
        )
    err = np.abs(np.array(est) - A_TRUE)
    print(f"{seeds} seeds, {n_boot} draws, {time.perf_counter() - t0:.1f} s: mean a = "
          f"{np.mean(est):.4f} (sd {np.std(est):.4f}), max |a - true| = {err.max():.4f}, "
          f"coverage {hits}/{seeds} = {hits / seeds:.0%}")  # fmt: skip


if __name__ == "__main__":
    args = [int(v) for v in sys.argv[1:3]]
    main(*args)
