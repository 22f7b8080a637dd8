"""One self-contained HTML page of a study (`scalelab report DIR` -> DIR/report.html).

No network and no scripts: inline CSS, PNG figures embedded as base64. It reads results and
fits nothing: status and the runs table (summary.py), curves and final losses by grid key
(plots_study.py), every fit and proposal JSON in the folder (findings.py) with its intervals,
metrics, diagnostics and figure, and for a closed loop the predicted against the measured
final loss and the proposal minus each baseline paired by seed (closed_loop.py), and the
study's report.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path

import polars as pl

from scalelaws.multipower import closed_loop
from scalelaws.multipower.schedule import ScheduleProposal
from scalelaws.study import findings, summary
from scalelaws.study import plots as plots_study
from scalelaws.study.load import Study, as_study

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;
margin:0;background:#f5f6f8}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:34px 0 10px;border-bottom:2px solid
#e3e6eb;padding-bottom:4px}h3{font-size:16px;margin:22px 0 8px}
.meta{color:#5b6472;margin:0 0 12px}code{background:#f0f2f5;padding:1px 4px;border-radius:3px}
.badges span{display:inline-block;margin:0 8px 6px 0;padding:3px 10px;border-radius:12px;
font-weight:600;background:#e8ecf2}
.s-completed{background:#d9f2e0!important;color:#1e6b35}.s-failed{background:#fbdcdc!important;
color:#9b1c1c}.s-diverged{background:#fde8cc!important;color:#8a4b00}
table{border-collapse:collapse;margin:6px 0 14px;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #e6e8ec;text-align:left;vertical-align:top}
th{background:#f0f2f5;position:sticky;top:0}td.n{text-align:right;font-variant-numeric:
tabular-nums}tr:nth-child(even) td{background:#fafbfc}
.scroll{max-height:460px;overflow:auto;border:1px solid #e6e8ec;display:inline-block;max-width:100%}
.scroll table{margin:0}#runs td:first-child{white-space:nowrap}
img{max-width:min(100%,1000px);height:auto;border:1px solid #eceef2;margin:4px 0 10px}
nav a{margin-right:14px}
.sev-warning td:first-child{color:#8a4b00;font-weight:600}.sev-error td:first-child{color:#9b1c1c;
font-weight:600}.note{color:#5b6472;font-style:italic}
"""


def write_report(study: Study | str | Path, out: str | Path | None = None) -> Path:
    """Write the page (default: the study folder's report.html); return its path."""
    from scalelaws.io import write_text

    study = as_study(study)
    path = Path(out) if out is not None else study.root / "report.html"
    write_text(path, render(study))
    return path


def render(study: Study) -> str:
    """The whole page as one HTML string."""
    name = study.meta.get("name") or study.root.name
    found = findings.find_results(study.root)
    hparams = [f for f in found if f.kind == "HparamsFit"]
    body = [
        f"<h1>Study {_e(name)}</h1>",
        f'<p class="meta">{_e(study.root)} · {study.runs.height} trials · grid keys: '
        f"{_e(', '.join(summary.grid_keys(study)) or 'none')} · written "
        f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>",
        '<nav><a href="#status">Status</a><a href="#runs">Runs</a><a href="#curves">Curves</a>'
        '<a href="#fits">Fits</a>'
        + ('<a href="#hparams">LR and batch</a>' if hparams else "")
        + '<a href="#backtest">Back-test</a><a href="#closed-loop-section">Closed loop</a></nav>',
        _status(study),
        _shared(study),
        "<h2>Runs</h2>",
        _table(summary.runs_table(study), scroll=True, table_id="runs"),
        _curves(study),
        _fits(study, [f for f in found if f.kind != "HparamsFit"]),
        _hparams(study, hparams, [f for f in found if f.kind == "cbs"]),
        _backtest(study),
        _closed_loop(study),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(name)}: scalelab report</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def _status(study: Study) -> str:
    counts = summary.status_counts(study)
    badges = "".join(f'<span class="s-{_e(s)}">{_e(s)}: {n}</span>' for s, n in counts.items())
    return f'<h2 id="status">Status</h2><div class="badges">{badges}</div>'


