"""Fit the multi-power law to loss curves given as tables or files (Luo et al., ICLR 2025,
arXiv 2503.12811; docs/laws.md §1).

    study = load_study("results/schedules")
    fit = fit_multipower(study.curves.filter(pl.col("grid.schedule.name") != "wsd"), study=study)

Curves are a Polars curves table (columns trial, step, lr and the loss column; one curve per
trial), or a list of `Curve`s or step,lr,loss files. With `study` (or `lr`) each trial's
exact per-update LR comes from its spec; without, it is rebuilt from the logged lr rows and the
result says so (info["lr_source"], diagnostic LR_REBUILT).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalelaws.core.fitting import FitResult, fit, input_hash, metrics, minimise
from scalelaws.core.progress import Progress, for_task
from scalelaws.multipower import checks as mplcheck
from scalelaws.multipower.checks import check_params
from scalelaws.multipower.curves import Curve, curves_from_frame, read_curve_file
from scalelaws.multipower.law import LAWS, MPL_PARAMS, Design, internal_theta, make_law, predict
from scalelaws.study.load import Study, as_study


def fit_multipower(
    curves,
    *,
    test=None,
    study: Study | str | Path | None = None,
    lr: Mapping[str, np.ndarray] | None = None,
    law: str = "multipower",
    loss: str = "eval_loss",
    warmup_steps: int | None = None,
    step_offset: int = 0,
    weighting: str = "curve",
    n_boot: int = 30,
    seed: int = 0,
    max_starts: int = 4,
    polish: bool = False,
    progress: Progress | None = None,
) -> MultipowerFit:
    """Fit `law` ("multipower", "power" or "momentum") on `curves`; predict `test`.

    curves, test: a curves frame (one curve per trial), or a list of Curves / step,lr,loss
        files. A trial in both is a test curve; a Curve in `curves` keeps its own role.
    study: a Study (or its folder): exact LR and warmup from each trial's spec.
    lr: {trial: per-update LR} given by the caller (wins over the study).
    loss: the loss column of a frame (eval_loss, ewa_eval_loss, train_loss).
    warmup_steps: loss rows up to it are dropped; default: the spec's, else the first step at
        the peak LR (frames) or 0 (files).
    step_offset: files only: updates done = file step + offset (1 for the MPL refdata CSVs).
    weighting: "curve" (each curve the same total weight) or "point" (the paper).
    n_boot, seed: bootstrap over fit curves for the 95% intervals (0: none; fewer than 20:
        diagnostic FEW_RESAMPLES, the intervals are not 95% intervals).
    progress: progress(done, n_boot) after each bootstrap refit (scalelaws.core.progress).
    Every result carries the diagnostics of scalelaws.core.checks (docs/laws.md §7).
    """
    if n_boot < 0:
        raise ValueError(f"n_boot={n_boot}: must be >= 0 (0: no intervals; >= 20 for 95%)")
    cv = collect_curves(curves, test, study, lr, loss, warmup_steps, step_offset)
    return fit_curves(
        cv,
        _check_law(law),
        weighting=weighting,
        n_boot=n_boot,
        seed=seed,
        max_starts=max_starts,
        polish=polish,
        progress=for_task(progress, "bootstrap refits"),
    )


def evaluate_multipower(
    params: Mapping[str, float],
    curves,
    *,
    test=None,
    law: str = "multipower",
    study: Study | str | Path | None = None,
    lr: Mapping[str, np.ndarray] | None = None,
    loss: str = "eval_loss",
    warmup_steps: int | None = None,
    step_offset: int = 0,
) -> MultipowerFit:
    """The metrics of given parameters (no fitting) on the same kinds of curves (test curves
    alone are fine here)."""
    law = _check_law(law)
    names = MPL_PARAMS if law == "multipower" else make_law(law).names
    check_params(params, names, law)
    cv = collect_curves(curves, test, study, lr, loss, warmup_steps, step_offset, require_fit=False)
    return evaluation_result(params, cv, law)


def collect_curves(
    curves,
    test=None,
    study: Study | str | Path | None = None,
    lr: Mapping[str, np.ndarray] | None = None,
    loss: str = "eval_loss",
    warmup_steps: int | None = None,
    step_offset: int = 0,
    *,
    require_fit: bool = True,
) -> list[Curve]:
    """Fit curves then test curves as `Curve`s (see fit_multipower for the arguments)."""
    if warmup_steps is not None and not warmup_steps >= 0:
        raise ValueError(f"warmup_steps={warmup_steps}: must be >= 0")
    if step_offset < 0:
        raise ValueError(f"step_offset={step_offset}: must be >= 0 (1 for the MPL refdata CSVs)")
    study = as_study(study) if study is not None else None
    schedule_of = _schedule_source(study, lr, warmup_steps)
    kw = dict(loss=loss, schedule_of=schedule_of, warmup=warmup_steps, offset=step_offset)
    tests = _as_curves(test, "test", **kw) if test is not None else []
    names = {c.name for c in tests}
    fits = [c for c in _as_curves(curves, "fit", **kw) if c.name not in names]
    if require_fit and not any(c.role == "fit" for c in fits):
        raise ValueError(
            "no fitting curve: the curves are empty or have no loss rows after warmup; "
            "check the filter and the loss column"
        )
    return fits + tests


def _check_law(law: str) -> str:
    if law not in LAWS:
        raise ValueError(f"law: unknown {law!r}; use one of {', '.join(LAWS)}")
    return law


def _schedule_source(study, lr, warmup_steps):
    """trial -> (exact LR, warmup) from `lr` or the study's spec; None when neither has it."""
    if study is None and lr is None:
        return None

    def schedule_of(trial: str):
        if lr is not None and trial in lr:
            arr = np.asarray(lr[trial], float)
            warm = (
                warmup_steps if warmup_steps is not None else int(np.argmax(arr >= arr.max())) + 1
            )
            return arr, warm
        if study is None:
            return None
        try:
            arr, warm = study.schedule(trial)
        except ValueError:
            return None  # no usable spec: the LR is rebuilt from the rows (and reported)
        return arr, warm if warmup_steps is None else warmup_steps

    return schedule_of


