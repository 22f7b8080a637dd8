"""Shared fitting core: recovery of known parameters, errors, bootstrap, FitResult JSON."""

import json

import numpy as np
import pytest

from scalelaws.core.fitting import (
    FitResult,
    Law,
    Param,
    bootstrap,
    fit,
    input_hash,
    metrics,
    minimise,
)


def _power_law(jacobian: bool) -> Law:
    """y = E + A·x^(−a) with its analytic Jacobian (or none: finite differences)."""

    def predict(th, x):
        return th[0] + th[1] * x ** (-th[2])

    def jac(th, x):
        p = x ** (-th[2])
        return th[0] + th[1] * p, np.stack([np.ones_like(x), p, -th[1] * p * np.log(x)], axis=1)

    params = (Param("E", 1e-3, 10.0, 1.0), Param("A", 1e-3, 100.0, 1.0), Param("a", 0.01, 3.0, 0.5))
    return Law("toy", params, predict, jac if jacobian else None)


TRUTH = np.array([1.7, 4.0, 0.6])


def _data(n_groups=8, per=25, noise=0.002, seed=0):
    rng = np.random.default_rng(seed)
    x = np.tile(np.geomspace(1, 1000, per), n_groups)
    groups = np.repeat(np.arange(n_groups), per)
    y = _power_law(True).predict(TRUTH, x) * np.exp(rng.normal(0, noise, x.size))
    return x, y, groups


@pytest.mark.parametrize("analytic", [True, False])
def test_fit_recovers_known_parameters(analytic):
    x, y, _ = _data()
    res = fit(_power_law(analytic), x, y)
    got = np.array([res.params[k] for k in ("E", "A", "a")])
    np.testing.assert_allclose(got, TRUTH, rtol=0.02)
    assert res.metrics["r2"] > 0.999
    assert len(res.residuals) == x.size
    # the residuals are y − ŷ of the reported parameters
    yhat = _power_law(True).predict(got, x)
    np.testing.assert_allclose(res.residuals, y - yhat, atol=1e-12)


def test_multistart_keeps_the_best_optimum():
    # y = 2 + 0.5·cos(ω·x): many local optima in ω; truth ω = 3
    law = Law(
        "wave",
        (Param("w", 0.1, 10.0, 1.0),),
        lambda th, x: 2.0 + 0.5 * np.cos(th[0] * x),
    )
    x = np.linspace(0, 10, 200)
    y = law.predict(np.array([3.0]), x)
    local, fun_local, _ = minimise(law, x, y, [np.array([1.0])])
    assert abs(local[0] - 3.0) > 0.1 and fun_local > 1e-3  # a wrong local optimum
    best, fun, info = minimise(law, x, y, [np.array([1.0]), np.array([2.8])])
    assert best[0] == pytest.approx(3.0, abs=1e-6) and fun < 1e-9
    assert info["starts_tried"] == 2


def test_too_few_points_is_an_error():
    law = _power_law(True)
    with pytest.raises(ValueError, match="3 parameters but only 2 points"):
        fit(law, np.array([1.0, 2.0]), np.array([3.0, 2.5]))


def test_non_positive_targets_are_an_error():
    with pytest.raises(ValueError, match="> 0"):
        fit(_power_law(True), np.arange(1.0, 6.0), np.array([1.0, 0.5, 0.0, 0.4, 0.3]))


def test_failed_fit_is_a_runtime_error():
    law = _power_law(True)
    x, y, _ = _data()
    with pytest.raises(RuntimeError, match="did not converge"):
        minimise(law, x, y, [np.array([1.0, 1.0, 0.5])], maxiter=2)
    broken = Law("broken", law.params, lambda th, xx: -np.ones_like(xx))  # ŷ < 0 everywhere
    with pytest.raises(RuntimeError, match="did not converge"):
        fit(broken, x, y)


