"""Diagnostics carried by every fit and proposal: a stable code, a severity, what was seen and
what to do about it. The codes are listed in CODES (and in the README); a result never drops
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


# code -> what it means and what to do (README "Diagnostics" lists the same table).
CODES: dict[str, str] = {
    "PARAM_AT_BOUND": "a fitted parameter sits at the edge of its search box: not identified "
    "by these data; read it as a bound, or fit on more varied data",
    "BOOTSTRAP_FAILED": "some bootstrap refits failed; the intervals rest on the others",
    "LR_REBUILT": "the per-step LR was rebuilt from the logged lr rows (exact when every step "
    "was logged); pass the study for the spec's exact LR",
    "LR_SPEC_MISMATCH": "a trial's spec gives another LR than its curve logged; the LR was "
    "rebuilt from the rows; collect the study again",
    "NO_INTERVAL": "no interval: the fit has no bootstrap refits; fit with n_boot > 0",
    "EXTRAPOLATION": "a prediction outside the fitted range (longer run, higher LR)",
    "TARGET_NOT_REACHED": "a batch size never reached the target loss; it is left out of T(B)",
    "FIT_SKIPPED": "a fit the data cannot support was skipped (too few points, N and D "
    "varying together, too few capacity-bound models)",
    "FIT_WARNING": "a numerical library warned during the fit; the message says what",
    "EXPOSURES_GUESSED": "exposures were inferred from the trained tokens (no grid.exposures "
    "column); collect with a newer scalelab for the requested budget",
}


def worst(diags) -> str | None:
    """The most severe level among `diags` (None when there are none)."""
    levels = [SEVERITIES.index(d.severity) for d in diags]
    return SEVERITIES[max(levels)] if levels else None
