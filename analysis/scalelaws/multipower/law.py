"""Multi-power law (MPL) of the loss curve under any LR schedule, two baselines, and predict.

MPL — Luo et al., "A Multi-Power Law for Loss Curve Prediction Across Learning Rate Schedules",
ICLR 2025, arXiv 2503.12811 (the MPL equation; docs/laws.md §1):

    L(t)   = L0 + A·(S1(t) + S_W)^(−α) − LD(t)
    LD(t)  = B · Σ_{k=1..t} (η_{k−1} − η_k) · G(η_k^(−γ) · S_k(t)),   S_k(t) = Σ_{τ=k..t} η_τ
    G(x)   = 1 − (C·x + 1)^(−β)

Step convention (scalelab): `lr[j]` is the LR of update j+1 and the loss at step s is measured
after s updates, so η_1..η_s = lr[0:s]; η_0 := η_1 (no drop before the first update).
The sums run over the whole per-step schedule, warmup included, as in the authors' code: S1(t)
then already holds S_W, and the warmup's LR *rises* enter LD with a negative sign (a constant
offset once G saturates). With this convention the published 400M parameters reproduce the
published metrics on the refdata curves (tests/test_multipower.py).

Baselines, fitted by the same core:
- "power" (constant-schedule power law, CDSL): L = L0 + A·S1^(−α).
- "momentum" (Tissue et al. 2024, arXiv 2408.11029, scaling law with LR annealing):
  L = L0 + A·S1^(−α) − C·S2, m_i = λ·m_{i−1} + (η_{i−1} − η_i), S2 = Σ_i m_i, λ = 0.999.

LD is computed in O(T) per evaluated step from the cumulative sum cum[j] = Σ lr[0:j]:
S_k(t) = cum[t] − cum[k−1], and only steps where η changes contribute. Fitting uses the same
sum on blocks of steps whose width grows with the distance to the evaluated step
(midpoint rule; exact for step drops; error ≪ 1e-5 in the loss), then reports exact metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from scalelaws.core.fitting import Law, Param
from scalelaws.multipower.curves import Curve, build_lr

__all__ = ["Curve", "build_lr", "make_law", "predict"]

MPL_PARAMS = ("L0", "A", "alpha", "B", "C", "beta", "gamma")
LAWS = ("multipower", "power", "momentum")
MOMENTUM_DECAY = 0.999  # λ of Tissue et al. 2024
_TINY = 1e-30  # floor for log η where η = 0 (then G = 1)
_CHUNK = 2_000_000  # max (step, drop) pairs held at once by the exact LD sum


# --------------------------------------------------------------------------- sums over a schedule


def _drops(lr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """d[j] = lr[j−1] − lr[j] (d[0] = 0), cum[j] = Σ lr[0:j], log η (floored)."""
    lr = np.asarray(lr, dtype=float)
    d = np.zeros_like(lr)
    d[1:] = lr[:-1] - lr[1:]
    cum = np.concatenate([[0.0], np.cumsum(lr)])
    return d, cum, np.log(np.maximum(lr, _TINY))


def momentum_s2(lr: np.ndarray, steps: np.ndarray, decay: float = MOMENTUM_DECAY) -> np.ndarray:
    """S2(s) = Σ_{j<s} m_j with m_j = λ·m_{j−1} + d_j (Tissue et al. 2024), O(T)."""
    from scipy.signal import lfilter

    d, _, _ = _drops(lr)
    m = lfilter([1.0], [1.0, -decay], d)
    return np.concatenate([[0.0], np.cumsum(m)])[np.asarray(steps)]


def _pair_chunks(jnz: np.ndarray, cum: np.ndarray, steps: np.ndarray):
    """(row, k, S) for every evaluated step s (row) and drop j = jnz[k] < s, with
    S = S_j(s) = cum[s] − cum[j]; at most ~_CHUNK pairs at a time."""
    steps = np.asarray(steps, dtype=np.int64)
    counts = np.searchsorted(jnz, steps)  # number of j < s
    start = 0
    while start < steps.size:
        csum = np.cumsum(counts[start:])
        stop = start + max(1, int(np.searchsorted(csum, _CHUNK, side="right")))
        cnt = counts[start:stop]
        rows = np.repeat(np.arange(start, stop), cnt)
        k = np.arange(rows.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        yield rows, k, cum[steps[rows]] - cum[jnz[k]]
        start = stop


def _block_edges(max_u: int, c: int) -> np.ndarray:
    """Distances u = s − j: single steps up to c, then blocks growing by a factor (1 + 1/c)."""
    edges = list(range(1, c + 2))
    while edges[-1] <= max_u:
        edges.append(int(np.ceil(edges[-1] * (1 + 1 / c))))
    return np.array(edges)


def _blocked_pairs(lr: np.ndarray, steps: np.ndarray, c: int):
    """Blocked version of _exact_pairs (same sum, ~100x fewer terms).

    For step s, j < s is cut into blocks whose width in u = s − j grows by (1 + 1/c), also cut
    wherever log η has moved by 1/c since the last cut (so a block never spans a warmup or a fast
    decay). Rises and drops are summed apart. Per block: weight w = Σ d_j, position = d-weighted
    mean j (S interpolated on cum), log η = d-weighted mean of log η_j (midpoint rule); a block
    holding a single drop is exact.
    """
    d, cum, le = _drops(lr)
    n = lr.size
    steps = np.asarray(steps, dtype=np.int64)
    edges = _block_edges(int(steps.max()), c)
    walk = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(le)))])  # Σ |Δ log η| up to j
    jcuts = np.flatnonzero(np.diff(np.floor(walk * c))) + 1  # j where a log-η segment starts
    los, his, rows = [], [], []
    for i, s in enumerate(steps):
        b = np.union1d(np.clip(s - edges + 1, 0, s), jcuts[jcuts < s])
        los.append(b[:-1])
        his.append(b[1:])
        rows.append(np.full(b.size - 1, i))
    lo, hi, rows = np.concatenate(los), np.concatenate(his), np.concatenate(rows)
    out = []
    for part in (np.maximum(d, 0.0), np.minimum(d, 0.0)):  # drops, then rises
        a = np.abs(part)
        pre = [np.concatenate([[0.0], np.cumsum(v)]) for v in (part, a, a * np.arange(n), a * le)]
        wsum, asum, ajsum, alsum = (p[hi] - p[lo] for p in pre)
        keep = asum > 0
        jbar = ajsum[keep] / asum[keep]
        S = cum[steps[rows[keep]]] - np.interp(jbar, np.arange(n + 1), cum)
        out.append((rows[keep], wsum[keep], alsum[keep] / asum[keep], S))
    return tuple(np.concatenate(v) for v in zip(*out, strict=True))


# --------------------------------------------------------------------------- design for fitting


class Design:
    """Everything the laws need at the evaluated points of several curves (fixed during a fit)."""

    def __init__(
        self,
        curves: Sequence[Curve],
        exact: bool = False,
        c: int = 16,
        log_ref: float | None = None,
    ):
        self.curves = list(curves)
        s1, s2, rows, w, le, S, cid = [], [], [], [], [], [], []
        offset = 0
        for i, cv in enumerate(self.curves):
            lr = np.asarray(cv.lr, float)
            st = np.asarray(cv.steps, np.int64)
            _, cum, _ = _drops(lr)
            s1.append(cum[st])
            s2.append(momentum_s2(lr, st))
            cid.append(np.full(st.size, i))
            parts = _exact_pairs(lr, st) if exact else [_blocked_pairs(lr, st, c)]
            for r, ww, ll, ss in parts:
                rows.append(r + offset)
                w.append(ww)
                le.append(ll)
                S.append(ss)
            offset += st.size
        self.n = offset
        self.s1 = np.concatenate(s1)
        if np.any(self.s1 <= 0):
            raise ValueError("some evaluated step has S1 = Σ lr[0:s] = 0; drop rows before any LR")
        self.log_s1 = np.log(self.s1)
        self.s2 = np.concatenate(s2)
        self.curve_id = np.concatenate(cid)
        self.rows = np.concatenate(rows).astype(np.int64)
        self.w, self.S = np.concatenate(w), np.concatenate(S)
        # log η is measured from a reference LR (the peak), so the fit sees C_ref = C·η_ref^(−γ)
        # and γ as nearly independent coordinates (C and γ alone are strongly correlated)
        peak = max(float(np.max(cv.lr)) for cv in self.curves)
        self.log_ref = float(np.log(peak)) if log_ref is None else float(log_ref)
        self.loge = np.concatenate(le) - self.log_ref
        self.y = np.concatenate([np.asarray(cv.loss, float) for cv in self.curves])
        # LR rise during warmup (Σ of negative drops before the first evaluated step), median
        self.rise = float(np.median([_rise(cv) for cv in self.curves]))

    def subset(self, keep: np.ndarray) -> Design:
        """The same design at the points `keep` only (a bool per point): the pairs of the
        dropped points go too, so a bootstrap resample that leaves curves out costs less."""
        keep = np.asarray(keep, bool)
        new = object.__new__(Design)
        new.__dict__.update(self.__dict__)
        index = np.cumsum(keep) - 1  # old point -> new point
        pairs = keep[self.rows]
        new.rows = index[self.rows[pairs]]
        new.w, new.S, new.loge = self.w[pairs], self.S[pairs], self.loge[pairs]
        for name in ("s1", "log_s1", "s2", "curve_id", "y"):
            setattr(new, name, getattr(self, name)[keep])
        new.n = int(keep.sum())
        return new


def _exact_pairs(lr: np.ndarray, steps: np.ndarray) -> list:
    """(row, w, loge, S) for every (evaluated step s, j < s with d_j ≠ 0)."""
    d, cum, le = _drops(lr)
    jnz = np.flatnonzero(d)
    return [(r, d[jnz[k]], le[jnz[k]], S) for r, k, S in _pair_chunks(jnz, cum, steps)]


def _rise(cv: Curve) -> float:
    d, _, _ = _drops(cv.lr)
    return float(-np.sum(np.minimum(d[: int(np.min(cv.steps))], 0.0)))


def _ld(theta: np.ndarray, D: Design, grad: bool):
    """LD/B summed per point, and optionally ∂(Σ w·G)/∂(C, β, γ) per point."""
    C, beta, gamma = theta[4], theta[5], theta[6]
    x = C * np.exp(-gamma * D.loge) * D.S
    l1 = np.log1p(x)
    q = np.exp(-beta * l1)  # (1 + x)^(−β)
    g = np.bincount(D.rows, D.w * (1.0 - q), minlength=D.n)
    if not grad:
        return g, None
    dx = D.w * beta * q / (1.0 + x) * x  # w · ∂G/∂x · x
    dC = np.bincount(D.rows, dx, minlength=D.n) / C
    dbeta = np.bincount(D.rows, D.w * q * l1, minlength=D.n)
    dgamma = -np.bincount(D.rows, dx * D.loge, minlength=D.n)
    return g, np.stack([dC, dbeta, dgamma], axis=1)


def _mpl_jac(theta: np.ndarray, D: Design):
    L0, A, alpha, B = theta[:4]
    p = np.exp(-alpha * D.log_s1)  # S1^(−α)
    g, dg = _ld(theta, D, grad=True)
    yhat = L0 + A * p - B * g
    jac = np.empty((D.n, 7))
    jac[:, 0] = 1.0
    jac[:, 1] = p
    jac[:, 2] = -A * p * D.log_s1
    jac[:, 3] = -g
    jac[:, 4:] = -B * dg
    return yhat, jac


def _mpl_predict(theta: np.ndarray, D: Design) -> np.ndarray:
    g, _ = _ld(theta, D, grad=False)
    return theta[0] + theta[1] * np.exp(-theta[2] * D.log_s1) - theta[3] * g


def _power_jac(theta: np.ndarray, D: Design):
    L0, A, alpha = theta[:3]
    p = np.exp(-alpha * D.log_s1)
    jac = np.stack([np.ones(D.n), p, -A * p * D.log_s1], axis=1)
    return L0 + A * p, jac


def _momentum_jac(theta: np.ndarray, D: Design):
    yhat, jac = _power_jac(theta, D)
    return yhat - theta[3] * D.s2, np.column_stack([jac, -D.s2])


def _loglog_starts(D: Design, y: np.ndarray) -> list[tuple[float, float, float]]:
    """(L0_eff, A, α) from OLS of log(y − L0_eff) on log S1, for a few floors L0_eff."""
    out = []
    for frac in (0.5, 0.75, 0.9):
        floor = frac * float(y.min())
        slope, icpt = np.polyfit(D.log_s1, np.log(y - floor), 1)
        out.append((floor, float(np.exp(icpt)), float(np.clip(-slope, 0.01, 2.9))))
    return out


def _mpl_guesses(D: Design, y: np.ndarray) -> list[np.ndarray]:
    # docs/laws.md: L0 near min loss, A, α from log-log regression, B ∈ {100, 550, 1000}, C = 1,
    # β = γ = 0.5. L0 is moved by B·rise: the warmup rise adds ≈ B·rise to the loss.
    c_ref = np.exp(-0.5 * D.log_ref)  # C = 1 at γ = 0.5
    starts = []
    for floor, A, alpha in _loglog_starts(D, y):
        for B in (100.0, 550.0, 1000.0):
            L0 = max(floor - B * D.rise, 1e-2)
            starts.append(np.array([L0, A, alpha, B, c_ref, 0.5, 0.5]))
    return starts


def _mpl_report(theta: np.ndarray, D: Design) -> dict[str, float]:
    """Internal (…, C_ref, …) → the paper's parameters: C = C_ref·η_ref^γ."""
    out = dict(zip(MPL_PARAMS, (float(v) for v in theta), strict=True))
    out["C"] = float(theta[4] * np.exp(theta[6] * D.log_ref))
    return out


