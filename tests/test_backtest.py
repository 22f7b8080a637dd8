"""Prediction intervals and back-tests (docs/laws.md §7 "Prediction intervals"): synthetic data
from known laws with known noise are covered at the stated level; the public data's coverage is
what the back-test says it is, with OVERCONFIDENT where it falls short; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from cli_run import cli

import scalelaws as sl
from scalelaws.capacity.predict import ratio_prediction
from scalelaws.core.prediction import Prediction, ols_interval, predictive_interval
from scalelaws.multipower.curves import read_curve_file

DATA = Path(__file__).parent / "data"
REF = Path(__file__).resolve().parents[2] / "shared" / "refdata"


# --------------------------------------------------------------------------- known answers


def test_ols_interval_covers_90_percent_of_fresh_points_of_a_known_power_law():
    """log y = log 3 + 0.5 log x + N(0, 0.1): 300 seeds, one fresh point 4x beyond the data."""
    hits = []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        x = np.log(np.geomspace(1, 100, 6))
        y = np.log(3) + 0.5 * x + rng.normal(0, 0.1, x.size)
        x0 = np.log(400.0)
        _, lo, hi, info = ols_interval(x, y, [x0], level=0.9)
        y0 = np.log(3) + 0.5 * x0 + rng.normal(0, 0.1)
        hits.append(lo[0] <= y0 <= hi[0])
        assert info["dof"] == 4
    assert 0.86 <= np.mean(hits) <= 0.94  # binomial sd at 300: 0.017


def test_predictive_interval_from_bootstrap_draws_and_residuals_covers_90_percent():
    """y = 2·exp(0.3 x)·exp(N(0, 0.05)) on 20 points; a pairs bootstrap gives the draws."""
    hits = []
    for seed in range(150):
        rng = np.random.default_rng(seed)
        x = np.linspace(0, 3, 20)
        y = 2 * np.exp(0.3 * x + rng.normal(0, 0.05, x.size))
        design = np.column_stack([np.ones_like(x), x])
        beta = np.linalg.lstsq(design, np.log(y), rcond=None)[0]
        x0 = np.array([1.0, 3.5])
        draws = []
        for _ in range(100):
            i = rng.integers(0, x.size, x.size)
            draws.append([np.exp(x0 @ np.linalg.lstsq(design[i], np.log(y[i]), rcond=None)[0])])
        resid = np.log(y) - design @ beta
        point = np.exp([x0 @ beta])
        _, lo, hi = predictive_interval(point, np.array(draws), resid, n_params=2, seed=seed)
        y0 = 2 * np.exp(0.3 * 3.5 + rng.normal(0, 0.05))
        hits.append(lo[0] <= y0 <= hi[0])
    assert 0.84 <= np.mean(hits) <= 0.96


def test_capacity_interval_covers_90_percent_below_the_cap_and_stops_at_it():
    hits = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        p = np.array([1e4, 2e4, 3e4, 5e4, 8e4])
        bits = 2.0 * p + rng.normal(0, 2000, p.size)
        pred = ratio_prediction(p, bits, 1e9, [1e5], [1e9])
        hits.append(pred.covers([2e5 + rng.normal(0, 2000)])[0])
    assert 0.85 <= np.mean(hits) <= 0.95
    capped = ratio_prediction(p, bits, 1e9, [1e6], [1e5])  # R·P = 2e6 above a 1e5-bit cap
    assert capped.point == [1e5] and capped.hi == [1e5] and capped.lo == [1e5]


def _cbs_table(seed: int, sigma: float = 0.05) -> pl.DataFrame:
    """S_min = 2000·(N/1e8)^0.2, E_min = 4e5·(N/1e8)^0.7, T(B) with lognormal scatter `sigma`."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in (5e7, 1e8, 2e8, 4e8, 8e8, 1.6e9):
        s, e = 2000 * (n / 1e8) ** 0.2, 4e5 * (n / 1e8) ** 0.7
        for b in (32, 64, 128, 256, 512, 1024, 2048):
            t = (s + e / b) * np.exp(rng.normal(0, sigma))
            rows.append({"group": f"{n:.2g}", "params": n, "batch_size": b, "steps_to_target": t})
    return pl.DataFrame(rows)


