"""scalelaws: fit scaling laws to scalelab results (numpy/scipy/statsmodels/polars only).

The public API (docs/laws.md §1 multi-power, §2 critical batch size, §3 knowledge capacity):

    load_study(path) -> Study                  runs / curves frames with grid.<key> columns
    fit_multipower(curves, ...) -> MultipowerFit
    evaluate_multipower(params, curves, ...) -> MultipowerFit
    propose_schedule(fit, total_steps, peak_lr, ...) -> ScheduleProposal
    fit_cbs(table | study=..., ...) -> CBSResult
    fit_capacity(runs, bound_frac=0.9) -> CapacityResult
    lr_array(name, peak_lr, total_steps, warmup_steps, **params) -> per-update LR

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
    "fit_capacity",
    "fit_cbs",
    "fit_multipower",
    "load_study",
    "lr_array",
    "propose_schedule",
]

if TYPE_CHECKING:
    from scalelaws.capacity_study import CapacityResult, fit_capacity
    from scalelaws.cbs import CBSResult, fit_cbs
    from scalelaws.curves import Curve
    from scalelaws.diagnostics import Diagnostic
    from scalelaws.fitting import FitResult
    from scalelaws.mplfit import evaluate_multipower, fit_multipower
    from scalelaws.multipower import MultipowerFit
    from scalelaws.propose import propose_schedule
    from scalelaws.schedule import ScheduleProposal
    from scalelaws.schedules import lr_array
    from scalelaws.study import Study, load_study


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scalelaws' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
