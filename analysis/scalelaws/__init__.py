"""scalelaws: fit scaling laws to scalelab results (numpy/scipy/statsmodels/polars only).

The public API (docs/laws.md §1 multi-power, §2 critical batch size, §3 knowledge capacity):

    load_study(path) -> Study                  runs / curves frames with grid.<key> columns
    fit_multipower(curves, ...) -> MultipowerFit
    evaluate_multipower(params, curves, ...) -> MultipowerFit
    propose_schedule(fit, total_steps, peak_lr, ...) -> ScheduleProposal
    fit_cbs(table | study=..., ...) -> CBSResult
    fit_capacity(runs, bound_frac=0.9) -> CapacityResult
    lr_array(name, peak_lr, total_steps, warmup_steps, **params) -> per-update LR
    status_counts(study), grid_keys(study), runs_table(study)     a study at a glance
    find_results(DIR) -> [Finding]             the fit and proposal JSON files in a study folder
    find_validation(DIR), predicted_vs_measured(proposal, runs)   closed loops
    write_report(study) -> DIR/report.html     one self-contained page (no fitting)

Every result is a frozen dataclass (scalelaws.result.Result): params, intervals, metrics,
diagnostics, info, to_dict(), to_json(path), load(path); predict(...) where the law predicts.
Names load on first use, so `import scalelaws` stays cheap (the trainers import scalelaws.io).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_API = {
    "load_study": "scalelaws.study",
    "Study": "scalelaws.study",
    "fit_multipower": "scalelaws.mplfit",
    "evaluate_multipower": "scalelaws.mplfit",
    "MultipowerFit": "scalelaws.multipower",
    "Curve": "scalelaws.curves",
    "propose_schedule": "scalelaws.propose",
    "ScheduleProposal": "scalelaws.schedule",
    "fit_cbs": "scalelaws.cbs",
    "CBSResult": "scalelaws.cbs",
    "fit_capacity": "scalelaws.capacity_study",
    "CapacityResult": "scalelaws.capacity_study",
    "FitResult": "scalelaws.fitting",
    "Diagnostic": "scalelaws.diagnostics",
    "lr_array": "scalelaws.schedules",
    "write_report": "scalelaws.html_report",
    "find_results": "scalelaws.findings",
    "find_validation": "scalelaws.closed_loop",
    "predicted_vs_measured": "scalelaws.closed_loop",
    "grid_keys": "scalelaws.summary",
    "runs_table": "scalelaws.summary",
    "status_counts": "scalelaws.summary",
}
__all__ = [
    "CBSResult",
    "CapacityResult",
    "Curve",
    "Diagnostic",
    "FitResult",
    "MultipowerFit",
    "ScheduleProposal",
    "Study",
    "evaluate_multipower",
    "find_results",
    "find_validation",
    "fit_capacity",
    "fit_cbs",
    "fit_multipower",
    "grid_keys",
    "load_study",
    "lr_array",
    "predicted_vs_measured",
    "propose_schedule",
    "runs_table",
    "status_counts",
    "write_report",
]

if TYPE_CHECKING:
    from scalelaws.capacity_study import CapacityResult, fit_capacity
    from scalelaws.cbs import CBSResult, fit_cbs
    from scalelaws.closed_loop import find_validation, predicted_vs_measured
    from scalelaws.curves import Curve
    from scalelaws.diagnostics import Diagnostic
    from scalelaws.findings import find_results
    from scalelaws.fitting import FitResult
    from scalelaws.html_report import write_report
    from scalelaws.mplfit import evaluate_multipower, fit_multipower
    from scalelaws.multipower import MultipowerFit
    from scalelaws.propose import propose_schedule
    from scalelaws.schedule import ScheduleProposal
    from scalelaws.schedules import lr_array
    from scalelaws.study import Study, load_study
    from scalelaws.summary import grid_keys, runs_table, status_counts


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scalelaws' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
