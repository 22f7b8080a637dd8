"""fit_hparams on real measurements nobody here produced: Step Law's released LR × batch grids
(Li et al. 2025, arXiv 2503.04715; tests/data/README.md, "li2025_steplaw_*"): 1,911 dense runs
over 17 (N, D) cells of up to 12 LRs × 10 batch sizes, final smoothed training loss.

What the data supports, and what is asserted:
- every cell's optimum lies inside its grid, and the grid point nearest our fitted optimum is
  within 0.3% of the cell's best loss (Step Law keeps runs within 0.25% as near-optimal);
- our 95% intervals of the η* exponents (N, D) and the B* exponent in D overlap the published
  bootstrap intervals (the release holds 2,619 of the paper's ~3,700 runs, and Step Law's own
  procedure on it gives η* ∝ N^-0.765·D^0.196: the published 0.307 is not reproduced);
- fitted on the four smaller sizes, the law's proposal at the held-out 1.07e9 model (2x
  beyond the fitted N) is flagged EXTRAPOLATION and still lands on a grid point within 0.3%
  of each held-out cell's best loss. (Its 90% intervals of η* and B* miss the held-out cells'
  own optima: docs/hparams.md says so.)
The default 2% window was chosen on these data (1%-5% all locate every optimum); the MoE file
(16 more cells, not used to choose it) is checked the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scalelaws import fit_hparams

DATA = Path(__file__).parent / "data"
COLS = dict(lr="lr", batch="batch_size_tokens", loss="loss_smooth", tokens="tokens")


@pytest.fixture(scope="module")
def dense() -> pl.DataFrame:
    return pl.read_csv(DATA / "li2025_steplaw_lr_batch_dense.csv")


def _nearest_gap(runs: pl.DataFrame, n_col: str, n, d, lr, batch) -> float:
    """Relative loss gap between the grid point nearest (lr, batch) in log and the cell's best."""
    cell = runs.filter((pl.col(n_col) == n) & (pl.col("tokens") == d))
    dist = (np.log(cell["lr"]) - np.log(lr)) ** 2 + (
        np.log(cell["batch_size_tokens"]) - np.log(batch)
    ) ** 2
    loss = cell["loss_smooth"].to_numpy()
    return float(loss[np.argmin(dist.to_numpy())] / loss.min() - 1)


def test_every_step_law_cell_has_an_interior_optimum_near_its_best_run(dense):
    fit = fit_hparams(dense, params="params_nonembed", **COLS)
    assert len(fit.cells) == 17
    assert {(c["lr_status"], c["batch_status"]) for c in fit.cells} == {
        ("stationary", "stationary")
    }
    gaps = [
        _nearest_gap(
            dense, "params_nonembed", c["params"], c["tokens"], c["lr_opt"], c["batch_opt"]
        )
        for c in fit.cells
    ]
    assert max(gaps) < 0.003 and np.median(gaps) < 0.001
    assert all(c["dropped"]["loss"] for c in fit.cells)  # the diverged runs are out of the fit


def test_step_law_exponents_overlap_the_published_intervals(dense):
    fit = fit_hparams(dense, params="params_nonembed", **COLS)
    pub = {r["param"]: r for r in pl.read_csv(DATA / "li2025_steplaw_published_fit.csv").to_dicts()}
    for ours, theirs in (
        ("lr~ND.N", "lr_coefN"),
        ("lr~ND.D", "lr_coefD"),
        ("batch~ND.D", "bs_coefD"),
    ):
        lo, hi = fit.intervals[ours]
        assert lo < pub[theirs]["q975"] and pub[theirs]["q025"] < hi, (ours, (lo, hi))
    # η* falls with N and rises with D, B* rises with D: the published signs, resolved
    assert fit.intervals["lr~ND.N"][1] < 0 < fit.intervals["lr~ND.D"][0]
    assert fit.intervals["batch~ND.D"][0] > 0.4


def test_held_out_largest_model_is_flagged_and_lands_near_its_best_run(dense):
    small = dense.filter(pl.col("params_nonembed") < 1e9)
    big = dense.filter(pl.col("params_nonembed") > 1e9)
    fit = fit_hparams(small, params="params_nonembed", **COLS)
    own = fit_hparams(big, params="params_nonembed", laws=False, **COLS)
    assert len(own.cells) == 2
    for c in own.cells:
        p = fit.predict(c["params"], c["tokens"])
        assert "EXTRAPOLATION" in {d.code for d in p.diagnostics}
        gap = _nearest_gap(big, "params_nonembed", c["params"], c["tokens"], p.lr, p.batch)
        assert gap < 0.003, c["label"]
        # the proposal's penalty at the held-out cell's best run is a fraction of a percent
        best = c["best"]
        pen = fit.penalty(c["params"], c["tokens"], lr=best["lr"], batch=best["batch"])
        assert 0 < pen.params["relative"] < 0.01


def test_step_law_moe_cells_not_used_to_choose_the_window():
    moe = pl.read_csv(DATA / "li2025_steplaw_lr_batch_moe.csv")
    fit = fit_hparams(moe, params="params_active", **COLS)
    assert len(fit.cells) == 16
    located = [c for c in fit.cells if c["lr_status"] == c["batch_status"] == "stationary"]
    assert len(located) == 16
    gaps = [
        _nearest_gap(moe, "params_active", c["params"], c["tokens"], c["lr_opt"], c["batch_opt"])
        for c in fit.cells
    ]
    assert max(gaps) < 0.005