def test_bootstrap_intervals_cover_truth_and_shrink_with_noise():
    law = _power_law(True)
    x, y, groups = _data(noise=0.004, seed=1)
    res = fit(law, x, y, groups=groups, n_boot=40, seed=0)
    assert res.info["n_boot"] == 40 and res.info["boot_failed"] == 0
    for k, t in zip(("E", "A", "a"), TRUTH, strict=True):
        lo, hi = res.intervals[k]
        assert lo <= res.params[k] <= hi
        assert lo <= t <= hi, (k, lo, t, hi)
    x2, y2, g2 = _data(noise=0.0005, seed=1)
    th = law.vector(res.params)
    narrow, _ = bootstrap(law, x2, y2, g2, th, n_boot=40, seed=0)
    for k in ("E", "A", "a"):
        assert np.diff(narrow[k]) < np.diff(res.intervals[k])
    with pytest.raises(ValueError, match="groups"):
        fit(law, x, y, n_boot=5)


def test_bootstrap_records_the_groups_each_refit_drew():
    law = _power_law(True)
    x, y, groups = _data(noise=0.004, seed=1)
    res = fit(law, x, y, groups=groups, n_boot=12, seed=3)
    counts = np.array(res.info["bootstrap_counts"])
    n_groups = np.unique(groups).size
    assert counts.shape == (len(res.info["bootstrap_params"]), n_groups)
    assert np.all(counts.sum(axis=1) == n_groups) and np.any(counts == 0)
    # the refit of a resample is the fit that weights each group by its count
    th = law.vector(res.info["bootstrap_params"][0])
    w = counts[0][np.unique(groups, return_inverse=True)[1]]
    again = fit(law, x, y, weights=w, starts=[law.vector(res.params)])
    assert np.allclose(law.vector(again.params), th, rtol=1e-4)


def test_fitresult_json_roundtrip(tmp_path):
    x, y, groups = _data()
    res = fit(_power_law(True), x, y, groups=groups, n_boot=5)
    path = res.save(tmp_path / "sub" / "fit.json")
    assert [p.name for p in path.parent.iterdir()] == ["fit.json"]  # no temp file left behind
    back = FitResult.load(path)
    assert back == res
    data = json.loads(path.read_text())
    assert {"law", "params", "intervals", "residuals", "metrics", "input_hash"} <= set(data)
    with pytest.raises(ValueError, match="not a FitResult"):
        (tmp_path / "x.json").write_text("{}")
        FitResult.load(tmp_path / "x.json")


def test_input_hash_is_stable_and_sensitive():
    x, y, _ = _data()
    assert input_hash("a", y) == input_hash("a", y.copy())
    y2 = y.copy()
    y2[3] += 1e-9
    assert input_hash("a", y) != input_hash("a", y2)
    assert fit(_power_law(True), x, y).input_hash != fit(_power_law(True), x, y2).input_hash


def test_metrics_by_hand():
    y = np.array([2.0, 4.0])
    m = metrics(y, np.array([2.2, 3.6]))
    assert m["mae"] == pytest.approx(0.3)
    assert m["rmse"] == pytest.approx(np.sqrt((0.04 + 0.16) / 2))
    assert m["pred_e"] == pytest.approx((0.1 + 0.1) / 2)
    assert m["worst_e"] == pytest.approx(0.1)
    assert m["r2"] == pytest.approx(1 - 0.2 / 2.0)


def test_a_design_subset_is_the_zero_weight_fit():
    """Dropping the points of curves a resample did not draw changes no term of the objective:
    the value and gradient at any θ equal the full design's with those points weighted 0."""
    import numpy as np

    from scalelaws.core import fitting
    from scalelaws.multipower.law import Curve, Design, make_law

    steps = np.arange(10, 201, 10)
    lrs = [np.full(200, 1e-3), np.r_[np.full(120, 1e-3), np.full(80, 1e-4)]]
    curves = [
        Curve(f"c{i}", lr, steps, 3.0 - 0.1 * np.log(steps) - 0.1 * i) for i, lr in enumerate(lrs)
    ]
    D = Design(curves)
    law = make_law("multipower")
    theta = fitting._to_u(law, np.array([1.0, 0.5, 0.5, 100.0, 50.0, 0.5, 0.5]))
    w = (D.curve_id == 1).astype(float) * 2.0  # curve 0 not drawn, curve 1 drawn twice
    full = fitting.objective(law, D, D.y, w)(theta)
    keep = w > 0
    sub = law.subset(D, keep)
    part = fitting.objective(law, sub, D.y[keep], w[keep])(theta)
    assert sub.n == keep.sum() and np.isclose(full[0], part[0], rtol=1e-12)
    np.testing.assert_allclose(full[1], part[1], rtol=1e-10, atol=1e-15)
