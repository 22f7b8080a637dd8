"""The Chinchilla loss surface and its compute-optimal allocation (docs/laws.md §4).

Law (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv 2203.15556,
§3.3, eq. 2; the fit form of Besiroglu et al. 2024, "Chinchilla Scaling: A replication
attempt", arXiv 2404.10102):

    L(N, D) = E + A/N^α + B/D^β,   fitted as   log L̂ = LSE(a − α log N, b − β log D, e)

with A = e^a, B = e^b, E = e^e. Compute-optimal allocation for a budget C = k·N·D (k = 6 under
the 6ND convention; Hoffmann eq. 4):

    N* = G·(C/k)^(β/(α+β)),   D* = (C/k)/N*,   G = (αA/(βB))^(1/(α+β))

so Hoffmann's approach-2 exponents a, b are β/(α+β) and α/(α+β) here (n_exponent, d_exponent).
The FLOPs convention is an explicit choice (COMPUTE): Porian et al. 2024, "Resolving
Discrepancies in Compute-Optimal Scaling of Language Models" (arXiv 2406.19146), show that it
moves the fitted exponent.
"""

from __future__ import annotations

import numpy as np

from scalelaws.core.fitting import Law, Param

HOFFMANN = "Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, arXiv 2203.15556"
BESIROGLU = "Besiroglu et al. 2024, Chinchilla Scaling: A replication attempt, arXiv 2404.10102"
PORIAN = "Porian et al. 2024, Resolving Discrepancies in Compute-Optimal Scaling, arXiv 2406.19146"

COMPUTE: dict[str, str] = {
    "6ND": "C = 6·N·D (N = the parameter column)",
    "flops_per_token": "C = flops_per_token·D (FLOPs per token from the model shape: 6N + attention)",
    "total": "C = the total-FLOPs column as given",
}

PARAMS = ("E", "A", "B", "alpha", "beta")  # the law, as reported

# Fit coordinates θ = (a, b, e, α, β); bounds are wide (a, b up to 80 allow α·log N ≈ 60).
LAW_PARAMS = (
    Param("a", -10.0, 80.0, 6.0, log=False),
    Param("b", -10.0, 80.0, 6.0, log=False),
    Param("e", -10.0, 5.0, 0.5, log=False),
    Param("alpha", 0.0, 3.0, 0.3, log=False),
    Param("beta", 0.0, 3.0, 0.3, log=False),
)


def terms(theta: np.ndarray, x: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
    """The three terms A/N^α, B/D^β, E at x = (ln N, ln D)."""
    a, b, e, alpha, beta = theta
    ln_n, ln_d = x
    return np.exp(a - alpha * ln_n), np.exp(b - beta * ln_d), np.full_like(ln_n, np.exp(e))


def _jacobian(theta: np.ndarray, x: tuple[np.ndarray, np.ndarray]):
    tn, td, te = terms(theta, x)
    jac = np.column_stack([tn, td, te, -x[0] * tn, -x[1] * td])
    return tn + td + te, jac


LAW = Law(
    name="chinchilla",
    params=LAW_PARAMS,
    predict=lambda theta, x: sum(terms(theta, x)),
    jacobian=_jacobian,
    reference=f"{HOFFMANN} §3.3; {BESIROGLU}",
)


def reported(theta: np.ndarray) -> dict[str, float]:
    """The law's parameters as reported (E, A, B, alpha, beta) and the allocation's
    n_exponent = β/(α+β), d_exponent = α/(α+β), G, from fit coordinates θ."""
    a, b, e, alpha, beta = (float(v) for v in theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_g = (np.log(alpha) + a - np.log(beta) - b) / (alpha + beta)
        return {
            "E": float(np.exp(e)),
            "A": float(np.exp(a)),
            "B": float(np.exp(b)),
            "alpha": alpha,
            "beta": beta,
            "n_exponent": beta / (alpha + beta),
            "d_exponent": alpha / (alpha + beta),
            "G": float(np.exp(log_g)),
        }


def optimal(theta: np.ndarray, flops: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form N*, D* for C = k·N·D. θ: (..., 5) -> arrays broadcast over θ's leading axes
    and `flops`."""
    theta = np.asarray(theta, float)
    a, b, _, alpha, beta = (theta[..., i, None] for i in range(5))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_g = (np.log(alpha) + a - np.log(beta) - b) / (alpha + beta)
        log_c = np.log(np.asarray(flops, float) / k)
        log_n = log_g + beta / (alpha + beta) * log_c
        return np.exp(log_n), np.exp(log_c - log_n)