def _shared(study: Study) -> str:
    """What training shared prefixes once saved, and the tree (nothing when no trial forked)."""
    shared = summary.shared_prefixes(study.runs)
    if shared is None:
        return ""
    line, tree = shared
    return (
        "<h2 id='shared'>Shared prefixes</h2>"
        f"<p>{_e(line[0].upper() + line[1:])}. Each forked trial started from its trunk's "
        "checkpoint after <code>fork_step</code> updates and trained the rest itself; its curve "
        "is the one it would record trained alone.</p>" + _table(tree, table_id="shared-tree")
    )


def _curves(study: Study) -> str:
    keys = summary.grid_keys(study)
    if not keys:
        return "<h2 id='curves'>Curves</h2><p class='note'>No grid keys to colour by.</p>"
    out = ["<h2 id='curves'>Curves by grid key</h2>"]
    for key, fig in plots_study.plot_study(study).items():
        out.append(f"<h3>{_e(key)}</h3>{_img(plots_study.png(fig), f'curves by {key}')}")
    return "".join(out)


def _fits(study: Study, found: list[findings.Finding]) -> str:
    """Every result in the folder but the hyperparameter fits (_hparams): its parameters with
    their intervals, metrics, diagnostics and figure."""
    if not found:
        return "<h2 id='fits'>Fits</h2><p class='note'>No fit or proposal JSON in this folder.</p>"
    out = ["<h2 id='fits'>Fits and proposals</h2>"]
    for f in found:
        out.append(f'<h3 id="fit-{_e(f.name)}">{_e(f.title)} <code>{_e(f.path.name)}</code></h3>')
        head = ("schedule", "predicted final loss") if f.is_proposal else ("parameter", "value")
        rows = pl.DataFrame(
            f.param_rows(),
            schema=[head[0], head[1], "95% lo", "95% hi"],
            orient="row",
        )
        out.append(_table(rows, cls="fit"))
        if f.is_proposal:
            out.append(_baselines(f.doc))
        if f.metrics():
            out.append(_table(_metrics_frame(f.metrics()), cls="metrics"))
        out.append(_diagnostics(f.diagnostics))
        png = plots_study.result_png(f, study)
        out.append(_img(png, f.title) if png else "")
    return "".join(out)


def _hparams(study: Study, fits: list, cbs: list) -> str:
    """The hyperparameter fits (scalelaws.hparams): η*, B*, L* per cell with their intervals,
    status and flags, the laws, the figure and every diagnostic; with a CBS fit in the folder,
    B* beside the CBS of the same (N, D) and how both grow with D (Zhang et al. 2025)."""
    if not fits:
        return ""
    from scalelaws.critical_batch.fit import CBSResult
    from scalelaws.hparams.fit import HparamsFit
    from scalelaws.study import hparams as hp

    out = ['<h2 id="hparams">Optimal peak LR and batch size</h2>']
    for f in fits:
        fit = HparamsFit.from_dict(f.doc)
        unit = fit.info.get("batch_unit", "")
        out.append(f'<h3 id="fit-{_e(f.name)}">{_e(f.title)} <code>{_e(f.path.name)}</code></h3>')
        out.append(
            f"<p>Per (N, D) cell, the minimum of a quadratic in (ln η, ln B) and its 95% "
            f"bootstrap interval; B in {_e(unit)}. A status other than <code>stationary</code> "
            "or <code>conditional</code> means the optimum was not located there: the best "
            "run is shown and the cell is left out of that law (docs/hparams.md).</p>"
        )
        out.append(_table(hp.cells_table(fit), table_id=f"{f.name}-cells"))
        out.append(_table(hp.laws_table(fit), table_id=f"{f.name}-laws"))
        out.append(
            f"<p>Curvature pooled over cells: {_e(hp.curvature_text(fit))} (δ in natural-log "
            f"units); {fit.info.get('rows')} runs, bootstrap {fit.info.get('n_boot')}.</p>"
        )
        out.append(_diagnostics(f.diagnostics))
        png = plots_study.result_png(f, study)
        out.append(_img(png, f.title) if png else "")
        for c in cbs[:1]:
            out.append(_beside_cbs(study, fit, CBSResult.from_dict(c.doc), c.path.name, f.name))
    return "".join(out)