def test_cbs_backtest_on_a_known_law_with_known_scatter_is_calibrated():
    covs = []
    for seed in range(6):
        bt = sl.backtest(_cbs_table(seed), "cbs", ref_batch=32, n_boot=200)
        assert bt.metrics["n_points"] == 3 * 7 + 2 * 7 + 7 + 6  # steps rows + CBS rows
        covs.append(bt.metrics["coverage"])
    assert 0.8 <= np.mean(covs) <= 0.99
    assert bt.metrics["median_rel_error"] < 0.1


def test_prediction_roundtrips_and_every_law_returns_one():
    p = Prediction(x=[1, 2], point=[1.0, 2.0], lo=[0.5, 1.5], hi=[1.5, 2.5])
    assert Prediction.from_dict(json.loads(p.to_json())) == p
    assert p.covers([1.2, 3.0]).tolist() == [True, False]
    res = sl.fit_cbs(_cbs_table(0), ref_batch=32, n_boot=200)
    pc = res.prediction(3.2e9)
    assert pc.lo[0] < pc.point[0] < pc.hi[0] and pc.info["dof"] == 4
    assert any(d.code == "EXTRAPOLATION" for d in pc.diagnostics)
    steps = res.steps_prediction(3.2e9, [64, 4096])
    assert all(lo < pt < hi for lo, pt, hi in zip(steps.lo, steps.point, steps.hi, strict=True))
    cap = sl.fit_capacity(DATA / "study_capacity")
    t = cap.trials[0]
    pk = cap.prediction(t["params"], t["max_bits"])
    assert pk.lo[0] <= pk.point[0] <= pk.hi[0]


# --------------------------------------------------------------------------- public data


def _zhang() -> pl.DataFrame:
    z = pl.read_csv(DATA / "zhang2025" / "steps_to_target.csv")
    return z.select(
        group=pl.col("model"),
        params=pl.col("params_M") * 1e6,
        batch_size=pl.col("batch_size_seqs"),
        steps_to_target=pl.col("steps_to_target_used_in_fit"),
        tokens=pl.col("chinchilla_tokens"),
    )


def test_zhang_cbs_backtest_reports_its_coverage_and_says_overconfident():
    bt = sl.backtest(_zhang(), "cbs", ref_batch=256)
    m = bt.metrics
    assert m["n_points"] == 30  # 604M + 1.2B from 3 sizes, 1.2B from 4: 9 B + 1 CBS each
    assert m["coverage"] == pytest.approx(22 / 30)
    assert 0.10 < m["median_rel_error"] < 0.16 and m["worst_rel_error"] == pytest.approx(
        0.3666, abs=2e-3
    )
    assert bt.worst["held_out"] == "604M" and bt.worst["x"] == 512
    assert [d.code for d in bt.diagnostics] == ["OVERCONFIDENT"]


def test_schaipp_held_out_wsd_and_later_steps_are_covered_within_the_band():
    d = DATA / "schaipp2025"
    fits = [d / f"{s}_lr0.0005.csv" for s in ("constant", "cosine")]
    bt = sl.backtest(fits, test=[d / "wsd_lr0.0005.csv"], warmup_steps=300, n_boot=10,
                     cutoffs=(0.5,))  # fmt: skip
    m = bt.metrics
    assert 0.80 <= m["coverage"] <= 0.97, m
    assert m["median_rel_error"] < 0.002
    assert not [x for x in bt.diagnostics if x.code in ("OVERCONFIDENT", "UNDERCONFIDENT")]


