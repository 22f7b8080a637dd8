"""Hyperparameter laws (docs/laws.md §9): a loss surface with a known optimum path is fitted
back (exponents, intervals, predictions, curvature), the edge and one-batch cases, every bad
input's one-line error, and the JSON round trip. Unit tier: no Ray, no subprocess."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

import scalelaws as sl
from scalelaws.hparams.fit import HparamsFit, fit_hparams

# The known answer. L = E + A/N^a + Bc/D^b + C_LR·(ln η − ln η*)² + C_B·(ln B − ln B*)²
# with η*(N, D) = 0.02·N^−0.3·D^0.1 and B*(N, D) = 4·N^0·D^0.5 (B in tokens), plus seeded
# Gaussian noise of 0.003 nats per run, two seeds per point.
LR_COEF, LR_N, LR_D = 0.02, -0.3, 0.1
B_COEF, B_N, B_D = 4.0, 0.0, 0.5
C_LR, C_B = 0.05, 0.03
NS, DS = (1e7, 3e7, 1e8), (1e9, 3e9, 1e10)
LRS = 6e-4 * 2.0 ** np.arange(-2, 3)  # 1.5e-4 .. 2.4e-3: brackets every cell's η*
BATCHES = 2.0 ** np.arange(16, 20)  # 65536 .. 524288 tokens: brackets every B*


def lr_star(n, d):
    return LR_COEF * n**LR_N * d**LR_D


def b_star(n, d):
    return B_COEF * n**B_N * d**B_D


def make_runs(lr_scale=1.0, seeds=2, sigma=0.003, rs=0, batches=BATCHES) -> pl.DataFrame:
    rng = np.random.default_rng(rs)
    rows = []
    for n in NS:
        for d in DS:
            base = 1.8 + 400.0 / n**0.34 + 1000.0 / d**0.28
            for lr in LRS * lr_scale:
                for b in batches:
                    loss = base + C_LR * math.log(lr / lr_star(n, d)) ** 2
                    loss += C_B * math.log(b / b_star(n, d)) ** 2
                    for s in range(seeds):
                        rows.append((n, d, lr, b, loss + sigma * rng.standard_normal(), s))
    cols = ["params", "tokens", "lr", "batch_size", "loss", "seed"]
    return pl.DataFrame(rows, schema=cols, orient="row")


@pytest.fixture(scope="module")
def fit() -> HparamsFit:
    return fit_hparams(make_runs(), seed="seed")


def codes(res, severity=None) -> set[tuple[str, str]]:
    return {(d.code, d.subject) for d in res.diagnostics if severity in (None, d.severity)}


# ----------------------------------------------------------------------- the known answer


def test_known_answer_exponents_lie_in_their_intervals(fit):
    truth = {
        "lr~ND.N": LR_N,
        "lr~ND.D": LR_D,
        "lr~ND.coef": LR_COEF,
        "batch~ND.N": B_N,
        "batch~ND.D": B_D,
        "batch~ND.coef": B_COEF,
    }
    for key, value in truth.items():
        lo, hi = fit.intervals[key]
        assert lo <= value <= hi, f"{key}: truth {value} outside [{lo:.4g}, {hi:.4g}]"
        if key.endswith("coef"):
            assert abs(math.log(fit.params[key] / value)) < 0.5, key  # a factor 1.65
        else:
            assert fit.params[key] == pytest.approx(value, abs=0.02), key
    # today's numbers, seed 0: α = −0.294 [−0.311, −0.276], δ = 0.497 [0.473, 0.522]
    assert fit.intervals["lr~ND.N"][1] - fit.intervals["lr~ND.N"][0] < 0.06
    assert fit.intervals["batch~ND.D"][1] - fit.intervals["batch~ND.D"][0] < 0.08
    assert fit.info["batch_unit"] == "tokens per optimizer step"
    # the centred grid brackets every optimum: no cell warns; the compute forms cannot
    # describe an η* that is not a function of C = 6ND alone, and say so
    assert codes(fit, "warning") == {
        ("NON_IDENTIFIABLE", "lr~C.C"),
        ("NON_IDENTIFIABLE", "batch~C.C"),
    }


def test_known_answer_cell_optima_and_curvature(fit):
    assert len(fit.cells) == 9
    errors, covered = [], 0
    for c in fit.cells:
        assert c["mode"] == "2d" and c["lr_status"] == c["batch_status"] == "stationary"
        for key, star in (("lr", lr_star), ("batch", b_star)):
            truth = star(c["params"], c["tokens"])
            errors.append(abs(math.log(c[f"{key}_opt"] / truth)))
            lo, hi = c[f"{key}_interval"]
            covered += lo <= truth <= hi
    assert max(errors) < 0.05 and np.median(errors) < 0.015
    assert covered >= 15  # of 18 95% intervals (16 today)
    # the pooled curvature: c_η = H_ηη/2 and c_B recover C_LR and C_B; no cross term
    assert fit.params["curvature.lr"] == pytest.approx(C_LR, rel=0.05)
    assert fit.params["curvature.batch"] == pytest.approx(C_B, rel=0.05)
    assert abs(fit.params["curvature.cross"]) < 0.005
    assert fit.curvature["cells"] == {"lr": 9, "batch": 9, "cross": 9}


def test_predict_outside_the_fitted_range(fit):
    n, d = 3e8, 3e10  # 3x beyond the largest N and D
    p = fit.predict(n, d, level=0.9)
    assert p.info["form"] == {"lr": "ND", "batch": "ND"}
    for key, star in (("lr", lr_star), ("batch", b_star)):
        truth = star(n, d)
        assert abs(math.log(p.params[key] / truth)) < 0.05, key
        lo, hi = p.intervals[key]
        assert lo <= truth <= hi, f"{key}: {truth:.4g} outside [{lo:.4g}, {hi:.4g}]"
        assert f"{key}~C" in p.params  # the compute form beside it
    extrap = {d.subject: d.message for d in p.diagnostics if d.code == "EXTRAPOLATION"}
    assert set(extrap) == {"params N", "tokens D", "compute C = 6ND"}
    assert "3x above" in extrap["params N"] and "3x above" in extrap["tokens D"]
    assert "9x above" in extrap["compute C = 6ND"]
    inside = fit.predict(3e7, 3e9)
    assert not [d for d in inside.diagnostics if d.code == "EXTRAPOLATION"]
    assert abs(math.log(inside.lr / lr_star(3e7, 3e9))) < 0.03


def test_penalty_recovers_the_curvature(fit):
    n, d = 3e7, 3e9
    lr0, b0 = lr_star(n, d), b_star(n, d)
    pen = fit.penalty(n, d, lr=2 * lr0, batch=b0)
    assert pen.params["nats"] == pytest.approx(C_LR * math.log(2) ** 2, rel=0.05)
    pen = fit.penalty(n, d, lr=lr0, batch=b0 / 2)
    assert pen.params["nats"] == pytest.approx(C_B * math.log(2) ** 2, rel=0.05)
    both = fit.penalty(n, d, lr=lr0 / 2, batch=2 * b0)
    want = (C_LR + C_B) * math.log(2) ** 2
    assert both.params["nats"] == pytest.approx(want, rel=0.08)
    lo, hi = both.intervals["nats"]
    assert lo <= both.params["nats"] <= hi
    loss_opt = fit.cell(n, d)["loss_opt"]
    assert both.params["relative"] == pytest.approx(both.params["nats"] / loss_opt, rel=0.1)
    assert not [x for x in both.diagnostics if x.code == "EXTRAPOLATION"]
    far = fit.penalty(n, d, lr=10 * lr0)  # beyond half the widest LR sweep (a factor 4)
    assert ("EXTRAPOLATION", "penalty lr") in codes(far)
    assert far.params["delta_ln_batch"] == 0.0


def test_edge_of_the_grid_is_flagged_not_extrapolated():
    fit = fit_hparams(make_runs(lr_scale=1 / 8), seed="seed")  # every η* above the top LR
    top = float(LRS.max() / 8)
    edges = [d for d in fit.diagnostics if d.code == "OPTIMUM_AT_EDGE"]
    assert len(edges) == 9 and all("above the largest LR" in d.message for d in edges)
    for c in fit.cells:
        assert c["lr_status"] == "edge" and c["lr_opt"] == top and c["lr_interval"] is None
        assert c["stationary"]["lr"] > top  # the quadratic's minimum, not reported
        assert c["batch_status"] == "conditional"  # B* at the best LR still located
    assert ("TOO_FEW_POINTS", "lr laws") in codes(fit)
    assert not [k for k in fit.laws if k.startswith("lr")]
    assert fit.params["batch~ND.D"] == pytest.approx(B_D, abs=0.03)
    p = fit.predict(3e7, 3e9)
    assert math.isnan(p.lr) and ("FIT_SKIPPED", "lr") in codes(p)
    assert abs(math.log(p.batch / b_star(3e7, 3e9))) < 0.05


def test_one_batch_size_per_cell_fits_the_lr_axis_alone():
    runs = make_runs(batches=[131072.0])
    fit = fit_hparams(runs, seed="seed")
    for c in fit.cells:
        assert c["mode"] == "lr" and c["lr_status"] == "stationary"
        assert c["batch_status"] == "few_values" and c["batch_opt"] == 131072.0
        assert abs(math.log(c["lr_opt"] / lr_star(c["params"], c["tokens"]))) < 0.05
    few = [d for d in fit.diagnostics if d.code == "FEW_GRID_VALUES"]
    assert len(few) == 9 and all("1 distinct batch sizes" in d.message for d in few)
    assert ("TOO_FEW_POINTS", "batch laws") in codes(fit)
    assert fit.params["lr~ND.N"] == pytest.approx(LR_N, abs=0.03)
    assert fit.params["curvature.lr"] == pytest.approx(C_LR, rel=0.05)
    assert math.isnan(fit.params["curvature.batch"])


def test_one_spiked_run_per_cell_does_not_bend_the_surface():
    spike = (pl.col("lr") == LRS[1]) & (pl.col("batch_size") == BATCHES[2]) & (pl.col("seed") == 0)
    runs = make_runs().with_columns(
        loss=pl.when(spike).then(pl.col("loss") + 0.3).otherwise(pl.col("loss"))
    )
    fit = fit_hparams(runs, seed="seed")
    errors = [abs(math.log(c["lr_opt"] / lr_star(c["params"], c["tokens"]))) for c in fit.cells]
    assert max(errors) < 0.06
    assert fit.params["lr~ND.N"] == pytest.approx(LR_N, abs=0.02)
    # the same surface by least squares on every run (no window, no Huber weights) moves
    # that cell's η* by ~15%
    c = fit.cell(3e7, 3e9)
    assert c["dropped"]["loss"], "the spike is above the 2% window"
    pts = {k: c["points"][k] + c["dropped"][k] for k in ("lr", "batch", "loss")}
    u = np.log(pts["lr"]) - c["center"][0]
    v = np.log(pts["batch"]) - c["center"][1]
    x = np.column_stack([np.ones_like(u), u, v, u * u, u * v, v * v])
    beta = np.linalg.lstsq(x, np.array(pts["loss"]), rcond=None)[0]
    det = 4 * beta[3] * beta[5] - beta[4] ** 2
    u_ls = -(2 * beta[5] * beta[1] - beta[4] * beta[2]) / det
    assert abs(u_ls + c["center"][0] - math.log(lr_star(3e7, 3e9))) > 0.1


def test_a_loss_that_is_not_quadratic_is_a_misfit():
    # add a V in ln η (0.2·|ln η − ln η*|): fitted over the whole grid, the quadratic misses
    # the point means by far more than the seeds' 0.003-nat scatter, in every cell
    ratio = pl.col("lr") / (LR_COEF * pl.col("params") ** LR_N * pl.col("tokens") ** LR_D)
    runs = make_runs().with_columns(loss=pl.col("loss") + 0.2 * ratio.log().abs())
    fit = fit_hparams(runs, seed="seed", window=0.99)
    assert {c["label"] for c in fit.cells} == {
        d.subject for d in fit.diagnostics if d.code == "MISFIT"
    }
    clean = fit_hparams(make_runs(), seed="seed", n_boot=0, window=0.99)
    assert not [d for d in clean.diagnostics if d.code == "MISFIT"]
    # the default 2% window keeps three LRs around the V's tip: locally quadratic enough, and
    # the symmetric V's minimum is where the quadratic's is
    near = fit_hparams(runs, seed="seed", n_boot=0)
    errors = [abs(math.log(c["lr_opt"] / lr_star(c["params"], c["tokens"]))) for c in near.cells]
    assert max(errors) < 0.1


def test_a_concave_cell_is_not_reported_as_an_optimum():
    runs = make_runs().filter((pl.col("params") == 1e8) & (pl.col("tokens") == 1e9))
    runs = runs.with_columns(loss=10.0 - pl.col("loss"))  # a maximum, not a minimum
    fit = fit_hparams(runs, seed="seed", laws=False)
    (c,) = fit.cells
    assert c["lr_status"] == c["batch_status"] == "not_convex"
    assert (c["lr_opt"], c["batch_opt"]) == (c["best"]["lr"], c["best"]["batch"])
    assert ("NOT_CONVEX", c["label"]) in codes(fit) and fit.laws == {}


# ----------------------------------------------------------------------- bad input


def _rows(df: pl.DataFrame, col: str, value, n: int) -> pl.DataFrame:
    idx = pl.int_range(pl.len())
    return df.with_columns(pl.when(idx < n).then(pl.lit(value)).otherwise(pl.col(col)).alias(col))


BAD = {
    "missing column": (lambda r: r.drop("lr"), {}, r"^lr: runs has no column 'lr'"),
    "renamed column": (lambda r: r, {"lr": "peak_lr"}, r"^lr: runs has no column 'peak_lr'"),
    "lr <= 0": (lambda r: _rows(r, "lr", 0.0, 2), {}, r"^lr: 2 of 360 rows .* <= 0"),
    "batch inf": (lambda r: _rows(r, "batch_size", math.inf, 1), {}, r"^batch: 1 of 360"),
    "params < 0": (lambda r: _rows(r, "params", -1.0, 1), {}, r"^params: 1 of 360"),
    "tokens NaN": (lambda r: _rows(r, "tokens", math.nan, 3), {}, r"^tokens: 3 of 360"),
    "loss NaN": (lambda r: _rows(r, "loss", math.nan, 4), {}, r"^loss: 4 of 360 rows .* NaN"),
    "loss text": (
        lambda r: _rows(r.with_columns(pl.col("loss").cast(pl.String)), "loss", "diverged", 1),
        {},
        r"^loss: column 'loss' holds String",
    ),
    "one lr per cell": (
        lambda r: r.filter(pl.col("lr") == LRS[2]),
        {},
        r"^lr: no \(N, D\) cell has 3 or more distinct learning rates \(most in one cell: 1\)",
    ),
    "one N and one D": (
        lambda r: r.filter((pl.col("params") == 1e8) & (pl.col("tokens") == 1e9)),
        {},
        r"^params, tokens: every run has N = 1e\+08 and D = 1e\+09.*laws=False",
    ),
    "duplicated seed": (lambda r: pl.concat([r, r.head(1)]), {}, r"^seed: 2 rows repeat"),
    "pandas frame": (lambda r: r.to_pandas(), {}, r"^runs: a DataFrame, not a polars"),
    "no rows": (lambda r: r.head(0), {}, r"^runs: no rows"),
    "n_boot": (lambda r: r, {"n_boot": -1}, r"^n_boot=-1"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_one_line_naming_the_field(case):
    change, kwargs, pattern = BAD[case]
    runs = change(make_runs())
    with pytest.raises(ValueError, match=pattern) as err:
        fit_hparams(runs, seed="seed", **kwargs)
    assert "\n" not in str(err.value)


def test_one_cell_fits_without_laws_and_predict_refuses_bad_points(fit):
    one = make_runs().filter((pl.col("params") == 1e8) & (pl.col("tokens") == 1e9))
    res = fit_hparams(one, laws=False)
    assert len(res.cells) == 1 and res.laws == {} and res.info["laws"] is False
    assert abs(math.log(res.cells[0]["lr_opt"] / lr_star(1e8, 1e9))) < 0.05
    with pytest.raises(ValueError, match="no law of lr\\* or B\\* was fitted"):
        res.predict(1e8, 1e9)
    with pytest.raises(ValueError, match=r"^params=-1.0: must be one finite number > 0"):
        fit.predict(-1.0, 1e9)
    with pytest.raises(ValueError, match=r"^level=1.5"):
        fit.predict(1e8, 1e9, level=1.5)


# ----------------------------------------------------------------------- JSON and figure


def test_json_round_trip_and_figure(fit, tmp_path):
    path = tmp_path / "HPARAMS.json"
    fit.to_json(path)
    back = HparamsFit.load(path)
    assert back.to_dict() == fit.to_dict()
    assert isinstance(back.cells, tuple) and back.diagnostics == fit.diagnostics
    a, b = fit.predict(3e8, 3e10), back.predict(3e8, 3e10)
    assert a.params == b.params and a.intervals == b.intervals
    pa = fit.penalty(3e7, 3e9, lr=1e-3, batch=2e5)
    pb = back.penalty(3e7, 3e9, lr=1e-3, batch=2e5)
    assert pa.params == pb.params
    assert sl.fit_hparams is fit_hparams and sl.HparamsFit is HparamsFit
    png = back.plot(tmp_path / "hparams.png")
    assert png.stat().st_size > 20_000