def internal_theta(params: Mapping[str, float], D: Design) -> np.ndarray:
    """The paper's MPL parameters → the fitting coordinates over design D."""
    th = _mpl_vector(params)
    th[4] = th[4] * np.exp(-th[6] * D.log_ref)
    return th


def _mpl_vector(params: Mapping[str, float]) -> np.ndarray:
    missing = [k for k in MPL_PARAMS if k not in params]
    if missing:
        raise ValueError(f"multipower params lack {missing}; give all of {list(MPL_PARAMS)}")
    return np.array([float(params[k]) for k in MPL_PARAMS])


def _power_guesses(D: Design, y: np.ndarray) -> list[np.ndarray]:
    return [np.array(s) for s in _loglog_starts(D, y)]


def _momentum_guesses(D: Design, y: np.ndarray) -> list[np.ndarray]:
    s2_mid = float(np.median(D.s2))
    return [
        np.array([max(f + C * s2_mid, 1e-2), A, a, C])
        for f, A, a in _loglog_starts(D, y)
        for C in (0.1, 1.0, 10.0)
    ]


_COMMON = (Param("L0", 1e-3, 1e3, 2.0), Param("A", 1e-4, 1e3, 0.5), Param("alpha", 1e-3, 3.0, 0.5))
_MPL_EXTRA = (
    Param("B", 1e-2, 1e5, 500.0),
    Param("C_ref", 1e-6, 1e9, 50.0),  # C·η_ref^(−γ), reported as C
    Param("beta", 1e-3, 5.0, 0.5),
    Param("gamma", 1e-3, 3.0, 0.5),
)