def test_mpl_oob_scaled_residuals_widen_the_interval_by_the_out_of_bag_ratio():
    d = DATA / "schaipp2025"
    fits = [d / f"{s}_lr0.0005.csv" for s in ("constant", "cosine")]
    res = sl.fit_multipower(fits, warmup_steps=300, n_boot=20)
    scale = res.info["oob_residual_scale"]
    assert scale > 1 and res.info["oob_points"] > 0  # unseen curves are predicted worse
    c = read_curve_file(d / "wsd_lr0.0005.csv", warmup_steps=300)
    base = res.prediction(c.lr, c.steps)
    oob = res.prediction(c.lr, c.steps, residuals="oob-scaled")
    assert oob.point == base.point and np.all(oob.width > base.width)
    assert oob.info["residual_factor"] == pytest.approx(scale)
    with pytest.raises(ValueError, match="residuals"):
        res.prediction(c.lr, c.steps, residuals="loo")
    plain = sl.fit_multipower(fits, warmup_steps=300, n_boot=0)
    with pytest.raises(ValueError, match="oob-scaled"):
        plain.prediction(c.lr, c.steps, residuals="oob-scaled")


@pytest.mark.skipif(not (REF / "multipower").is_dir(), reason="no shared refdata")
def test_luo_400m_official_test_schedules_backtest():
    d = REF / "multipower" / "csv_400"
    fits = [d / f"{n}.csv" for n in ("cosine_24000", "constant_24000", "wsdcon_9")]
    tests = sorted(set(d.glob("*.csv")) - set(fits))
    bt = sl.backtest(fits, test=tests, warmup_steps=2160, step_offset=1, n_boot=10, cutoffs=())
    m = bt.metrics
    assert m["n_points"] == sum(len(pl.read_csv(t)) for t in tests)
    assert 0.5 <= m["coverage"] <= 0.97, m
    over = any(x.code == "OVERCONFIDENT" for x in bt.diagnostics)
    assert over == (m["coverage"] < 0.8)


def test_capacity_fixture_backtest_has_too_few_points():
    bt = sl.backtest(DATA / "study_capacity", "capacity")
    assert bt.metrics["n_points"] == 4
    codes = [x.code for x in bt.diagnostics]
    assert "TOO_FEW_POINTS" in codes
    assert ("OVERCONFIDENT" in codes) == (bt.metrics["coverage"] < 0.8)


# --------------------------------------------------------------------------- CLI


def test_cli_writes_backtest_json(tmp_path, capsys):
    _zhang().write_csv(tmp_path / "steps.csv")
    code, out, _ = cli(["backtest", tmp_path / "steps.csv", "--out", tmp_path / "bt.json"], capsys)
    assert code in (0, None)
    assert "coverage 73.3% of 30 held-out points" in out and "OVERCONFIDENT" in out
    doc = json.loads((tmp_path / "bt.json").read_text())
    assert doc["kind"] == "Backtest" and doc["metrics"]["n_points"] == 30
    assert sl.Backtest.from_dict(doc).metrics == doc["metrics"]


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    nan = tmp_path / "nan"
    nan.mkdir()
    pl.DataFrame({"step": [1, 2, 3, 4], "lr": [1e-3] * 4, "loss": [3.0, float("nan"), 2.8, 2.7]}
                 ).write_csv(nan / "a.csv")  # fmt: skip
    one = _zhang().filter(pl.col("group") == "85M")
    one.write_csv(tmp_path / "one.csv")
    cases = [
        (["backtest", DATA / "study_cbs"], "2 model sizes"),
        (["backtest", tmp_path / "one.csv"], "1 model sizes"),
        (["backtest", nan], "a.csv"),
        (["backtest", tmp_path / "missing"], "does not exist"),
        (["backtest", DATA / "study_cbs", "--law", "kaplan"], "--law"),
        (["backtest", DATA / "study_cbs", "--level", "1.5"], "level=1.5"),
    ]
    for argv, want in cases:
        code, _, err = cli(argv, capsys)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
        assert want in lines[0], (argv, lines[0])


def test_report_shows_the_backtest_section(tmp_path, capsys):
    import shutil

    root = tmp_path / "study"
    shutil.copytree(DATA / "study_capacity", root)
    assert "No backtest.json" in sl.write_report(root).read_text()
    code, out, _ = cli(["backtest", root], capsys)
    assert code in (0, None) and (root / "backtest.json").is_file()
    bt = sl.Backtest.load(root / "backtest.json")
    html = sl.write_report(root).read_text()
    assert 'id="backtest"' in html and "TOO_FEW_POINTS" in html
    assert f"{100 * bt.metrics['coverage']:.1f}% of 4 held-out points" in html
