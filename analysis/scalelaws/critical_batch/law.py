"""Critical batch size (CBS): the S(B) law, its fit per group, and its scaling laws.

Laws (see docs/laws.md §2):
- McCandlish et al. 2018, "An Empirical Model of Large-Batch Training" (arXiv 1812.06162),
  eq. 2.11: (S/S_min − 1)·(E/E_min − 1) = 1 with E = B·S, i.e. S(B) = S_min + E_min/B;
  eq. 2.12: B_crit = E_min / S_min.
- Zhang et al., "How Does Critical Batch Size Scale in Pre-training?", ICLR 2025
  (arXiv 2410.21676): T(B) = fewest steps to a target eval loss, minimised over the LR sweep;
  fit T(B) = a + b/B in log space; CBS = the B where T(B) is 20% above linear scaling from
  B_ref: a + b/B = 1.2·(a·B_ref + b)/B  =>  CBS = 1.2·B_ref + b/(5a).
  b/a (McCandlish's B_crit) and the 20%-overhead CBS are different quantities; never mix them.

Batch sizes are in sequences per optimizer step; steps are optimizer updates. The steps to a
target loss that the fits read are measured in steps.py; the power-law fits of the CBS scaling
are in scalelaws.core.powerlaw.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields

import numpy as np
import polars as pl

from scalelaws.core.powerlaw import tuples_from_json
from scalelaws.critical_batch.steps import check_columns

# ---------------------------------------------------------------- S(B) fit and CBS


def steps_model(batch_size, s_min: float, e_min: float):
    """McCandlish eq. 2.11 solved for S: S(B) = S_min + E_min/B (Zhang: T(B) = a + b/B)."""
    return s_min + e_min / np.asarray(batch_size, float)


def cbs_20pct(s_min: float, e_min: float, ref_batch: float) -> float:
    """Zhang et al. CBS: a + b/B = 1.2·(a·B_ref + b)/B  =>  B = 1.2·B_ref + b/(5a)."""
    return math.inf if s_min <= 0 else 1.2 * ref_batch + e_min / (5.0 * s_min)


def b_crit(s_min: float, e_min: float) -> float:
    """McCandlish eq. 2.12: B_crit = E_min / S_min (inf when S_min = 0: no saturation seen)."""
    return math.inf if s_min <= 0 else e_min / s_min


def _fit_ab(b: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min over a, b >= 0 of Σ (log(a + b/B) − log T)², for each row of (m, n) arrays.

    Variable projection: write a + b/B = a·(1 + c/B) with c = b/a. For fixed c the best
    log a = mean(log T − log(1 + c/B)), so only u = log c is searched: a grid over
    [B_min·1e-4, B_max·1e4], then golden-section refinement in the best grid cell.
    An optimum at the grid's upper edge is a = 0 (T = b/B); at the lower edge b = 0.
    """
    lb, lt = np.log(b), np.log(t)

    def sse(u):  # u: (m, k) values of log c -> (m, k) sums of squared log residuals
        r = lt[:, None, :] - np.logaddexp(0.0, u[..., None] - lb[:, None, :])
        r = r - r.mean(-1, keepdims=True)
        return (r * r).sum(-1)

    m = b.shape[0]
    grid = np.linspace(np.log(b.min()) - 9.2, np.log(b.max()) + 9.2, 300)
    k = sse(np.broadcast_to(grid, (m, grid.size))).argmin(1)
    lo, hi = grid[np.maximum(k - 1, 0)], grid[np.minimum(k + 1, grid.size - 1)]
    g = (math.sqrt(5) - 1) / 2
    for _ in range(60):  # bracket shrinks by 0.618^60 ≈ 3e-13
        x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
        left = sse(np.stack([x1, x2], 1))
        go_left = left[:, 0] < left[:, 1]
        hi = np.where(go_left, x2, hi)
        lo = np.where(go_left, lo, x1)
    c = np.exp((lo + hi) / 2)
    a = np.exp((lt - np.logaddexp(0.0, np.log(c)[:, None] - lb)).mean(1))
    bb = a * c
    top, bottom = k == grid.size - 1, k == 0
    a = np.where(top, 0.0, np.where(bottom, np.exp(lt.mean(1)), a))
    bb = np.where(top, np.exp((lt + lb).mean(1)), np.where(bottom, 0.0, bb))
    return a, bb