def _as_curves(obj, role: str, *, loss, schedule_of, warmup, offset) -> list[Curve]:
    if hasattr(obj, "columns") and hasattr(obj, "filter"):  # a Polars frame
        return curves_from_frame(
            obj, role=role, loss=loss, schedule_of=schedule_of, warmup_steps=warmup
        )
    if isinstance(obj, Curve | str | Path):
        obj = [obj]
    if not isinstance(obj, Sequence):
        raise ValueError(
            f"{role} curves: give a curves frame, Curves or file paths, not {type(obj).__name__}"
        )
    out = []
    for item in obj:
        if isinstance(item, Curve):
            out.append(item if role == "fit" or item.role == role else _with_role(item, role))
        else:
            w = 0 if warmup is None else warmup
            out.append(read_curve_file(item, role=role, warmup_steps=w, step_offset=offset))
    return out


def _with_role(c: Curve, role: str) -> Curve:
    return Curve(c.name, c.lr, c.steps, c.loss, role=role, lr_source=c.lr_source)


# --------------------------------------------------------------------------- the fit on Curves


def evaluate(
    params: Mapping[str, float], curves: Sequence[Curve], law: str = "multipower"
) -> list[dict]:
    """Per-curve metrics (exact predict): {name, role, r2, mae, rmse, pred_e, worst_e}."""
    rows = []
    for cv in curves:
        yhat = predict(params, cv.lr, cv.steps, law)
        rows.append({"name": cv.name, "role": cv.role, **metrics(cv.loss, yhat)})
    return rows


