"""The formulas of the hyperparameter laws (docs/laws.md §9), as the code evaluates them.

Per (N, D) cell, the final loss over x = ln η (peak LR) and y = ln B (batch size), near its
minimum, is a quadratic (Step Law, Li et al. 2025, arXiv 2503.04715, §3: the loss landscape
over (η, B) at fixed N, D is convex with a broad optimum):

    L(x, y) = β0 + β1·u + β2·v + β3·u² + β4·u·v + β5·v²,     u = x − x0, v = y − y0
    gradient g = (β1, β2),   Hessian H = [[2β3, β4], [β4, 2β5]]
    optimum (u*, v*) = −H⁻¹·g   when H is positive definite (2β3 > 0 and det H > 0)
      u* = −(2β5·β1 − β4·β2)/det H,   v* = −(2β3·β2 − β4·β1)/det H,   det H = 4β3β5 − β4²
    η* = exp(x0 + u*),  B* = exp(y0 + v*),  L* = L(u*, v*)

Across cells, power laws fitted by OLS on logs (scalelaws.hparams.scaling):

    η*(N, D) = a·N^α·D^β          B*(N, D) = b·N^γ·D^δ          (N params, D tokens)
    η*(C) = k_η·C^e_η             B*(C) = k_B·C^e_B             C = 6·N·D FLOPs

Published forms (quoted, not fitted here; PUBLISHED below):
- DeepSeek LLM (Bi et al. 2024, arXiv 2401.02954, §3.1): η_opt = 0.3118·C^−0.1250,
  B_opt = 0.2920·C^0.3271, B in tokens, C = M·D in FLOPs (M: non-embedding FLOPs per token,
  attention included; 6N is the usual stand-in).
- Step Law (Li et al. 2025, arXiv 2503.04715): η(N, D) = 1.79·N^−0.713·D^0.307,
  B(D) = 0.58·D^0.571, N non-embedding parameters, D tokens, B in tokens.
- Power Lines (Bergsma et al. 2025, arXiv 2505.13738): B_opt and B_crit are power laws in D
  alone, independent of N (no constants quoted here: theirs are for their μP setup).

Penalty of running at (η, B) instead of the optimum, from the quadratic:

    ΔL = ½·δᵀ·H·δ,   δ = (ln η − ln η*, ln B − ln B*)
       = c_η·δ_η² + h_ηB·δ_η·δ_B + c_B·δ_B²,   c_η = H_ηη/2, c_B = H_BB/2, h_ηB = H_ηB
"""

from __future__ import annotations

import math

import numpy as np

FLOPS_PER_PARAM_TOKEN = 6.0  # C = 6·N·D (Kaplan et al. 2020, training FLOPs per param per token)

# The published forms (docs/laws.md §9.4): y = coef · Π var^exponent.
PUBLISHED = {
    "deepseek_llm": {
        "source": "Bi et al. 2024, DeepSeek LLM, arXiv 2401.02954, §3.1",
        "lr": {"coef": 0.3118, "exponents": {"C": -0.1250}},
        "batch": {"coef": 0.2920, "exponents": {"C": 0.3271}},
        "units": "C in FLOPs (non-embedding FLOPs per token x tokens), B in tokens",
    },
    "step_law": {
        "source": "Li et al. 2025, Predictable Scale: Part I (Step Law), arXiv 2503.04715",
        "lr": {"coef": 1.79, "exponents": {"N": -0.713, "D": 0.307}},
        "batch": {"coef": 0.58, "exponents": {"D": 0.571}},
        "units": "N non-embedding parameters, D tokens, B in tokens",
    },
}


def num(v) -> float:
    """A float from a stored value: None (JSON's NaN) -> NaN."""
    return math.nan if v is None else float(v)


def compute(n, d) -> np.ndarray:
    """Training compute C = 6·N·D in FLOPs."""
    return FLOPS_PER_PARAM_TOKEN * np.asarray(n, float) * np.asarray(d, float)