@dataclass(frozen=True)
class CBSFit:
    """One group's fit of T(B) = S_min + E_min/B. Units: batch in sequences, S in steps,
    E_min in sequences. Intervals: 95% percentile bootstrap over the group's rows."""

    group: str
    params: int | None
    tokens: int | None
    ref_batch: float
    s_min: float  # a
    e_min: float  # b
    b_crit: float  # McCandlish eq. 2.12: E_min/S_min
    cbs: float  # Zhang et al. 20%-overhead CBS: 1.2·B_ref + b/(5a)
    s_min_interval: tuple[float, float]
    e_min_interval: tuple[float, float]
    b_crit_interval: tuple[float, float]
    cbs_interval: tuple[float, float]
    batch_sizes: tuple[float, ...]
    steps: tuple[float, ...]
    residuals: tuple[float, ...]  # log T̂ − log T per row
    n_boot: int  # resamples that had >= 3 distinct batch sizes
    target: float | None = None  # study tables: the group's target loss
    noise_scale: float | None = None  # B_simple where the noise-batch run reaches the target
    noise_scale_step: float | None = None  # ... and the step where it does

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CBSFit:
        """Back from JSON: lists -> tuples; null S_min/E_min/B_crit/CBS (inf in JSON) -> inf."""
        return cls(
            **{
                f.name: tuples_from_json(d[f.name], inf=f.name in _INF_WHEN_NULL)
                for f in fields(cls)
                if f.name in d
            }
        )

    def predict(self, batch_size) -> np.ndarray:
        """Steps to the target at `batch_size`: S_min + E_min/B (McCandlish eq. 2.11)."""
        return steps_model(batch_size, self.s_min, self.e_min)


_INF_WHEN_NULL = ("b_crit", "cbs", "b_crit_interval", "cbs_interval")


def fit_cbs_group(
    batch_sizes,
    steps,
    ref_batch: float,
    group: str = "",
    params: int | None = None,
    tokens: int | None = None,
    n_boot: int = 500,
    seed: int = 0,
) -> CBSFit:
    """Fit T(B) = a + b/B in log space (Zhang et al.), then B_crit and the 20% CBS.

    Bootstrap: resample the rows (batch sizes) with replacement `n_boot` times (fixed
    `seed`), refit, take the 2.5/97.5 percentiles.
    """
    b = np.asarray(batch_sizes, float)
    t = np.asarray(steps, float)
    if b.shape != t.shape or b.ndim != 1:
        raise ValueError("batch_sizes and steps must be 1-D arrays of the same length")
    if not (np.all(np.isfinite(t)) and np.all(t > 0) and np.all(b > 0)):
        raise ValueError(f"group {group!r}: steps and batch_sizes must be finite and > 0")
    if np.unique(b).size < 3:
        raise ValueError(
            f"group {group!r}: T(B) = a + b/B needs >= 3 distinct batch sizes, got {np.unique(b).size}"
        )
    if n_boot < 200:
        raise ValueError(f"n_boot={n_boot}: use at least 200 bootstrap resamples")
    a1, b1 = _fit_ab(b[None, :], t[None, :])
    a_hat, b_hat = float(a1[0]), float(b1[0])
    resid = np.log(steps_model(b, a_hat, b_hat)) - np.log(t)

    idx = np.random.default_rng(seed).integers(0, b.size, (n_boot, b.size))
    bi, ti = b[idx], t[idx]
    distinct = (np.diff(np.sort(bi, 1), axis=1) > 0).sum(1) + 1
    bi, ti = bi[distinct >= 3], ti[distinct >= 3]  # T(B) = a + b/B needs 3 distinct B
    if bi.shape[0] < n_boot // 2:
        raise ValueError(f"group {group!r}: too few usable bootstrap resamples ({bi.shape[0]})")
    ab, bb = _fit_ab(bi, ti)
    d = np.array(
        [(x, y, b_crit(x, y), cbs_20pct(x, y, ref_batch)) for x, y in zip(ab, bb, strict=True)]
    )

    def ci(col: int) -> tuple[float, float]:
        lo, hi = np.quantile(d[:, col], [0.025, 0.975], method="inverted_cdf")
        return float(lo), float(hi)

    return CBSFit(
        group=group,
        params=params,
        tokens=tokens,
        ref_batch=float(ref_batch),
        s_min=a_hat,
        e_min=b_hat,
        b_crit=b_crit(a_hat, b_hat),
        cbs=cbs_20pct(a_hat, b_hat, ref_batch),
        s_min_interval=ci(0),
        e_min_interval=ci(1),
        b_crit_interval=ci(2),
        cbs_interval=ci(3),
        batch_sizes=tuple(b.tolist()),
        steps=tuple(t.tolist()),
        residuals=tuple(resid.tolist()),
        n_boot=int(d.shape[0]),
    )


