"""The study in W&B: an analysis run in the study's group (job_type "analysis").

Logged after a study (launch.run), after its `after()` hook, after `scalelab fit ... --runs DIR`
and by `scalelab dashboard` when the study has none yet. It holds what the trial runs cannot:

- `runs`: a wandb.Table, one row per trial (grid keys, status, final and best losses);
- per result JSON in the folder (scalelaws.study.findings) `fits/<name>/params/<p>`,
  `fits/<name>/interval/<p>` ([lo, hi]), `fits/<name>/metrics/<m>` and
  `fits/<name>/n_diagnostics` in the summary, and the tables `tables/<name>/params` (name,
  value, lo, hi) and `tables/<name>/diagnostics`; a hyperparameter fit also logs
  `tables/<name>/cells` (η*, B*, L* per (N, D) cell with intervals, status and flags) and
  `tables/<name>/laws` (each exponent with its interval);
- `plots/<name>`: each result's figure, and `plots/curves_<key>` per grid key;
- the artifact `<study>-results` (type study-results): runs.parquet, curves.parquet and the
  result JSON files; W&B versions it by content.

Offline (the default) it lands in DIR/wandb/offline-run-*; `wandb sync` uploads it later.
"""

from __future__ import annotations

import io
import os
import re
import sys
import time
from pathlib import Path

import scalelaws as sl
from scalelab.tracking.runs import LEAN, wandb_on, wandb_session
from scalelaws.study import findings
from scalelaws.study import plots as plots_study

ANALYSIS = "analysis"


def study_uses_wandb(root: Path) -> bool:
    """The study logged its trials to W&B (some trial folder has a wandb/ run)."""
    return any(Path(root).glob("trials/*/wandb/*run-*"))


def warm() -> None:
    """Import and first-use what the analysis run needs (W&B, its tables, matplotlib and its
    fonts; ~1.5 s of CPU), while the caller waits for something else: a study's driver does it
    while Ray starts, when its cores are half idle, so the study ends ~0.3 s sooner.
    Starts no W&B service (that sets WANDB_SERVICE, which Ray's processes would inherit)."""
    import wandb
    from matplotlib.figure import Figure

    wandb.Table(columns=["a"], data=[[1]])  # W&B's data types import on first use (~0.25 s)
    fig = Figure(figsize=(4, 3), layout="tight")
    ax = fig.subplots()
    ax.plot([1, 10], [1, 2], label="a")
    ax.set(xscale="log", title="t", xlabel="x")
    ax.legend()
    plots_study.png(fig, dpi=20)  # loads the fonts and the Agg renderer


def log_quietly(root: str | Path, mode: str | None, reason: str) -> Path | None:
    """log_analysis when W&B is on (mode not None/disabled); a failure is a warning, never the
    study's failure. Returns the run folder or None."""
    if not wandb_on(mode):
        return None
    try:
        return log_analysis(root, mode=mode, reason=reason)
    except Exception as e:
        print(f"warning: W&B analysis run of {root} not logged: {e}", file=sys.stderr)
        return None


def log_analysis(
    root: str | Path,
    *,
    mode: str | None = None,
    reason: str = "study",
    extra: list[tuple[Path, Path | None]] = (),
) -> Path:
    """Log the analysis run of the study in `root`; return its run folder. mode: W&B mode
    (default $WANDB_MODE, else offline). extra: (result JSON, figure) pairs that live outside
    the folder (a `scalelab fit --out` path)."""
    root = Path(root)
    study = sl.load_study(root)
    name = study.meta.get("name") or root.name
    mode = mode or os.environ.get("WANDB_MODE", "offline")
    found = findings.find_results(root)
    inside = {f.path.resolve() for f in found}
    found += [
        f
        for j, png in extra
        if Path(j).resolve() not in inside and (f := findings.load_result(j, png)) is not None
    ]
    wandb = wandb_session(mode)
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "scalelab"),
        entity=os.environ.get("WANDB_ENTITY") or None,
        group=name,
        job_type=ANALYSIS,
        name=f"{name}: analysis ({reason})",
        id=_safe(f"{name}-analysis-{reason}-{time.strftime('%Y%m%d-%H%M%S')}"),
        config={"study": name, "reason": reason, "grid_keys": sl.grid_keys(study)},
        dir=str(root),
        mode=mode,
        reinit="create_new",  # a caller's own run stays open
        # no system monitor process, pip list, metadata or console capture (as a trial's run)
        settings=wandb.Settings(**LEAN),
    )
    try:
        _log_runs(run, study)
        for f in found:
            _log_finding(run, f)
        _log_plots(run, study, found)
        _log_artifact(run, study, name, reason, found)
    finally:
        run.finish()
        if wandb.run is None:  # finish() returns before the service has written everything
            wandb.teardown()
    return Path(run.dir).parent


