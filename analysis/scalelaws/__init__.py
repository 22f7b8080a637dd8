"""scalelaws: fit scaling laws to scalelab results (numpy/scipy/statsmodels/polars only).

The public API (docs/laws.md §1 multi-power, §2 critical batch size, §3 knowledge capacity,
§4 Chinchilla, §9 hyperparameter laws):

    load_study(path) -> Study                  runs / curves frames with grid.<key> columns
    fit_multipower(curves, ...) -> MultipowerFit
    evaluate_multipower(params, curves, ...) -> MultipowerFit
    propose_schedule(fit, total_steps, peak_lr, ...) -> ScheduleProposal
    fit_cbs(table | study=..., ...) -> CBSResult
    fit_capacity(runs, bound_frac=0.9) -> CapacityResult
    fit_isoflop(runs, ...) -> IsoFLOPFit       Chinchilla approach 2 (docs/laws.md §4)
    fit_loss_surface(runs, ...) -> ChinchillaFit   Chinchilla approach 3
    compare_approaches(iso, surf) -> Comparison
    propose_size(fit, flops) -> SizeProposal   compute-optimal N, D for a budget
    fit_hparams(runs, ...) -> HparamsFit       optimal peak LR and batch size per (N, D), their
                                               power laws in N, D and C; .predict, .penalty
    lr_array(name, peak_lr, total_steps, warmup_steps, **params) -> per-update LR
    status_counts(study), grid_keys(study), runs_table(study)     a study at a glance
    find_results(DIR) -> [Finding]             the fit and proposal JSON files in a study folder
    find_validation(DIR), predicted_vs_measured(proposal, runs)   closed loops
    paired_differences(runs) -> PairedDifferences   proposal minus baselines, paired by seed
    write_report(study) -> DIR/report.html     one self-contained page (no fitting)
    backtest(data, law=...) -> Backtest        coverage of held-out 90% prediction intervals
    fit.prediction(...) -> Prediction          a prediction with its interval (every law)

Every result is a frozen dataclass (scalelaws.core.result.Result): params, intervals, metrics,
diagnostics, info, to_dict(), to_json(path), load(path); predict(...) where the law predicts.
Names load on first use, so `import scalelaws` stays cheap (the trainers import scalelaws.io).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_API = {
    "load_study": "scalelaws.study.load",
    "Study": "scalelaws.study.load",
    "fit_multipower": "scalelaws.multipower.fit",
    "evaluate_multipower": "scalelaws.multipower.fit",
    "MultipowerFit": "scalelaws.multipower.fit",
    "Curve": "scalelaws.multipower.curves",
    "propose_schedule": "scalelaws.multipower.propose",
    "ScheduleProposal": "scalelaws.multipower.schedule",
    "fit_cbs": "scalelaws.critical_batch.fit",
    "CBSResult": "scalelaws.critical_batch.fit",
    "fit_capacity": "scalelaws.capacity.fit",
    "CapacityResult": "scalelaws.capacity.fit",
    "fit_isoflop": "scalelaws.chinchilla.isoflop",
    "IsoFLOPFit": "scalelaws.chinchilla.isoflop",
    "fit_loss_surface": "scalelaws.chinchilla.fit",
    "ChinchillaFit": "scalelaws.chinchilla.fit",
    "compare_approaches": "scalelaws.chinchilla.propose",
    "Comparison": "scalelaws.chinchilla.propose",
    "propose_size": "scalelaws.chinchilla.propose",
    "SizeProposal": "scalelaws.chinchilla.propose",
    "fit_hparams": "scalelaws.hparams.fit",
    "HparamsFit": "scalelaws.hparams.fit",
    "FitResult": "scalelaws.core.fitting",
    "Diagnostic": "scalelaws.core.diagnostics",
    "lr_array": "scalelaws.schedules",
    "write_report": "scalelaws.study.report",
    "backtest": "scalelaws.study.backtest",
    "Backtest": "scalelaws.study.backtest",
    "Prediction": "scalelaws.core.prediction",
    "find_results": "scalelaws.study.findings",
    "find_validation": "scalelaws.multipower.closed_loop",
    "predicted_vs_measured": "scalelaws.multipower.closed_loop",
    "paired_differences": "scalelaws.multipower.closed_loop",
    "PairedDifferences": "scalelaws.multipower.closed_loop",
    "grid_keys": "scalelaws.study.summary",
    "runs_table": "scalelaws.study.summary",
    "status_counts": "scalelaws.study.summary",
}
__all__ = [
    "Backtest",
    "CBSResult",
    "CapacityResult",
    "ChinchillaFit",
    "Comparison",
    "Curve",
    "Diagnostic",
    "FitResult",
    "HparamsFit",
    "IsoFLOPFit",
    "MultipowerFit",
    "PairedDifferences",
    "Prediction",
    "ScheduleProposal",
    "SizeProposal",
    "Study",
    "backtest",
    "compare_approaches",
    "evaluate_multipower",
    "find_results",
    "find_validation",
    "fit_capacity",
    "fit_cbs",
    "fit_hparams",
    "fit_isoflop",
    "fit_loss_surface",
    "fit_multipower",
    "grid_keys",
    "load_study",
    "lr_array",
    "paired_differences",
    "predicted_vs_measured",
    "propose_schedule",
    "propose_size",
    "runs_table",
    "status_counts",
    "write_report",
]

if TYPE_CHECKING:
    from scalelaws.capacity.fit import CapacityResult, fit_capacity
    from scalelaws.chinchilla.fit import ChinchillaFit, fit_loss_surface
    from scalelaws.chinchilla.isoflop import IsoFLOPFit, fit_isoflop
    from scalelaws.chinchilla.propose import (
        Comparison,
        SizeProposal,
        compare_approaches,
        propose_size,
    )
    from scalelaws.core.diagnostics import Diagnostic
    from scalelaws.core.fitting import FitResult
    from scalelaws.core.prediction import Prediction
    from scalelaws.critical_batch.fit import CBSResult, fit_cbs
    from scalelaws.hparams.fit import HparamsFit, fit_hparams
    from scalelaws.multipower.closed_loop import (
        PairedDifferences,
        find_validation,
        paired_differences,
        predicted_vs_measured,
    )
    from scalelaws.multipower.curves import Curve
    from scalelaws.multipower.fit import MultipowerFit, evaluate_multipower, fit_multipower
    from scalelaws.multipower.propose import propose_schedule
    from scalelaws.multipower.schedule import ScheduleProposal
    from scalelaws.schedules import lr_array
    from scalelaws.study.backtest import Backtest, backtest
    from scalelaws.study.findings import find_results
    from scalelaws.study.load import Study, load_study
    from scalelaws.study.report import write_report
    from scalelaws.study.summary import grid_keys, runs_table, status_counts


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scalelaws' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
