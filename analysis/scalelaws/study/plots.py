"""Figures of a study's tables (no fitting): loss curves coloured by a grid key, final loss
against a grid key, predicted against measured final loss of a closed loop.

Each function draws on `ax` (or a new figure) and returns the Figure: a plain
matplotlib.figure.Figure, without pyplot, so it leaves the caller's backend alone (in a
notebook, `display(fig)`); `png(fig)` gives its PNG bytes (for the HTML report).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from scalelaws.study.load import Study
from scalelaws.study.summary import grid_keys, is_numeric, key_column

MAX_CATEGORIES = 12  # more distinct numeric values than this: a colour scale, not a legend


def figure(figsize=(6.0, 4.0)):
    """A new Figure (no pyplot state, no backend switch), laid out tightly when drawn."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="tight")


def _axes(ax, figsize=(6.0, 4.0)):
    if ax is not None:
        return ax.figure, ax
    fig = figure(figsize)
    return fig, fig.subplots()


def _colours(values: pl.Series):
    """(value -> colour, legend entries or None, a ScalarMappable for a colour bar or None)."""
    import matplotlib as mpl

    uniq = ordered(values)
    if values.dtype.is_numeric() and len(uniq) > MAX_CATEGORIES:
        lo, hi = float(min(uniq)), float(max(uniq))
        log = lo > 0 and hi / lo > 10
        norm = mpl.colors.LogNorm(lo, hi) if log else mpl.colors.Normalize(lo, hi)
        cmap = mpl.colormaps["viridis"]
        return (lambda v: cmap(norm(v))), None, mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    cmap = mpl.colormaps["tab10" if len(uniq) <= 10 else "tab20"]
    table = {v: cmap(i % cmap.N) for i, v in enumerate(uniq)}
    return (lambda v: table.get(v, (0.5, 0.5, 0.5, 1.0))), table, None


def plot_curves_by(study: Study, key: str, *, loss: str = "eval_loss", ax=None):
    """Loss against step, one line per trial, coloured by grid key `key` (log-scaled steps)."""
    from matplotlib.collections import LineCollection

    fig, ax = _axes(ax)
    col = key_column(study, key)
    cur = study.curves
    if col not in cur.columns:  # old tables: the runs column is not joined into curves
        cur = cur.join(study.runs.select("trial", col), on="trial", how="left")
    cur = cur.filter(pl.col(loss).is_not_null() & (pl.col("step") > 0)).sort("trial", "step")
    colour, legend, scale = _colours(study.runs[col])
    segs, cols = [], []
    for (_,), part in cur.group_by("trial", maintain_order=True):
        if part.height >= 2:
            segs.append(np.column_stack([part["step"].to_numpy(), part[loss].to_numpy()]))
            cols.append(colour(part[col][0]))
    if segs:
        order = np.random.default_rng(0).permutation(len(segs))  # no value always on top
        alpha = float(np.clip(30 / len(segs), 0.25, 0.85))
        lines = LineCollection([segs[i] for i in order], colors=[cols[i] for i in order])
        lines.set(linewidths=1.0 if len(segs) <= 50 else 0.7, alpha=alpha)
        ax.add_collection(lines)
        last = cur["step"].max()
        y = cur.filter(pl.col("step") >= last / 50)[loss].to_numpy()  # past the first drop
        lo, hi = float(y.min()), float(np.quantile(y, 0.98))
        ax.set_xlim(cur["step"].min(), last)
        ax.set_ylim(lo - 0.03 * (hi - lo), hi + 0.05 * (hi - lo))
        ax.set_xscale("log")
    _legend(ax, legend, scale, key)
    ax.set(xlabel="step", ylabel=loss, title=f"{loss} by {key}")
    return fig


def plot_final_by(study: Study, key: str, *, loss: str = "final_eval_loss", ax=None):
    """Final loss of every trial (dots) and the mean per value (line) against grid key `key`."""
    fig, ax = _axes(ax)
    col = key_column(study, key)
    if loss not in study.runs.columns:
        ax.text(0.5, 0.5, f"no {loss} column in runs", ha="center", transform=ax.transAxes)
        return fig
    runs = study.runs.filter(pl.col(loss).is_not_null() & pl.col(col).is_not_null())
    if runs.height:
        numeric = is_numeric(runs, col)
        uniq = ordered(runs[col])
        pos = {v: (float(v) if numeric else i) for i, v in enumerate(uniq)}
        x = np.array([pos[v] for v in runs[col].to_list()], float)
        ax.scatter(x, runs[loss].to_numpy(), s=16, alpha=0.7, color="C0", label="trial")
        mean = dict(runs.group_by(col).agg(pl.col(loss).mean()).iter_rows())
        ax.plot([pos[v] for v in uniq], [mean[v] for v in uniq], "-o", color="C3", ms=4)
        ax.plot([], [], "-o", color="C3", ms=4, label="mean")
        if numeric and min(uniq) > 0 and max(uniq) / min(uniq) > 3:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(uniq)), [str(v) for v in uniq], rotation=20, ha="right")
        ax.legend(fontsize=8)
    ax.set(xlabel=key, ylabel=loss, title=f"{loss} against {key}")
    return fig