def _beside_cbs(study: Study, fit, cbs, cbs_name: str, name: str) -> str:
    from scalelaws.study import hparams as hp

    seq = study.runs["seq_len"].unique() if "seq_len" in study.runs.columns else None
    seq_len = int(seq[0]) if seq is not None and seq.len() == 1 else None
    table = hp.beside_cbs(fit, cbs, seq_len)
    note = (
        f"<p>B* of each cell beside the critical batch size of <code>{_e(cbs_name)}</code> at "
        "the same (N, D) (CBS and B_crit in sequences"
        + (f"; × seq_len {seq_len} in tokens" if seq_len else "")
        + "), and B*/CBS in the same unit. Zhang et al. 2025: the CBS grows with the data "
        "size D; below, the D exponent of each law.</p>"
    )
    return (
        f"<h3>B* beside the critical batch size ({_e(cbs_name)})</h3>"
        + note
        + _table(table, table_id=f"{name}-cbs")
        + _table(hp.growth_with_d(fit, cbs), table_id=f"{name}-growth")
    )


def _metrics_frame(metrics: dict[str, float]) -> pl.DataFrame:
    """{"fit.r2": .., "test.r2": ..} -> one row per prefix (fit, test), one column per metric;
    metrics without a common prefix: one row each."""
    parts = [k.rsplit(".", 1) for k in metrics]
    if not all(len(p) == 2 for p in parts) or len({p[0] for p in parts}) == len(parts):
        return pl.DataFrame({"metric": list(metrics), "value": list(metrics.values())})
    rows: dict[str, dict] = {}
    for (role, name), v in zip(parts, metrics.values(), strict=True):
        rows.setdefault(role, {"curves": role})[name] = v
    return pl.DataFrame(list(rows.values()))


def _baselines(doc: dict) -> str:
    rows = [
        (
            k,
            b.get("name", k),
            ", ".join(f"{p}={_fmt(v)}" for p, v in (b.get("params") or {}).items()),
        )
        for k, b in (doc.get("baselines") or {}).items()
    ]
    frame = pl.DataFrame(rows, schema=["baseline", "registry name", "params"], orient="row")
    return f"<p>{doc.get('total_steps')} steps, warmup {doc.get('warmup_steps')}, peak LR " + (
        f"{doc.get('peak_lr')}; baselines in registry terms:</p>{_table(frame)}"
    )


def _diagnostics(diags: list[dict]) -> str:
    if not diags:
        return "<p class='note'>Diagnostics: none.</p>"
    rows = "".join(
        f'<tr class="sev-{_e(d.get("severity"))}"><td>{_e(d.get("severity"))}</td>'
        f"<td>{_e(d.get('code'))}</td><td>{_e(d.get('message'))}</td>"
        f"<td>{_e(d.get('action'))}</td></tr>"
        for d in diags
    )
    head = "<tr><th>severity</th><th>code</th><th>message</th><th>what to do</th></tr>"
    return f'<table class="diagnostics">{head}{rows}</table>'


def _backtest(study: Study) -> str:
    """backtest.json (`scalelab backtest DIR`): coverage per split, the worst point, diagnostics."""
    path = study.root / "backtest.json"
    head = '<h2 id="backtest">Back-test of the prediction intervals</h2>'
    if not path.is_file():
        return (
            head
            + f"<p class='note'>No backtest.json: run `scalelab backtest {_e(study.root)}`.</p>"
        )
    from scalelaws.study.backtest import Backtest

    bt = Backtest.load(path)
    m, w = bt.metrics, bt.worst
    rows = [{"split": s, "coverage": m[f"coverage[{s}]"],
             "points": sum(r["split"] == s for r in bt.rows)} for s in bt.splits]  # fmt: skip
    text = (
        f"<p>{_e(bt.law)}: {100 * m['coverage']:.1f}% of {m['n_points']} held-out points inside "
        f"the {100 * bt.level:.0f}% prediction intervals; median relative error "
        f"{m['median_rel_error']:.3g}, worst {m['worst_rel_error']:.3g} ({_e(w.get('held_out'))} "
        f"at {_e(w.get('x'))}).</p>"
    )
    return (
        head
        + text
        + _table(pl.DataFrame(rows))
        + _diagnostics([d.to_dict() for d in bt.diagnostics])
    )


