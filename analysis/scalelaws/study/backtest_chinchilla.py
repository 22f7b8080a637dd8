"""Back-test splits of the Chinchilla law (scalelaws.study.backtest, docs/chinchilla.md
"Back-test"): rolling largest budgets, k = 1 .. `folds`.

- approach 3: fit L(N, D) = E + A/N^α + B/D^β on the runs whose C lies below the k-th largest
  budget (below the smallest C of its runs), predict the loss of every run at or above it
  with its prediction interval (ChinchillaFit.prediction);
- approach 2: fit the isoFLOP power law on the budgets below the k-th largest slice that the
  full-data fit uses, predict N_opt at each held-out used slice's C (IsoFLOPFit.prediction).
  Measured: that slice's own fitted optimum in the full-data fit, its own 95% delta-method
  interval kept in the row (measured_lo, measured_hi). A handful of slices gives a handful of
  points: the Backtest then says TOO_FEW_POINTS for approach 2; none are invented.

Budgets: the `budget_col` values (runs with a missing or non-finite one are no slice's, but
are fitted and held out by their C in approach 3), else runs whose log10 C lie within
`gap_dex` of their neighbours (as fit_isoflop slices them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

MIN_TRAIN_RUNS = 10  # 2 per parameter of the loss surface
APPROACHES = ("both", "2", "3")


def _input(data, compute: str, columns: dict, budget_col):
    """(frame, column kwargs, budget column) from a study folder, a CSV, a RunsInput or a
    frame; folders and CSVs through scalelaws.chinchilla.study.read_runs."""
    from scalelaws.chinchilla.study import RunsInput, read_runs

    if isinstance(data, str | Path):
        p = Path(data)
        inp = read_runs(study=p, compute=compute) if p.is_dir() else read_runs(p, compute=compute)
        return inp.frame, inp.columns | columns, budget_col or inp.budget_col
    if isinstance(data, RunsInput):
        return data.frame, data.columns | columns, budget_col or data.budget_col
    if isinstance(data, pl.DataFrame):
        if not columns and {"N", "D", "loss"} <= set(data.columns):  # the fit CSV's names
            columns = {"params_col": "N", "tokens_col": "D", "loss_col": "loss"}
            columns["flops_col"] = "flops" if compute == "total" else "flops_per_token"
            budget_col = budget_col or ("budget" if "budget" in data.columns else None)
        return data, columns, budget_col
    raise TypeError(
        f"backtest chinchilla: data is a runs frame, a CSV or a study folder, not {type(data)}"
    )


def _budgets(t, labels, gap_dex: float) -> list[tuple[str, np.ndarray]]:
    """(label, row indices) per budget, in increasing C."""
    from scalelaws.chinchilla.isoflop import _slices

    if labels is None:
        return _slices(t, False, gap_dex)
    vals = np.asarray(labels, dtype=object)
    ok = np.array([v is not None and not (isinstance(v, float) and not np.isfinite(v))
                   for v in vals])  # fmt: skip
    out = [(str(g), np.flatnonzero(ok & (vals == g))) for g in dict.fromkeys(vals[ok])]
    return sorted(out, key=lambda s: float(np.mean(np.log(t.flops[s[1]]))))


def chinchilla_rows(data, level: float, *, approach: str = "both", folds: int = 3,
                    compute: str = "6ND", budget_col: str | None = None, gap_dex: float = 0.1,
                    n_boot: int = 200, seed: int = 0, window_dex: float | None = 0.6,
                    keep_unbracketed: bool = False, **columns):  # fmt: skip
    """Held-out rows and info of both splits (module doc). `columns`: params_col, tokens_col,
    loss_col, flops_col naming the frame's columns (chinchilla_runs). ValueError, one line,
    for one budget, too few runs below the largest, or a non-finite or non-positive value."""
    from scalelaws.chinchilla.runs import chinchilla_runs

    if approach not in APPROACHES:
        raise ValueError(f"approach={approach!r}: use one of {', '.join(APPROACHES)}")
    if not (isinstance(folds, int) and folds >= 1) or n_boot < 20:
        raise ValueError(f"folds={folds} (>= 1), n_boot={n_boot} (>= 20): out of range")
    frame, columns, budget_col = _input(data, compute, columns, budget_col)
    if budget_col is not None and budget_col not in frame.columns:
        raise ValueError(f"budget column {budget_col!r}: no such column ({frame.columns})")
    t = chinchilla_runs(frame, compute=compute, group_col=budget_col, **columns)
    if t.info["rows_dropped_invalid"]:
        raise ValueError(
            f"backtest chinchilla: {t.info['rows_dropped_invalid']} of {t.info['rows']} rows "
            f"have a missing, non-finite or non-positive value in {t.info['columns']}; drop them"
        )
    groups = t.groups if budget_col else None
    budgets = _budgets(t, groups, gap_dex)
    if len(budgets) < 2:
        raise ValueError(
            f"backtest chinchilla: {len(budgets)} FLOP budget(s) in {t.loss.size} runs; a "
            "back-test fits the smaller budgets and predicts a larger one, so it needs >= 2"
        )
    label = np.full(t.loss.size, "", dtype=object)
    for g, idx in budgets:
        label[idx] = g
    runs = pl.DataFrame({"N": t.n, "D": t.d, "loss": t.loss, "flops": t.flops,
                         "budget": label.astype(str)})  # fmt: skip
    cols = {"params_col": "N", "tokens_col": "D", "loss_col": "loss", "flops_col": "flops"}
    conv = "6ND" if compute == "6ND" else "total"  # flops is C under the caller's convention
    edges = [float(t.flops[idx].min()) for _, idx in budgets]
    fit_kw = {"n_boot": n_boot, "seed": seed, "compute": conv, **cols}
    rows, info = [], {"compute": compute, "folds": folds, "n_boot": n_boot, "seed": seed,
                      "budgets": [g for g, _ in budgets], "runs": int(t.loss.size)}  # fmt: skip
    if approach in ("both", "3"):
        rows += _approach3(runs, edges, folds, level, fit_kw, info)
    if approach in ("both", "2"):
        iso_kw = fit_kw | {"window_dex": window_dex, "keep_unbracketed": keep_unbracketed,
                           "on_bad_slice": "skip", "budget_col": "budget"}  # fmt: skip
        rows += _approach2(runs.filter(pl.col("budget") != ""), folds, level, iso_kw, info)
    return rows, info


def _approach3(runs: pl.DataFrame, edges: list[float], folds, level, kw, info) -> list[dict]:
    from scalelaws.chinchilla.fit import fit_loss_surface

    rows, skipped, warned = [], [], {}
    for k in range(1, min(folds, len(edges) - 1) + 1):
        cut = edges[-k]
        train, held = runs.filter(pl.col("flops") < cut), runs.filter(pl.col("flops") >= cut)
        if train.height < MIN_TRAIN_RUNS or train["N"].n_unique() < 2:
            skipped.append(f"C >= {cut:.3g}: {train.height} runs below it")
            continue
        fit = fit_loss_surface(train, **kw)
        warned[f"C >= {cut:.3g}"] = sorted({d.code for d in fit.warnings})
        p = fit.prediction(held["N"].to_numpy(), held["D"].to_numpy(), level=level, seed=kw["seed"])
        split = f"approach 3: C >= {cut:.3g}"
        for i, r in enumerate(held.iter_rows(named=True)):
            rows.append({"split": split, "held_out": r["budget"] or f"C={r['flops']:.3g}",
                         "quantity": "loss", "x": r["N"], "tokens": r["D"], "flops": r["flops"],
                         "predicted": p.point[i], "lo": p.lo[i], "hi": p.hi[i],
                         "measured": r["loss"]})  # fmt: skip
    if not rows:
        raise ValueError(
            f"backtest chinchilla: fewer than {MIN_TRAIN_RUNS} runs below every held-out budget "
            f"({'; '.join(skipped)}); add runs at smaller budgets"
        )
    info["approach3"] = {"skipped_folds": skipped, "fit_warnings": warned, "interval": "ChinchillaFit.prediction: "
                         "bootstrap parameter sets plus a resampled log residual"}  # fmt: skip
    return rows


def _approach2(runs: pl.DataFrame, folds, level, kw, info) -> list[dict]:
    from scalelaws.chinchilla.isoflop import fit_isoflop

    try:
        full = fit_isoflop(runs, **kw)
    except ValueError as e:  # fewer than 3 usable slices: no approach-2 split
        info["approach2"] = {"skipped": str(e)}
        return []
    used = sorted(full.slices, key=lambda s: s["flops"])
    edge = {g: float(v) for g, v in runs.group_by("budget").agg(pl.col("flops").min()).iter_rows()}
    rows, skipped, warned = [], [], {}
    for k in range(1, min(folds, len(used) - 3) + 1):
        cut = edge[used[-k]["label"]]
        try:
            fit = fit_isoflop(runs.filter(pl.col("flops") < cut), **kw)
        except ValueError as e:
            skipped.append(f"C >= {cut:.3g}: {e}")
            continue
        warned[f"C >= {cut:.3g}"] = sorted({d.code for d in fit.warnings})
        held = [s for s in used if s["flops"] >= cut]
        p = fit.prediction([s["flops"] for s in held], level=level, seed=kw["seed"])
        for i, s in enumerate(held):
            rows.append({"split": f"approach 2: C >= {cut:.3g}", "held_out": s["label"],
                         "quantity": "N_opt", "x": s["flops"], "predicted": p.point[i],
                         "lo": p.lo[i], "hi": p.hi[i], "measured": s["n_opt"],
                         "measured_lo": s["n_opt_lo"], "measured_hi": s["n_opt_hi"]})  # fmt: skip
    info["approach2"] = {
        "slices_used": [s["label"] for s in used],
        "slices_dropped": [s["label"] for s in full.dropped],
        "skipped_folds": skipped,
        "fit_warnings": warned,
        "measured": "each held-out slice's own fitted optimum (full-data fit); its 95% "
        "delta-method interval in measured_lo/measured_hi",
        "interval": "IsoFLOPFit.prediction: bootstrap draws of the power law plus the slices' "
        "scatter about it",
    }
    return rows