def plot_key(study: Study, key: str, *, loss: str = "eval_loss"):
    """The curves and the final losses of a study side by side, for one grid key."""
    fig = figure((11.0, 3.8))
    a, b = fig.subplots(1, 2)
    plot_curves_by(study, key, loss=loss, ax=a)
    plot_final_by(study, key, ax=b)
    return fig


def plot_study(study: Study, *, loss: str = "eval_loss") -> dict:
    """{grid key: plot_key figure} for every grid key of the study."""
    return {k: plot_key(study, k, loss=loss) for k in grid_keys(study)}


def plot_predicted_vs_measured(table: pl.DataFrame, ax=None):
    """Closed loop (closed_loop.predicted_vs_measured): measured mean ± std against predicted,
    with the prediction's 95% interval, and the y = x line."""
    fig, ax = _axes(ax, figsize=(5.0, 4.2))
    for i, r in enumerate(table.iter_rows(named=True)):
        xerr = None
        if r.get("lo") is not None and r.get("hi") is not None:
            xerr = [[r["predicted"] - r["lo"]], [r["hi"] - r["predicted"]]]
        ax.errorbar(
            r["predicted"],
            r["measured"],
            xerr=xerr,
            yerr=r["std"] or 0.0,
            fmt="o",
            capsize=3,
            color=f"C{i}",
            label=f"{r['schedule']} (n={r['n']})",
        )
    vals = [v for c in ("predicted", "measured") for v in table[c].drop_nulls().to_list()]
    if vals:
        lo, hi = min(vals), max(vals)
        pad = 0.1 * (hi - lo or abs(hi) or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8, label="y = x")
    ax.set(xlabel="predicted final loss", ylabel="measured final loss (mean ± std)")
    ax.set_title("closed loop: predicted vs measured")
    ax.legend(fontsize=8)
    return fig


def result_png(finding, study: Study) -> bytes | None:
    """The figure of a result (scalelaws.study.findings.Finding): the PNG its hook wrote beside the
    JSON, else drawn from the JSON for a proposal (schedules), a multi-power fit (the study's
    curves against the law's prediction, with the prediction band of the test curves when the
    JSON holds bootstrap refits), a CBS fit (plot_cbs, with the CBS-vs-N prediction band), a
    capacity fit (plot_capacity_study, with the R·P band) or a hyperparameter fit (its cells
    and laws, HparamsFit.plot); None otherwise. No fitting."""
    if finding.figure is not None:
        return finding.figure.read_bytes()
    from scalelaws.multipower.fit import MultipowerFit
    from scalelaws.multipower.plots import plot_curves, plot_proposal
    from scalelaws.multipower.schedule import ScheduleProposal

    doc = finding.doc
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fig.png"
            if finding.is_proposal:
                plot_proposal(ScheduleProposal.from_dict(doc), path)
            elif doc.get("law") and doc.get("curves"):
                fit = MultipowerFit.from_dict(doc)  # its bootstrap refits: the bands
                plot_curves(_mpl_curves(doc, study), doc["params"], path, law=doc["law"], fit=fit)
            elif finding.kind == "cbs":
                from scalelaws.critical_batch.fit import CBSResult
                from scalelaws.critical_batch.plots import plot_cbs

                res = CBSResult.from_dict(doc)
                plot_cbs(list(res.groups), res.scaling, path)
            elif finding.kind == "HparamsFit":
                from scalelaws.hparams.fit import HparamsFit

                HparamsFit.from_dict(doc).plot(path)
            elif finding.kind == "capacity":
                from scalelaws.capacity.fit import CapacityResult
                from scalelaws.capacity.plots import plot_capacity_study

                res = CapacityResult.from_dict(doc)
                ratio = res.ratio.get("estimate")
                plot_capacity_study(list(res.trials), ratio, path, result=res)
            else:
                return None
            return path.read_bytes()
    except (ValueError, KeyError, TypeError):
        return None


def _mpl_curves(doc: dict, study: Study) -> list:
    """The fit's curves (names and roles from its JSON) rebuilt from the study's tables."""
    from scalelaws.multipower.fit import collect_curves

    roles = {c["name"]: c["role"] for c in doc["curves"]}
    fit = study.curves.filter(pl.col("trial").is_in([n for n, r in roles.items() if r == "fit"]))
    test = study.curves.filter(pl.col("trial").is_in([n for n, r in roles.items() if r != "fit"]))
    return collect_curves(fit, test if test.height else None, study=study)


def ordered(values: pl.Series) -> list:
    """The distinct values of a grid column in a reader's order: numbers ascending; labels
    that are all sizes such as 50K, 1.5M, 2B by their size; other labels alphabetically."""
    uniq = values.drop_nulls().unique().sort().to_list()
    if values.dtype.is_numeric():
        return uniq
    sizes = [_size(str(v)) for v in uniq]
    if all(x is not None for x in sizes):
        return [v for _, v in sorted(zip(sizes, uniq, strict=True))]
    return uniq


def _size(label: str) -> float | None:
    units = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
    num, unit = (label[:-1], units[label[-1]]) if label[-1:] in units else (label, 1.0)
    try:
        return float(num) * unit
    except ValueError:
        return None


def _legend(ax, legend, scale, key: str) -> None:
    if scale is not None:
        ax.figure.colorbar(scale, ax=ax, label=key)
    elif legend:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=c, label=str(v)) for v, c in legend.items()]
        ax.legend(handles=handles, title=key, fontsize=7, title_fontsize=8)


def png(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