def fit_cbs_table(
    table: pl.DataFrame, ref_batch: float, n_boot: int = 500, seed: int = 0
) -> list[CBSFit]:
    """Fit every group of a steps table: columns group, params, batch_size, steps_to_target,
    optional tokens and reached. Rows not reached (null/NaN steps or reached=False) are
    excluded with a warning."""
    check_columns(table, ("group", "params", "batch_size", "steps_to_target"), "table")
    if "tokens" not in table.columns:
        table = table.with_columns(tokens=pl.lit(None, pl.Int64))
    ok = (
        pl.col("steps_to_target").is_not_null()
        & pl.col("steps_to_target").cast(pl.Float64).is_finite()
    )
    if "reached" in table.columns:
        ok = ok & pl.col("reached")
    fits = []
    for (group,), part in table.group_by("group", maintain_order=True):
        dropped = part.filter(~ok)
        if dropped.height:
            warnings.warn(
                f"group {group}: target not reached at batch sizes "
                f"{dropped['batch_size'].to_list()}; excluded from the fit",
                stacklevel=2,
            )
        part = part.filter(ok)
        params, tokens = part["params"][0], part["tokens"][0]
        fits.append(
            fit_cbs_group(
                part["batch_size"].to_numpy(),
                part["steps_to_target"].cast(pl.Float64).to_numpy(),
                ref_batch,
                group=str(group),
                params=None if params is None else int(params),
                tokens=None if tokens is None else int(tokens),
                n_boot=n_boot,
                seed=seed,
            )
        )
    return fits


# ---------------------------------------------------------------- scaling laws of the CBS


def fit_cbs_scaling(
    fits: list[CBSFit],
    quantity: str = "cbs",
    n_unit: float = 1e6,
    d_unit: float = 1e9,
    force: bool = False,
) -> dict:
    """Power laws of `quantity` ("cbs" or "b_crit") vs params N (in n_unit) and tokens D
    (in d_unit), and the joint c·N^a·D^b when both vary independently.

    Returns {"params": PowerLaw, "tokens": PowerLaw, "joint": JointPowerLaw} with only the
    fits the data allow (fewer than 4 groups: refused unless `force`); each diagnostic is also
    a warning (scalelaws.critical_batch.checks.scaling returns them as Diagnostics).
    """
    from scalelaws.critical_batch.checks import scaling

    out, diags = scaling(fits, quantity, n_unit, d_unit, force)
    for d in diags:
        warnings.warn(f"{d.code}: {d.message}", stacklevel=2)
    return out
