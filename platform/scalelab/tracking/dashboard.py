"""`scalelab dashboard DIR`: the saved W&B view of a study, as a sweep user expects it.

Sections: loss against step grouped by each grid key; final loss against each grid key;
parallel coordinates over the grid keys and the final losses; the analysis run's runs table and
fit plots (analysis_run.py). The trial runs carry every grid key at the top level of their
config (runs.grid_config), so `config.<key>` addresses them as W&B's own paths do.

The view is built with `wandb-workspaces` (`pip install -e '.[wandb-views]'`) and saved with a
W&B login. Without one (offline, no key) the definition is written to DIR/wandb_view.json:
a neutral description (sections, panels) and, when wandb-workspaces is installed, the exact
view spec W&B stores; `scalelab dashboard DIR --publish` saves it later.
"""

from __future__ import annotations

import os
from pathlib import Path

import scalelaws as sl
from scalelab import files
from scalelab.tracking.analysis_run import curves_key

FORMAT = "scalelab-wandb-view/1"
LOSSES = ("final_eval_loss", "best_eval_loss")
# studies collected before the grid columns: their runs carry the spec only (config.spec.*)
SPEC_PATHS = {
    "model": "config.spec.model.size",
    "batch_size": "config.spec.batch_size",
    "lr": "config.spec.optim.lr",
    "schedule": "config.spec.schedule.name",
    "seed": "config.spec.seed",
    "data": "config.spec.data.name",
}


def config_paths(study) -> dict[str, str]:
    """{grid key: its W&B config path}: config.<key> (runs.grid_config), or for old tables
    the spec field behind a varying runs column."""
    keys = sl.grid_keys(study)
    if study.grid_columns:
        return {k: f"config.{k}" for k in keys}
    return {k: SPEC_PATHS[k] for k in keys if k in SPEC_PATHS}


def build_view(root: str | Path, entity: str | None = None, project: str | None = None) -> dict:
    """The view's definition (JSON-ready): study, entity, project, runset filter, sections."""
    study = sl.load_study(root)
    name = study.meta.get("name") or Path(root).name
    paths = config_paths(study)
    plots = [f"plots/{f.name}" for f in sl.find_results(study.root)]
    plots += [curves_key(k) for k in sl.grid_keys(study)]
    curves = [
        {"type": "line", "title": f"eval_loss by {k}", "x": "Step", "y": ["eval_loss"],
         "groupby": path, "aggregate": "mean", "range": "minmax"}
        for k, path in paths.items()
    ]  # fmt: skip
    finals = [
        {"type": "scatter", "title": f"final_eval_loss against {k}", "x": path,
         "y": "summary.final_eval_loss"}
        for k, path in paths.items()
    ]  # fmt: skip
    columns = list(paths.values()) + [f"summary.{c}" for c in LOSSES]
    return {
        "format": FORMAT,
        "study": name,
        "entity": entity or os.environ.get("WANDB_ENTITY") or None,
        "project": project or os.environ.get("WANDB_PROJECT", "scalelab"),
        "name": f"{name}: study",
        "runset": {"group": name},
        "sections": [
            {"name": "Loss curves by grid key", "panels": curves},
            {"name": "Final loss against each grid key", "panels": finals},
            {
                "name": "Parallel coordinates",
                "panels": [{"type": "parallel_coordinates", "columns": columns}],
            },
            {
                "name": "Fits",
                "panels": [
                    {"type": "table", "title": "runs (analysis run)", "key": "runs"},
                    {"type": "media", "title": "fit and study plots", "keys": plots},
                ],
            },
        ],
    }


def workspace(view: dict):
    """The wandb_workspaces Workspace of a view definition (needs the wandb-views extra)."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    def metric(path: str):
        section, _, key = path.partition(".")
        return {"config": wr.Config, "summary": wr.SummaryMetric}[section](key)

    def panel(p: dict):
        kind = p["type"]
        if kind == "line":
            return wr.LinePlot(
                title=p["title"],
                x=p["x"],
                y=p["y"],
                groupby=metric(p["groupby"]),
                groupby_aggfunc=p["aggregate"],
                groupby_rangefunc=p["range"],
            )
        if kind == "scatter":
            return wr.ScatterPlot(title=p["title"], x=metric(p["x"]), y=metric(p["y"]))
        if kind == "parallel_coordinates":
            cols = [wr.ParallelCoordinatesPlotColumn(metric=metric(c)) for c in p["columns"]]
            return wr.ParallelCoordinatesPlot(columns=cols, title="grid keys and final losses")
        if kind == "table":
            return wr.WeavePanelSummaryTable(table_name=p["key"])
        return wr.MediaBrowser(title=p["title"], media_keys=p["keys"], num_columns=2)

    return ws.Workspace(
        entity=view["entity"] or "YOUR-ENTITY",
        project=view["project"],
        name=view["name"],
        sections=[
            ws.Section(name=s["name"], panels=[panel(p) for p in s["panels"]], is_open=True)
            for s in view["sections"]
        ],
        runset_settings=ws.RunsetSettings(filters=f"Metric('Group') = '{view['runset']['group']}'"),
    )


def has_workspaces() -> bool:
    try:
        import wandb_workspaces  # noqa: F401
    except ImportError:
        return False
    return True


def logged_in() -> bool:
    """A W&B API key is at hand (WANDB_API_KEY or ~/.netrc); nothing is sent anywhere."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        from wandb.sdk.lib.wbauth.wbnetrc import read_netrc_auth

        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        return bool(read_netrc_auth(host=host))
    except Exception:  # a private wandb API: treat any change there as "no login"
        return False


def write_view(root: str | Path, out: str | Path | None = None, **kw) -> tuple[Path, dict]:
    """Write the definition (DIR/wandb_view.json); with wandb-workspaces it includes the view
    spec W&B stores (`wandb_workspace`)."""
    view = build_view(root, **kw)
    if has_workspaces():
        view["wandb_workspace"] = workspace(view)._spec
    path = Path(out) if out is not None else Path(root) / "wandb_view.json"
    files.write_json(path, view)
    return path, view


def publish(view: dict) -> str:
    """Save the view to W&B (needs a login and the network); return its URL."""
    import wandb

    if not view.get("entity"):
        view = {**view, "entity": wandb.Api().default_entity}
    return workspace(view).save().url


def read_view(path: str | Path) -> dict:
    view = files.read_json(path)
    if view.get("format") != FORMAT:
        raise ValueError(f"{path}: not a scalelab view definition (format {FORMAT})")
    return view
