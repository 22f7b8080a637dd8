"""Diagnostics carried by every fit and proposal: a stable code, a severity, what was seen and
what to do about it. The codes are listed in CODES (and in docs/analysis.md, "Diagnostics"); a result never drops
one silently, and the CLI prints every one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("info", "warning", "error")


@dataclass(frozen=True)
class Diagnostic:
    code: str  # stable identifier, one of CODES
    severity: str  # "info", "warning" or "error"
    message: str  # what was seen, with the numbers
    action: str = ""  # one line: what to do about it
    subject: str = ""  # the parameter, curve, group or trial it is about ("" = the whole fit)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity: {self.severity!r} is not one of {SEVERITIES}")

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "action": self.action,
            "subject": self.subject,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Diagnostic:
        return cls(
            **{k: d[k] for k in ("code", "severity", "message", "action", "subject") if k in d}
        )

    def line(self) -> str:
        """One line for a console: `warning PARAM_AT_BOUND (gamma): ... -> action`."""
        where = f" ({self.subject})" if self.subject else ""
        tail = f" -> {self.action}" if self.action else ""
        return f"{self.severity} {self.code}{where}: {self.message}{tail}"


# code -> "what it means -> what to do" (docs/analysis.md "Diagnostics" lists the same). Every
# Diagnostic a scalelaws result carries uses one of these codes (tests/test_diagnostics.py).
CODES: dict[str, str] = {
    # generic checks of the shared core (scalelaws.core.checks), for every law
    "PARAM_AT_BOUND": "a fitted parameter sits on or near the edge of its search box: the data "
    "do not pin it -> read it as a bound; fit on longer or more varied runs",
    "NON_IDENTIFIABLE": "a parameter is not determined by the data (95% interval wider than the "
    "estimate, or a near-flat direction of the fit) -> add runs that vary what it describes; "
    "do not read or extrapolate it",
    "ILL_CONDITIONED": "the fit's Jacobian is near-singular (condition number of the scaled "
    "J^T W J above 1e8): parameters trade off against each other -> read the predictions, not "
    "the parameters; add varied runs",
    "MISFIT": "the law misses the data by more than the data's own noise (residual scale vs "
    "noise from second differences within each curve) -> the law does not describe these runs; "
    "check the input or fit a subset",
    "TOO_FEW_POINTS": "too few points for the question (a scaling fit on < 4 points is refused "
    "unless forced) -> add runs; with force the result is shown but not trustworthy",
    "FEW_RESAMPLES": "fewer than 20 bootstrap resamples (or groups): no 95% interval -> use "
    "--bootstrap >= 20 and more curves/runs",
    "FEW_GROUPS": "the bootstrap resamples fewer than 5 groups (curves or runs), so its "
    "intervals are coarse and may span the search box -> add groups before reading intervals",
    "EXTRAPOLATION": "a prediction outside the fitted range (steps, LR, sizes) -> check it with "
    "one run in that range",
    "BELOW_ASYMPTOTE": "a prediction below the law's own asymptote L0 -> the law is used where "
    "it does not hold; do not run it unchecked",
    "NO_FIT_RANGE": "the fit records no range of its curves, so a proposal is not kept inside "
    "it -> propose from a FIT.json written by this scalelab",
    "BELOW_BEST_RUN": "a proposal predicts a loss below the best measured run by more than the "
    "fit's own error -> the gain is not vouched for by any run; run it next to the baselines",
    "ROBUST_DISAGREES": "the OLS fit and its robust (Huber) or bootstrap cross-check disagree "
    "beyond the OLS interval -> an outlier drives the fit; look at the residuals",
    "BOOTSTRAP_FAILED": "some bootstrap refits failed -> the intervals rest on the others; raise "
    "n_boot or add curves",
    "NO_INTERVAL": "no interval -> fit with bootstrap resamples (n_boot >= 20)",
    "LR_REBUILT": "the per-step LR was rebuilt from the logged lr rows, piecewise-linear between "
    "rows (exact when every step was logged) -> pass the study for the spec's exact LR",
    "LR_SPEC_MISMATCH": "a trial's spec gives another LR than its curve logged; the LR was "
    "rebuilt from the rows -> collect the study again",
    "TARGET_NOT_REACHED": "a batch size never reached the target loss; it is left out of T(B) "
    "-> train it longer or raise the target",
    "FIT_SKIPPED": "a fit the data cannot support was skipped (N and D varying together, too "
    "few capacity-bound models) -> vary N at fixed D and D at fixed N",
    "FIT_WARNING": "a numerical library warned during the fit -> read the message",
    "EXPOSURES_GUESSED": "exposures were inferred from the trained tokens (no grid.exposures "
    "column) -> collect with a newer scalelab for the requested budget",
    "NEGATIVE_BITS": "a trial stores fewer than 0 bits (predicts its facts worse than a uniform "
    "guess): undertrained or broken, not a capacity -> train it longer; it is left out of R",
    "RETENTION_UNDEFINED": "the share of bits kept by a quantized copy is undefined or absurd "
    "(fp32 bits <= 0, or the copy holds > 105% of them) -> read the bits, not the share",
    # back-tests (scalelaws.study.backtest; docs/laws.md §7 "Prediction intervals")
    "OVERCONFIDENT": "held-out points fall outside the stated prediction intervals more often "
    "than the level allows (coverage below level - 10 points) -> read the intervals as too "
    "narrow; add curves or scales",
    "UNDERCONFIDENT": "the prediction intervals are uselessly wide (median width above the "
    "measured value, or 10x the median error while covering above level + 7 points) -> add "
    "scales so the fit pins the law down",
    # closed loops (scalelaws.multipower.closed_loop.paired_differences)
    "TOO_FEW_SEEDS": "a paired comparison over seeds rests on fewer than 5 seeds, so its "
    "t-interval is wide or missing -> run at least 5 seeds of each schedule",
    "NOT_SEPARATED": "the interval of a paired difference holds 0: at this scale the law cannot "
    "separate the two schedules -> read them as equal here; add seeds or a larger scale",
    "UNPAIRED_SEEDS": "a seed has a completed run of one schedule only; it is dropped from the "
    "paired comparison -> rerun the missing seeds",
    # Chinchilla (scalelaws.chinchilla.checks; Hoffmann et al. 2022, Besiroglu et al. 2024)
    "TERM_FLAT": "the N or D term barely varies over the runs; its exponent is not determined "
    "-> vary N or D more widely",
    "BOOTSTRAP_FAILURES": "some bootstrap refits did not converge and were skipped -> many "
    "failures mean a poorly constrained fit",
    "OPTIMUM_OUTSIDE_SLICE": "an isoFLOP minimum is extrapolated -> add runs past that end",
    "SLICE_SKIPPED": "an isoFLOP slice was unusable and skipped -> see the message",
    "OPTIMUM_NOT_BRACKETED": "an isoFLOP slice's lowest loss is at its smallest or largest size "
    "(or its fitted minimum lies outside the sizes fitted); it is left out of the exponents "
    "unless kept -> add sizes past that end",
    "E_IMPLAUSIBLE": "the fitted irreducible loss E is below a supplied floor or above the "
    "lowest measured loss -> fix E at a known floor (fix_e) or add runs at larger N and D",
    "NOPT_SCATTER": "the isoFLOP optima scatter about the power law more than their bootstrap "
    "errors allow; the exponent intervals are widened -> look for slices trained differently",
    "SLICE_SPREAD": "a slice's runs differ a lot in compute -> pass budget_col or narrow gap_dex",
    "APPROACHES_DISAGREE": "approach-2 and approach-3 optima differ beyond their intervals -> "
    "trust neither blindly; add runs near the optimum",
    "COMPUTE_CONVENTION_MISMATCH": "the fits compared use different FLOPs conventions -> refit "
    "with one convention",
    "LR_AT_EDGE": "the fewest steps to a target came from the highest (or lowest) LR swept at "
    "that batch size: T(B) may be over-estimated there, and the CBS with it -> extend the LR "
    "sweep past that edge",
    # hyperparameter laws (scalelaws.hparams.checks; docs/laws.md §9)
    "OPTIMUM_AT_EDGE": "a cell's fitted optimum (minimum of its loss over ln lr, ln batch) lies "
    "outside the LRs or batch sizes swept there; the cell reports its best run instead and is "
    "left out of that law -> extend the sweep past that edge",
    "NOT_CONVEX": "a cell's fitted loss surface over (ln lr, ln batch) has no minimum (Hessian "
    "not positive definite); the best run is reported and the cell left out of the laws -> add "
    "runs around the best one; check for half-diverged runs",
    "FEW_GRID_VALUES": "a cell has fewer than 3 distinct LRs or batch sizes, so a quadratic "
    "cannot place the optimum along that axis; its value there is the best one swept and the "
    "cell is left out of that law -> sweep >= 3 values per cell",
    "FORMS_DISAGREE": "the (N, D) form and the compute form C = 6ND of a hyperparameter law "
    "give non-overlapping prediction intervals -> C alone does not capture how N and D trade "
    "off here; add cells near the point asked",
}


def meaning(code: str) -> str:
    """The registered meaning of `code` (KeyError for an unregistered code)."""
    return CODES[code]


def worst(diags) -> str | None:
    """The most severe level among `diags` (None when there are none)."""
    levels = [SEVERITIES.index(d.severity) for d in diags]
    return SEVERITIES[max(levels)] if levels else None