def summarise(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Mean of each metric over curves, per role: {"fit": {...}, "test": {...}}."""
    out = {}
    for role in ("fit", "test"):
        sel = [r for r in rows if r["role"] == role]
        if sel:
            out[role] = {
                k: float(np.mean([r[k] for r in sel]))
                for k in ("r2", "mae", "rmse", "pred_e", "worst_e")
            }
    return out


def curve_weights(curve_id: np.ndarray, weighting: str = "curve") -> np.ndarray | None:
    """Per-point weights: "curve" gives every curve the same total weight (mean weight 1), so a
    curve logged twice as often does not count twice; "point" weighs every point alike (paper)."""
    if weighting == "point":
        return None
    if weighting != "curve":
        raise ValueError(f"weighting must be 'curve' or 'point', got {weighting!r}")
    counts = np.bincount(curve_id)
    return len(curve_id) / (np.count_nonzero(counts) * counts[curve_id])


@dataclass(frozen=True)
class MultipowerFit(FitResult):
    """A fitted (or evaluated) loss-curve law: FitResult plus `predict` (docs/laws.md §1).

    `info` also holds `lr_source` per curve (spec / given / rebuilt / spec-mismatch), the
    longest fitted curve `max_step` and its peak LR `peak_lr` (the fit's range).
    """

    def predict(self, lr: np.ndarray, steps=None) -> np.ndarray:
        """Predicted loss after each of `steps` updates under the per-update schedule `lr` (e.g.
        scalelaws.schedules.lr_array(...)); default: every step with Σ lr[0:s] > 0 (the
        registry's warmup starts at lr[0] = 0, where the law is undefined)."""
        lr = np.asarray(lr, float)
        if steps is None:
            steps = np.flatnonzero(np.cumsum(lr) > 0) + 1
        return predict(self.params, lr, steps, self.law)

    def extrapolation(self, lr: np.ndarray, steps=None) -> tuple:
        """EXTRAPOLATION diagnostics of predict(lr, steps): beyond the fitted steps or LRs."""
        return mplcheck.prediction_extrapolation(self.info.get("fit_range") or {}, lr, steps)

    def prediction(
        self,
        lr: np.ndarray,
        steps=None,
        *,
        level: float = 0.9,
        seed: int = 0,
        residuals: str = "in-sample",
    ):
        """predict(lr, steps) with `level` prediction intervals: a core Prediction (bootstrap
        refits plus resampled residuals, "in-sample" or "oob-scaled";
        scalelaws.multipower.predict)."""
        from scalelaws.multipower.predict import mpl_prediction

        return mpl_prediction(self, lr, steps, level=level, seed=seed, residuals=residuals)

    @property
    def bootstrap_params(self) -> list[dict[str, float]]:
        """The parameters of every bootstrap refit ([] without a bootstrap)."""
        return list(self.info.get("bootstrap_params") or [])


def fit_curves(
    curves: Sequence[Curve],
    law: str = "multipower",
    *,
    weighting: str = "curve",
    n_boot: int = 0,
    seed: int = 0,
    max_starts: int = 4,
    polish: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> MultipowerFit:
    """Fit `law` on the curves with role "fit"; report exact metrics for every curve.

    The search runs on the blocked LD sum; `polish` then refines from the best point on the exact
    sum (slow: seconds per 1e6 (step, drop) pairs). Intervals (n_boot > 0) come from a bootstrap
    over fit curves.
    """
    fit_cv = [c for c in curves if c.role == "fit"]
    if not fit_cv:
        raise ValueError("no curve has role 'fit': pass at least one fitting curve")
    L = make_law(law)
    D = Design(fit_cv)
    w = curve_weights(D.curve_id, weighting)
    res = fit(
        L,
        D,
        D.y,
        weights=w,
        max_starts=max_starts,
        groups=D.curve_id,
        n_boot=n_boot,
        seed=seed,
        hash_parts=[law] + [a for c in fit_cv for a in (c.lr, c.steps)],
        noise=mplcheck.curve_noise(fit_cv),
        labels=[c.name for c in fit_cv],
        progress=progress,
    )
    params = res.params
    info = dict(res.info, weighting=weighting)
    if law == "multipower" and polish:
        De = Design(fit_cv, exact=True, log_ref=D.log_ref)
        theta, fun, _ = minimise(L, De, De.y, [internal_theta(params, De)], weights=w, max_starts=1)
        params = L.reported(theta, De)
        info.update(polished=True, objective=fun)
    info.update(oob_residuals(fit_cv, info, law))
    return _result(law, params, curves, res.input_hash, info, res.intervals, res.diagnostics)


def oob_residuals(fit_cv: Sequence[Curve], info: Mapping, law: str) -> dict:
    """Out-of-bag scoring of the bootstrap refits: each refit predicts the fit curves it did not
    draw (exact predict). Returns {} without a bootstrap or out-of-bag curve, else
    oob_residual_scale = median |y − ŷ| out of bag / median |y − ŷ| of the same refits on the
    curves they drew (in bag), and oob_points. The medians keep a few refits that cannot pin
    the law down (one schedule drawn) from ruling the ratio."""
    params, counts = info.get("bootstrap_params") or [], info.get("bootstrap_counts") or []
    oob, inb = [], []
    for p, cnt in zip(params, counts, strict=True):
        for c, n in zip(fit_cv, cnt, strict=True):
            r = np.abs(np.asarray(c.loss, float) - predict(p, c.lr, c.steps, law))
            (inb if n > 0 else oob).append(r)
    if not oob or not inb:
        return {}
    o, i = np.concatenate(oob), np.concatenate(inb)
    scale = float(np.median(o) / np.median(i)) if np.median(i) > 0 else float("nan")
    return {"oob_residual_scale": scale, "oob_points": int(o.size)}


def evaluation_result(
    params: Mapping[str, float], curves: Sequence[Curve], law: str = "multipower"
) -> MultipowerFit:
    """A MultipowerFit for given parameters (no fitting): metrics of every curve."""
    fit_cv = [c for c in curves if c.role == "fit"] or list(curves)
    y = np.concatenate([np.asarray(c.loss, float) for c in fit_cv])
    h = input_hash(law, y, *[a for c in fit_cv for a in (c.lr, c.steps)])
    params = {k: float(v) for k, v in params.items()}
    return _result(law, params, curves, h, {"evaluated_only": True}, {}, ())


def _result(law, params, curves, h, info, intervals, diags) -> MultipowerFit:
    """Exact predictions → per-curve metrics, their means per role, residuals of fit curves."""
    rows, resid = [], []
    fit_any = any(c.role == "fit" for c in curves)
    for cv in curves:
        yhat = predict(params, cv.lr, cv.steps, law)
        rows.append({"name": cv.name, "role": cv.role, **metrics(cv.loss, yhat)})
        if cv.role == "fit" or not fit_any:
            resid.extend((np.asarray(cv.loss, float) - yhat).tolist())
    rng = mplcheck.fit_range(curves)
    info = dict(
        info,
        lr_source={c.name: c.lr_source for c in curves},
        max_step=rng["max_step"],
        peak_lr=rng["peak_lr"],
        fit_range=rng,
    )
    extrapolated = mplcheck.test_extrapolation(curves, rng)
    return MultipowerFit(
        law=law,
        params=params,
        intervals=intervals,
        residuals=resid,
        metrics=summarise(rows),
        input_hash=h,
        curves=rows,
        info=info,
        diagnostics=tuple(diags) + mplcheck.lr_diagnostics(curves) + extrapolated,
    )