def _log_runs(run, study) -> None:
    import wandb

    table = sl.runs_table(study)
    rows = [[_cell(v) for v in r] for r in table.iter_rows()]
    run.log({"runs": wandb.Table(columns=table.columns, data=rows)})
    run.summary["study/trials"] = study.runs.height
    for state, n in sl.status_counts(study).items():
        run.summary[f"study/status/{state}"] = n


def _log_finding(run, f: findings.Finding) -> None:
    import wandb

    key = f"fits/{f.name}"
    rows = f.param_rows()
    for p, v, lo, hi in rows:
        run.summary[f"{key}/params/{p}"] = v
        if lo is not None and hi is not None:
            run.summary[f"{key}/interval/{p}"] = [lo, hi]
    for m, v in f.metrics().items():
        run.summary[f"{key}/metrics/{m}"] = v
    run.summary[f"{key}/n_diagnostics"] = len(f.diagnostics)
    cols = ["diagnostic", "severity", "code", "message", "action", "subject"]
    diags = [
        [i, d.get("severity"), d.get("code"), d.get("message"), d.get("action"), d.get("subject")]
        for i, d in enumerate(f.diagnostics)
    ]
    tables = {
        f"tables/{f.name}/params": wandb.Table(columns=["name", "value", "lo", "hi"], data=rows),
        f"tables/{f.name}/diagnostics": wandb.Table(columns=cols, data=diags),
    }
    if f.kind == "HparamsFit":  # η*, B*, L* per (N, D) cell and the laws, as the report shows
        from scalelaws.hparams.fit import HparamsFit
        from scalelaws.study import hparams as hp

        fit = HparamsFit.from_dict(f.doc)
        for part, frame in (("cells", hp.cells_table(fit)), ("laws", hp.laws_table(fit))):
            data = [[_cell(v) for v in r] for r in frame.iter_rows()]
            tables[f"tables/{f.name}/{part}"] = wandb.Table(columns=frame.columns, data=data)
    run.log(tables)


def _log_plots(run, study, found) -> None:
    import wandb
    from PIL import Image

    images = {}
    for key, fig in plots_study.plot_study(study).items():
        images[curves_key(key)] = plots_study.png(fig)
    for f in found:
        if (data := plots_study.result_png(f, study)) is not None:
            images[f"plots/{f.name}"] = data
    run.log({k: wandb.Image(Image.open(io.BytesIO(v)), caption=k) for k, v in images.items()})


def _log_artifact(run, study, name: str, reason: str, found) -> None:
    import wandb

    meta = {"trials": study.runs.height, "grid_keys": sl.grid_keys(study), "sha256": study.sha256()}
    art = wandb.Artifact(_safe(f"{name}-results"), type="study-results", metadata=meta)
    for table in ("runs.parquet", "curves.parquet"):
        art.add_file(str(study.root / table), name=table)
    for f in found:
        art.add_file(str(f.path), name=f"fits/{f.path.name}")
    run.log_artifact(art, aliases=["latest", _safe(reason)])


def curves_key(grid_key: str) -> str:
    """The media key of a grid key's curves figure, e.g. plots/curves_model_size."""
    return "plots/curves_" + re.sub(r"[^A-Za-z0-9_]", "_", grid_key)


def _cell(v):
    return v if v is None or isinstance(v, int | float | str | bool) else str(v)


def _safe(text: str) -> str:
    """W&B ids and artifact names: letters, digits, - _ . only."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:128]