def power_law(coef: float, exponents: dict[str, float], n, d) -> np.ndarray:
    """coef · N^e_N · D^e_D · C^e_C for the variables in `exponents` (N, D, C = 6ND)."""
    n, d = np.asarray(n, float), np.asarray(d, float)
    logs = {"N": np.log(n), "D": np.log(d), "C": np.log(compute(n, d))}
    return coef * np.exp(sum(e * logs[v] for v, e in exponents.items()))


def published(name: str, target: str, n, d) -> np.ndarray:
    """A published law's η* (target "lr") or B* ("batch") at N, D (C = 6ND for DeepSeek's C)."""
    law = PUBLISHED[name][target]
    return power_law(law["coef"], law["exponents"], n, d)


# ---------------------------------------------------------------- the quadratic surface


def hessian(beta: np.ndarray) -> np.ndarray:
    """H = [[2β3, β4], [β4, 2β5]] for each row of beta (k, 6) -> (k, 2, 2)."""
    b = np.atleast_2d(beta)
    return np.stack([np.stack([2 * b[:, 3], b[:, 4]], -1), np.stack([b[:, 4], 2 * b[:, 5]], -1)], 1)


def convex(beta: np.ndarray) -> np.ndarray:
    """H positive definite per row: 2β3 > 0 and det H = 4β3β5 − β4² > 0."""
    b = np.atleast_2d(beta)
    return (b[:, 3] > 0) & (4 * b[:, 3] * b[:, 5] - b[:, 4] ** 2 > 0)


def stationary(beta: np.ndarray) -> np.ndarray:
    """(u*, v*) = −H⁻¹·g per row of beta (k, 6) -> (k, 2); NaN where det H = 0."""
    b = np.atleast_2d(beta)
    det = 4 * b[:, 3] * b[:, 5] - b[:, 4] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        u = -(2 * b[:, 5] * b[:, 1] - b[:, 4] * b[:, 2]) / det
        v = -(2 * b[:, 3] * b[:, 2] - b[:, 4] * b[:, 1]) / det
    return np.stack([u, v], -1)


def conditional(beta: np.ndarray, axis: int, fixed) -> np.ndarray:
    """The minimiser along one axis with the other held at `fixed` (both in centred coords):
    axis 1 (v): ∂L/∂v = β2 + β4·u + 2β5·v = 0  =>  v = −(β2 + β4·u)/(2β5);
    axis 0 (u): u = −(β1 + β4·v)/(2β3). NaN where that curvature is <= 0."""
    b = np.atleast_2d(beta)
    lin, curv = (b[:, 2], b[:, 5]) if axis == 1 else (b[:, 1], b[:, 3])
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -(lin + b[:, 4] * fixed) / (2 * curv)
    return np.where(curv > 0, out, np.nan)


def quadratic(beta, u, v) -> np.ndarray:
    """L(u, v) for one beta (6,)."""
    b0, b1, b2, b3, b4, b5 = np.asarray(beta, float)
    u, v = np.asarray(u, float), np.asarray(v, float)
    return b0 + b1 * u + b2 * v + b3 * u * u + b4 * u * v + b5 * v * v


def penalty(hess, d_lr, d_batch) -> np.ndarray:
    """ΔL = ½·δᵀHδ = ½(H_ηη·δ_η² + 2·H_ηB·δ_η·δ_B + H_BB·δ_B²); a zero δ component ignores
    its (possibly unknown, NaN) Hessian entries."""
    h = np.asarray(hess, float)
    dx, dy = np.asarray(d_lr, float), np.asarray(d_batch, float)

    def term(coef, a, b):
        return np.where((a == 0) | (b == 0), 0.0, coef * a * b)

    return 0.5 * (term(h[0, 0], dx, dx) + 2 * term(h[0, 1], dx, dy) + term(h[1, 1], dy, dy))