def _subset(D: Design, keep: np.ndarray) -> Design:
    return D.subset(keep)


def make_law(name: str) -> Law:
    """The fitting `Law` for "multipower", "power" (CDSL) or "momentum" over a `Design`."""
    if name == "multipower":
        ref = "Luo et al. ICLR 2025, arXiv 2503.12811 (multi-power law)"
        return Law(
            name,
            _COMMON + _MPL_EXTRA,
            _mpl_predict,
            _mpl_jac,
            _mpl_guesses,
            ref,
            _mpl_report,
            subset=_subset,
        )
    if name == "power":
        ref = "constant-schedule power law in the LR area (CDSL)"
        return Law(
            name, _COMMON, _first(_power_jac), _power_jac, _power_guesses, ref, subset=_subset
        )
    if name == "momentum":
        ref = "Tissue et al. 2024, arXiv 2408.11029 (annealing area S2)"
        params = _COMMON + (Param("C", 1e-4, 1e4, 1.0),)
        law = Law(name, params, _first(_momentum_jac), _momentum_jac, _momentum_guesses, ref)
        return dataclasses.replace(law, subset=_subset)
    raise ValueError(f"unknown law {name!r}: use one of {LAWS}")


def _first(jac):
    return lambda theta, D: jac(theta, D)[0]


