"""Back-tests: refit a law without what it is asked to predict, predict that, and count how
often the stated prediction interval covers what was measured (docs/analysis.md "Back-tests",
docs/laws.md §7 "Prediction intervals").

Splits per law:
- multipower: held-out schedules (the `test` curves: fit on the others, predict them whole),
  and rolling cut-offs (fit every fit curve's steps <= f · the longest horizon, predict the
  steps after it), f in `cutoffs`;
- cbs: rolling largest scales: fit on the k smallest model sizes (k = 3 .. n − 1), predict
  every larger group's CBS and its steps to target at each batch size;
- capacity: rolling largest P: per exposure count, fit R on the trials below the k-th
  largest P, predict the bits of those at or above it;
- chinchilla: rolling largest FLOP budgets: approach 3's loss of every held-out run, approach
  2's N_opt of every held-out isoFLOP slice (scalelaws.study.backtest_chinchilla); calibrated
  per quantity, each diagnostic naming its quantity.

    bt = backtest(["cosine.csv", "constant.csv"], test=["wsd.csv"], warmup_steps=2160)
    bt.metrics["coverage"], bt.metrics["median_rel_error"], bt.worst, bt.diagnostics
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.prediction import check_level
from scalelaws.core.result import Result

LAWS = ("multipower", "cbs", "capacity", "chinchilla")
MIN_POINTS = 10  # fewer held-out points cannot tell 90% coverage from 80%
LOW_MARGIN, HIGH_MARGIN = 0.10, 0.07  # nominal 90%: coverage in [80%, 97%] is calibrated
MAX_REL_WIDTH = 1.0  # an interval wider than the measured value itself is useless
MAX_WIDTH_OVER_ERROR = 10.0  # calibrated normal errors: width ≈ 4.9 × median |error| at 90%


@dataclass(frozen=True)
class Backtest(Result):
    """Held-out predictions of a law, their `level` intervals and what was measured.

    rows: one per held-out point: split, held_out (curve / group / trial), quantity, x,
    predicted, lo, hi, measured, covered, rel_error. metrics: coverage, n_points,
    median_rel_error, worst_rel_error, median_rel_width, coverage[<split>]. worst: the row of
    the largest relative error. diagnostics: OVERCONFIDENT, UNDERCONFIDENT, TOO_FEW_POINTS.
    """

    law: str
    level: float
    rows: tuple[dict, ...]
    worst: dict = field(default_factory=dict)
    params: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        return list(dict.fromkeys(r["split"] for r in self.rows))


def backtest(data, law: str = "multipower", *, level: float = 0.9, **kw) -> Backtest:
    """Back-test `law` on `data` (module doc). multipower: data are fit curves (files, Curves,
    a curves frame or a Study) with test=..., study=, warmup_steps=, step_offset=, loss=,
    cutoffs=(0.5, 0.75), n_boot=20. cbs: a CBSResult, or what fit_cbs takes (table or
    study=) with its options. capacity: a CapacityResult, or what fit_capacity takes.
    chinchilla: a runs frame (with params_col=, tokens_col=, loss_col=, flops_col=), a CSV as
    `scalelab fit chinchilla` reads it or a study folder, with approach=, folds=3, compute=,
    budget_col=, n_boot=200, seed= (scalelaws.study.backtest_chinchilla)."""
    level = check_level(level)
    if law not in LAWS:
        raise ValueError(f"law: unknown {law!r}; use one of {', '.join(LAWS)}")
    if law == "multipower":
        rows, info = _multipower(data, level, **kw)
    elif law == "cbs":
        rows, info = _cbs(data, level, **kw)
    elif law == "capacity":
        rows, info = _capacity(data, level, **kw)
    else:
        from scalelaws.study.backtest_chinchilla import chinchilla_rows

        rows, info = chinchilla_rows(data, level, **kw)
        return summarise(law, level, rows, info, by_quantity=True)
    return summarise(law, level, rows, info)


def summarise(
    law: str, level: float, rows: list[dict], info: dict | None = None, by_quantity=False
) -> Backtest:
    """A Backtest from held-out rows (predicted, lo, hi, measured, split ...). by_quantity:
    rows of several quantities (loss, N_opt) are calibrated each on its own (metrics
    coverage[<quantity>], n_points[...], median_rel_error[...]; diagnostics with the quantity
    as subject)."""
    if not rows:
        raise ValueError(f"backtest {law}: no held-out point; give more scales or curves")
    pred = np.array([r["predicted"] for r in rows], float)
    meas = np.array([r["measured"] for r in rows], float)
    lo = np.array([r["lo"] for r in rows], float)
    hi = np.array([r["hi"] for r in rows], float)
    if not (np.all(np.isfinite(meas)) and np.all(np.isfinite(pred))):
        raise ValueError(f"backtest {law}: a measured or predicted value is not finite")
    covered = (lo <= meas) & (meas <= hi)
    rel = np.abs(pred - meas) / np.abs(meas)
    rows = [
        r | {"covered": bool(c), "rel_error": float(e)}
        for r, c, e in zip(rows, covered, rel, strict=True)
    ]
    width = (hi - lo) / np.abs(meas)
    metrics: dict[str, Any] = {
        "coverage": float(covered.mean()),
        "n_points": len(rows),
        "median_rel_error": float(np.median(rel)),
        "worst_rel_error": float(rel.max()),
        "median_rel_width": float(np.median(width)),
    }
    for split in dict.fromkeys(r["split"] for r in rows):
        sel = np.array([r["split"] == split for r in rows])
        metrics[f"coverage[{split}]"] = float(covered[sel].mean())
    worst = rows[int(np.argmax(rel))]
    err = float(np.median(np.abs(pred - meas)))
    diags = calibration(level, metrics, float(np.median(hi - lo)), err)
    quantities = list(dict.fromkeys(r["quantity"] for r in rows))
    if by_quantity and len(quantities) > 1:
        diags = ()
        for q in quantities:
            sel = np.array([r["quantity"] == q for r in rows])
            m = {"coverage": float(covered[sel].mean()), "n_points": int(sel.sum()),
                 "median_rel_error": float(np.median(rel[sel])),
                 "worst_rel_error": float(rel[sel].max()),
                 "median_rel_width": float(np.median(width[sel]))}  # fmt: skip
            metrics |= {f"{k}[{q}]": v for k, v in m.items() if k != "worst_rel_error"}
            e = float(np.median(np.abs(pred - meas)[sel]))
            diags += tuple(
                replace(d, subject=q)
                for d in calibration(level, m, float(np.median((hi - lo)[sel])), e)
            )
    return Backtest(
        law=law,
        level=level,
        rows=tuple(rows),
        worst=worst,
        metrics=metrics,
        diagnostics=diags,
        info=(info or {}) | {"calibrated_band": [level - LOW_MARGIN, min(level + HIGH_MARGIN, 1)]},
    )


def calibration(level: float, m: dict, width: float, err: float) -> tuple[Diagnostic, ...]:
    """OVERCONFIDENT below level − 0.10; UNDERCONFIDENT when intervals are wider than the
    measured value (median), or cover more than level + 0.07 while 10× wider than the median
    error; TOO_FEW_POINTS under 10 held-out points."""
    cov, n, out = m["coverage"], m["n_points"], []
    pct = f"{100 * cov:.0f}% of {n} held-out points inside the {100 * level:.0f}% intervals"
    if n < MIN_POINTS:
        out.append(
            Diagnostic(
                "TOO_FEW_POINTS",
                "warning",
                f"{n} held-out points: coverage cannot tell {100 * level:.0f}% from "
                f"{100 * (level - LOW_MARGIN):.0f}%",
                "add scales (groups, trials) before trusting the intervals",
            )
        )
    if cov < level - LOW_MARGIN:
        out.append(
            Diagnostic(
                "OVERCONFIDENT",
                "warning",
                f"{pct}: below nominal (median relative error {m['median_rel_error']:.3g}, "
                f"worst {m['worst_rel_error']:.3g})",
                "read the intervals as too narrow; add curves or scales",
            )
        )
    wide_rel = m["median_rel_width"] > MAX_REL_WIDTH
    wide_err = cov > level + HIGH_MARGIN and err > 0 and width > MAX_WIDTH_OVER_ERROR * err
    if wide_rel or wide_err:
        why = (
            f"median interval width {m['median_rel_width']:.3g}× the measured value"
            if wide_rel
            else f"median interval width {width:.3g} is {width / err:.3g}× the median error"
        )
        out.append(
            Diagnostic(
                "UNDERCONFIDENT",
                "warning",
                f"{pct}; {why}: the intervals are uselessly wide",
                "add scales so the fit pins the law down",
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------- multi-power law


def _multipower(data, level, *, test=None, study=None, warmup_steps=None, step_offset=0,
                loss="eval_loss", cutoffs=(0.5, 0.75), n_boot=20, seed=0, lr=None):  # fmt: skip
    from scalelaws.multipower.curves import Curve
    from scalelaws.multipower.fit import collect_curves, fit_curves

    if isinstance(data, str | Path) and Path(data).is_dir() and study is None:
        from scalelaws.study.load import load_study

        study = load_study(data)
        data = study.curves
    cv = collect_curves(data, test, study, lr, loss, warmup_steps, step_offset)
    fits = [c for c in cv if c.role == "fit"]
    tests = [c for c in cv if c.role == "test"]
    for c in cv:
        if not np.all(np.isfinite(c.loss)):
            raise ValueError(f"backtest: curve {c.name} has non-finite losses; drop those rows")
    if not tests and not cutoffs:
        raise ValueError("backtest: no split; give test curves or cut-offs")
    rows: list[dict] = []
    if tests:
        res = fit_curves(fits, n_boot=n_boot, seed=seed)
        for c in tests:
            rows += _curve_rows("held-out schedules", res, c, np.ones(c.steps.size, bool), level)
    horizon = max(int(c.steps.max()) for c in fits)
    for f in cutoffs:
        if not 0 < f < 1:
            raise ValueError(f"cutoffs: {f} is not a fraction of the horizon in (0, 1)")
        t = f * horizon
        part = [Curve(c.name, c.lr, c.steps[c.steps <= t], c.loss[c.steps <= t]) for c in fits
                if np.count_nonzero(c.steps <= t) >= 3]  # fmt: skip
        later = [c for c in fits if np.any(c.steps > t)]
        if not part or not later:
            raise ValueError(
                f"cut-off {f} (step {t:.0f}): no curve has >= 3 points before it and one after; "
                "give longer curves or another cut-off"
            )
        res = fit_curves(part, n_boot=n_boot, seed=seed)
        for c in later:
            rows += _curve_rows(f"steps > {t:.0f}", res, c, c.steps > t, level)
    info = {"fit_curves": [c.name for c in fits], "test_curves": [c.name for c in tests],
            "cutoffs": list(cutoffs), "horizon": horizon, "n_boot": n_boot}  # fmt: skip
    return rows, info


def _curve_rows(split, res, c, mask, level) -> list[dict]:
    p = res.prediction(c.lr, c.steps[mask], level=level)
    return [
        {
            "split": split,
            "held_out": c.name,
            "quantity": "loss",
            "x": int(s),
            "predicted": a,
            "lo": b,
            "hi": h,
            "measured": float(m),
        }  # fmt: skip
        for s, a, b, h, m in zip(c.steps[mask], p.point, p.lo, p.hi, c.loss[mask], strict=True)
    ]


# --------------------------------------------------------------------------- critical batch


def _cbs(data, level, **kw):
    from scalelaws.critical_batch.fit import CBSResult, fit_cbs
    from scalelaws.critical_batch.predict import scaling_prediction, steps_prediction

    if isinstance(data, CBSResult):
        res = data
    elif isinstance(data, str | Path) and Path(data).is_dir():
        res = fit_cbs(study=data, **kw)
    else:
        res = fit_cbs(data, **kw)
    gs = [g for g in res.groups if g.params is not None]
    sizes = sorted({g.params for g in gs})
    if len(sizes) < 4:
        raise ValueError(
            f"backtest cbs: {len(sizes)} model sizes; a back-test fits >= 3 and predicts a larger "
            "one, so it needs >= 4"
        )
    rows = []
    for k in range(3, len(sizes)):
        train = [g for g in gs if g.params < sizes[k]]
        split = f"N > {sizes[k - 1]:.3g}"
        for g in (g for g in gs if g.params >= sizes[k]):
            if np.isfinite(g.cbs):
                p = scaling_prediction(train, g.params, level=level)
                rows.append(_row(split, g.group, "cbs", g.params, p, 0, g.cbs))
            p = steps_prediction(train, g.params, g.batch_sizes, level=level)
            for i, (b, t) in enumerate(zip(g.batch_sizes, g.steps, strict=True)):
                rows.append(_row(split, g.group, "steps_to_target", b, p, i, t))
    return rows, {"groups": [g.group for g in gs], "ref_batch": res.ref_batch}


def _row(split, held, quantity, x, p, i, measured) -> dict:
    return {"split": split, "held_out": held, "quantity": quantity, "x": float(x),
            "predicted": p.point[i], "lo": p.lo[i], "hi": p.hi[i], "measured": float(measured)}  # fmt: skip


# --------------------------------------------------------------------------- capacity


def _capacity(data, level, **kw):
    from scalelaws.capacity.fit import CapacityResult, fit_capacity
    from scalelaws.capacity.predict import ratio_prediction

    res = data if isinstance(data, CapacityResult) else fit_capacity(data, **kw)
    rows = []
    for e in sorted({t["exposures"] for t in res.trials}, reverse=True):
        sel = [t for t in res.trials if t["exposures"] == e and t["bits"] > 0]
        sizes = sorted({t["params"] for t in sel})
        for k in range(2, len(sizes)):
            train = [t for t in sel if t["params"] < sizes[k]]
            held = [t for t in sel if t["params"] >= sizes[k]]
            try:
                p = ratio_prediction(
                    [t["params"] for t in train], [t["bits"] for t in train],
                    [t["max_bits"] for t in train], [t["params"] for t in held],
                    [t["max_bits"] for t in held], bound_frac=res.bound_frac, level=level,
                )  # fmt: skip
            except ValueError:
                continue  # fewer than 2 capacity-bound trials below this size
            split = f"{e:g} exposures, P >= {sizes[k]:.3g}"
            rows += [_row(split, t["name"], "bits", t["params"], p, i, t["bits"])
                     for i, t in enumerate(held)]  # fmt: skip
    if not rows:
        raise ValueError(
            "backtest capacity: no exposure count has 2 capacity-bound trials below a larger "
            "model size; it needs >= 3 model sizes"
        )
    return rows, {"bound_frac": res.bound_frac}
