"""The figures show the laws' prediction intervals (issue #26): a shaded band whose edges are
exactly the library's Prediction lo / hi, where the fit can give one; no band, and still a
figure, where it cannot (no bootstrap refits, too few groups, no result)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_trust import zhang

import scalelaws as sl
from scalelaws.capacity import plots as capacity_plots
from scalelaws.core import figures
from scalelaws.critical_batch import plots as cbs_plots
from scalelaws.multipower import plots as mpl_plots
from scalelaws.multipower.fit import MultipowerFit, collect_curves

DATA = Path(__file__).resolve().parent / "data"
QUICK = DATA / "study_quickstart"


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot modules save, kept open for their artists (then saved as usual)."""
    figs = []

    def keep(fig, path, dpi=110):
        figs.append(fig)
        return figures.save(fig, path, dpi)

    for mod in (mpl_plots, cbs_plots, capacity_plots):
        monkeypatch.setattr(mod, "save", keep)
    return figs


def edges(poly) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, lower edge, upper edge) of a fill_between band."""
    v = poly.get_paths()[0].vertices
    xs = np.unique(v[:, 0])
    lo = np.array([v[v[:, 0] == x, 1].min() for x in xs])
    hi = np.array([v[v[:, 0] == x, 1].max() for x in xs])
    return xs, lo, hi


@pytest.fixture(scope="module")
def quick():
    study = sl.load_study(QUICK)
    fit = MultipowerFit.load(QUICK / "mpl_fit.json")  # 30 bootstrap refits
    roles = {c["name"]: c["role"] for c in fit.curves}
    pick = lambda role: study.curves.filter(  # noqa: E731
        pl.col("trial").is_in([n for n, r in roles.items() if r == role])
    )
    return fit, collect_curves(pick("fit"), pick("test"), study=study)


def test_mpl_curves_shade_the_test_curves_with_the_fits_prediction(tmp_path, drawn, quick):
    fit, curves = quick
    assert fit.bootstrap_params
    png = mpl_plots.plot_curves(curves, fit.params, tmp_path / "f.png", law=fit.law, fit=fit)
    assert png.read_bytes()[:4] == b"\x89PNG"
    (fig,) = drawn
    (poly,) = figures.bands(fig)  # one test curve, one band
    (test,) = [c for c in curves if c.role == "test"]
    xs, lo, hi = edges(poly)
    pred = fit.prediction(test.lr, xs.astype(int))
    np.testing.assert_allclose(lo, pred.lo, rtol=1e-12)
    np.testing.assert_allclose(hi, pred.hi, rtol=1e-12)
    assert np.all(hi > lo)
    ax = fig.axes[0]
    assert "90% prediction interval" in ax.get_title()
    assert "90% prediction interval" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_mpl_curves_can_shade_every_curve(tmp_path, drawn, quick):
    fit, curves = quick
    mpl_plots.plot_curves(
        curves, fit.params, tmp_path / "f.png", fit=fit, band_roles=("fit", "test")
    )
    assert len(figures.bands(drawn[0])) == len(curves) == 4


def test_mpl_curves_without_bootstrap_or_fit_have_no_band(tmp_path, drawn, quick):
    fit, curves = quick
    bare = MultipowerFit.from_dict(fit.to_dict() | {"info": {}})
    assert not bare.bootstrap_params
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = mpl_plots.plot_curves(curves, bare.params, tmp_path / "a.png", fit=bare)
        b = mpl_plots.plot_curves(curves, fit.params, tmp_path / "b.png")
    assert a.read_bytes()[:4] == b.read_bytes()[:4] == b"\x89PNG"
    assert [len(figures.bands(f)) for f in drawn] == [0, 0]
    assert "no prediction interval" in drawn[0].axes[0].get_title()


def test_report_figure_of_a_multipower_fit_has_its_band(drawn):
    from scalelaws.study.findings import find_results
    from scalelaws.study.plots import result_png

    study = sl.load_study(QUICK)
    (mpl,) = [f for f in find_results(QUICK) if not f.is_proposal]
    assert result_png(mpl, study)[:4] == b"\x89PNG"
    assert len(figures.bands(drawn[0])) == 1


def test_cbs_figure_shades_the_cbs_vs_n_prediction(tmp_path, drawn):
    res = sl.fit_cbs(zhang(), ref_batch=256, n_boot=200)
    cbs_plots.plot_cbs(list(res.groups), res.scaling, tmp_path / "c.png")
    (fig,) = drawn
    (poly,) = figures.bands(fig)
    assert poly.axes is fig.axes[1]  # the CBS-vs-N panel
    xs, lo, hi = edges(poly)
    pred = res.prediction(xs)
    np.testing.assert_allclose(lo, pred.lo, rtol=1e-9)
    np.testing.assert_allclose(hi, pred.hi, rtol=1e-9)
    assert np.all(hi > lo) and xs.min() == min(g.params for g in res.groups)


def test_cbs_figure_without_a_scaling_law_has_no_band(tmp_path, drawn):
    res = sl.fit_cbs(zhang().filter(pl.col("batch_size") <= 512), ref_batch=256, n_boot=200)
    assert res.scaling == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = cbs_plots.plot_cbs(list(res.groups), res.scaling, tmp_path / "c.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and figures.bands(drawn[0]) == []


def test_capacity_figure_shades_r_times_p_below_the_cap(tmp_path, drawn):
    res = sl.fit_capacity(sl.load_study(DATA / "study_capacity").runs)
    r = res.ratio["estimate"]
    capacity_plots.plot_capacity_study(list(res.trials), r, tmp_path / "a.png", result=res)
    capacity_plots.plot_capacity_study(list(res.trials), r, tmp_path / "b.png")
    banded, plain = drawn
    assert figures.bands(plain) == []
    (poly,) = figures.bands(banded)
    xs, lo, hi = edges(poly)
    cap = max(t["max_bits"] for t in res.trials)
    pred = res.prediction(xs, cap)
    np.testing.assert_allclose(lo, pred.lo, rtol=1e-9)
    np.testing.assert_allclose(hi, pred.hi, rtol=1e-9)
    assert hi.max() <= cap  # only where the law is R·P, not the cap
    assert xs.max() < max(t["params"] for t in res.trials) * 1.5  # stops before the grid's end


@pytest.mark.parametrize("name", ["study_cbs", "study_capacity"])
def test_report_draws_cbs_and_capacity_fits_with_their_bands(name, drawn):
    from scalelaws.study.findings import find_results
    from scalelaws.study.plots import result_png

    (found,) = find_results(DATA / name)
    assert result_png(found, sl.load_study(DATA / name))[:4] == b"\x89PNG"
    (fig,) = drawn
    assert len(figures.bands(fig)) == 1