# --------------------------------------------------------------------------- predict


def predict(
    params: Mapping[str, float], lr: np.ndarray, steps: np.ndarray, law: str = "multipower"
) -> np.ndarray:
    """Exact predicted loss after each of `steps` updates under the per-step schedule `lr`."""
    lr = np.asarray(lr, dtype=float)
    steps = np.atleast_1d(np.asarray(steps, dtype=np.int64))
    if steps.size and (steps.min() < 1 or steps.max() > lr.size):
        raise ValueError(f"steps must lie in 1..len(lr)={lr.size} (loss at step s uses lr[0:s])")
    theta = _mpl_vector(params) if law == "multipower" else make_law(law).vector(params)
    _, cum, _ = _drops(lr)
    s1 = cum[steps]
    if np.any(s1 <= 0):
        raise ValueError("S1 = Σ lr[0:s] is 0 at some step: the law is undefined there")
    base = theta[0] + theta[1] * s1 ** (-theta[2])
    if law == "power":
        return base
    if law == "momentum":
        return base - theta[3] * momentum_s2(lr, steps)
    C, beta, gamma = theta[4:]
    d, _, le = _drops(lr)
    jnz = np.flatnonzero(d)
    w, a = d[jnz], C * np.exp(-gamma * le[jnz])  # per drop: η_{k−1} − η_k and C·η_k^(−γ)
    ld = np.zeros(steps.size)
    for rows, k, S in _pair_chunks(jnz, cum, steps):
        g = w[k] * -np.expm1(-beta * np.log1p(a[k] * S))  # w·G(x), G = 1 − (1 + x)^(−β)
        ld += np.bincount(rows, g, minlength=steps.size)
    return base - theta[3] * ld