def _closed_loop(study: Study) -> str:
    out = []
    prop = study.root / "proposed_schedule.json"
    check = closed_loop.find_validation(study.root)
    if prop.is_file() and check is not None:
        runs = pl.read_parquet(check / "runs.parquet")
        proposal = ScheduleProposal.load(prop)
        table = closed_loop.predicted_vs_measured(proposal, runs)
        out.append(f"<h3>Predicted against measured ({_e(check.name)})</h3>")
        names = {"lo": "95% lo", "hi": "95% hi", "measured": "measured (mean)"}
        out.append(_table(table.rename(names), table_id="closed-loop"))
        if table.height:
            fig = plots_study.plot_predicted_vs_measured(table)
            out.append(_img(plots_study.png(fig), "predicted vs measured"))
        out.append(_paired(runs, proposal.total_steps))
    md = study.root / "report.md"
    if md.is_file():
        out.append(f"<h3>report.md</h3>{_markdown(md.read_text())}")
    if not out:
        out = [
            "<p class='note'>No validation study (a <code>&lt;study&gt;_validate</code> folder) "
            "and no report.md.</p>"
        ]
    return "<h2 id='closed-loop-section'>Closed loop</h2>" + "".join(out)


def _paired(runs: pl.DataFrame, total_steps: int) -> str:
    """The proposal minus each baseline, seed by seed (closed_loop.paired_differences)."""
    head = "<h3>Proposed minus baseline, paired by seed</h3>"
    try:
        res = closed_loop.paired_differences(runs, total_steps=total_steps)
    except ValueError as e:
        return head + f"<p class='note'>No paired differences: {_e(e)}</p>"
    pct = f"{100 * res.level:g}%"
    note = (
        f"<p>The proposal's <code>{_e(res.loss)}</code> minus the baseline's at the same seed "
        f"(same init and data order); mean over the seeds with its {pct} t-interval. Negative: "
        "the proposal reached the lower loss; an interval that holds 0 does not separate them."
        "</p>"
    )
    table = res.table().rename({"lo": f"{pct} lo", "hi": f"{pct} hi"})
    diags = _diagnostics([d.to_dict() for d in res.diagnostics])
    return head + note + _table(table, table_id="paired") + diags


def _markdown(text: str) -> str:
    """The little markdown the hooks write: paragraphs, `- ` lists and pipe tables."""
    out, table = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                table.append(cells)
            continue
        if table:
            head = "".join(f"<th>{_e(c)}</th>" for c in table[0])
            rows = "".join(
                "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in table[1:]
            )
            out.append(f"<table><tr>{head}</tr>{rows}</table>")
            table = []
        if line.startswith("- "):
            out.append(f"<ul><li>{_e(line[2:])}</li></ul>")
        elif line.strip():
            out.append(f"<p>{_e(line)}</p>")
    return "".join(out)


def _table(frame: pl.DataFrame, *, scroll: bool = False, table_id: str = "", cls: str = "") -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    numeric = [frame.schema[c].is_numeric() for c in frame.columns]
    rows = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{_fmt(v)}</td>' if n else f"<td>{_e(_fmt(v))}</td>"
            for v, n in zip(r, numeric, strict=True)
        )
        + "</tr>"
        for r in frame.iter_rows()
    )
    attrs = (f' id="{_e(table_id)}"' if table_id else "") + (f' class="{_e(cls)}"' if cls else "")
    t = f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return f'<div class="scroll">{t}</div>' if scroll else t


def _img(data: bytes, alt: str) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.5g}" if v == v else "nan"
    return str(v)


def _e(v) -> str:
    return html.escape(str(v), quote=True)
