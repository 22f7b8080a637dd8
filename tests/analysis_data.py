"""Study tables written by hand with the documented schema (docs/concepts.md "Results tables"; the grid
columns of the redesign contract), for the analysis tests. Needs only numpy, polars and
scalelaws (no torch, no ray, no scalelab), so a subprocess without torch can use it too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl

from scalelaws import schedules
from scalelaws.multipower import law as mp

# published 400M parameters of the multi-power law (Luo et al. 2025, refdata README)
PARAMS_400M = dict(L0=2.3747, A=0.6542, alpha=0.4288, B=523.42, C=2.0246, beta=0.5935, gamma=0.6347)
PEAK, WARMUP = 1e-3, 100
SCHEDULES = {  # label -> (registry name, params); wsdcon drops at half the run
    "constant": ("constant", {}),
    "cosine": ("cosine", {"final_lr": 1e-4}),
    "wsdcon": ("wsdcon", {"drop_step": None, "value": 3e-4}),
    "wsd": ("wsd", {"decay_frac": 0.3, "shape": "linear", "final_lr": 1e-4}),
}


def spec(name: str, schedule: str, total: int, seed: int = 0) -> dict:
    """The identity spec of a trial, with the nested keys of trial.json."""
    sname, params = SCHEDULES[schedule]
    params = {k: total // 2 if k == "drop_step" else v for k, v in params.items()}
    return {
        "model": {"size": "150K"},
        "optim": {"lr": PEAK},
        "schedule": {"name": sname, "warmup_steps": WARMUP, "params": params},
        "data": {"name": "pcfg", "params": {}},
        "batch_size": 16,
        "seq_len": 64,
        "total_steps": total,
        "seed": seed,
    }


def mpl_study(root: Path, *, grid: bool = True, total: int = 3000, log_every: int = 1) -> Path:
    """Four schedules x 2 seeds whose eval loss is the MPL itself (seed 1: +0.01), an eval every
    25 steps and a train row every `log_every` steps; one failed trial without a curve."""
    root.mkdir(parents=True, exist_ok=True)
    runs, curves = [], []
    for seed in (0, 1):
        for label, (sname, _) in SCHEDULES.items():
            name = f"{label}-s{seed}"
            sp = spec(name, label, total, seed)
            lr = schedules.lr_array(sname, PEAK, total, WARMUP, **sp["schedule"]["params"])
            steps = np.arange(log_every, total + 1, log_every)
            loss = np.full(steps.size, np.nan)  # S1 = lr[0] = 0 after the first update
            loss[steps > 1] = mp.predict(PARAMS_400M, lr, steps[steps > 1]) + 0.01 * seed
            ev = np.where(steps % 25 == 0, loss, np.nan)
            row = {
                "trial": name,
                "study": "mpl",
                "status": "completed",
                "model": "150K",
                "schedule": sname,
                "total_steps": total,
                "seed": seed,
                "spec": json.dumps(sp, sort_keys=True),
            }
            if grid:
                row |= {"grid.schedule": label, "grid.schedule.name": sname, "grid.seed": seed}
            runs.append(row)
            curves.append(
                pl.DataFrame({"trial": name, "step": steps, "tokens": steps * 1024})
                .with_columns(lr=lr[steps - 1], train_loss=loss, eval_loss=ev)
                .with_columns(pl.col("train_loss", "eval_loss").fill_nan(None))
            )
    bad = {"trial": "broken", "study": "mpl", "status": "failed", "model": "150K"}
    runs.append(bad | {"schedule": "cosine", "total_steps": total, "seed": 0, "spec": "{}"})
    pl.DataFrame(runs, infer_schema_length=None).write_parquet(root / "runs.parquet")
    pl.concat(curves).write_parquet(root / "curves.parquet")
    (root / "study.json").write_text(json.dumps({"name": "mpl"}))
    return root


def cbs_table(b_crit: dict[str, float] | None = None) -> pl.DataFrame:
    """Steps to target that obey T(B) = S_min + E_min/B exactly (McCandlish et al. 2018):
    S_min = 2000, B_crit per group; N and D vary independently."""
    b_crit = b_crit or {"a": 300.0, "b": 450.0, "c": 600.0, "d": 900.0}
    sizes = {"a": (1e7, 1e9), "b": (4e7, 1e9), "c": (1e7, 4e9), "d": (4e7, 4e9)}
    rows = []
    for g, bc in b_crit.items():
        n, d = sizes[g]
        for b in 2.0 ** np.arange(5, 13):
            rows.append(
                {
                    "group": g,
                    "params": int(n),
                    "tokens": int(d),
                    "batch_size": int(b),
                    "steps_to_target": 2000 + 2000 * bc / b,
                }
            )
    return pl.DataFrame(rows)


LN2 = math.log(2)
K, C, D, L, T, N0 = 8, 1, 64, 1, 64, 64**3  # compact bioD (docs/laws.md §3)
SIZES = (("6K", 10_400, 6_224), ("14K", 20_100, 13_900), ("25K", 33_000, 24_700))


def biod_max(n: int) -> float:
    return (
        n * math.log2(N0 / n) + n * K * C * math.log2(D) + K * D * (L * math.log2(T) - math.log2(D))
    )


def capacity_runs(grid: bool = True, ratio: float = 2.0) -> pl.DataFrame:
    """Compact-bioD knowledge trials: bits = min(ratio·P, 0.99·max) at 1000 exposures, 0.4·P at
    100; losses p1/p2/p3 solved from the bits; int8 copies lose nothing, int4 lose 0.3 nats per
    value. With `grid`, the requested exposures are in grid.exposures."""
    rows = []
    for n in (500, 1000):
        for e in (1000, 100):
            for size, p_used, p_ne in SIZES:
                bits = min((ratio if e == 1000 else 0.4) * p_used, 0.99 * biod_max(n))
                p1, p3 = math.log(n) + 0.05, 0.02
                rest = bits - n * (math.log2(N0) - p1 / LN2)
                rest -= K * D * (L * math.log2(T) - math.log2(D) - p3 / LN2)
                p2 = (C * math.log2(D) - rest / (n * K)) * LN2
                steps = e * n * 12 // (128 * 12)
                rows.append(
                    {
                        "trial": f"{size}-N{n}-E{e}",
                        "status": "completed",
                        "model": size,
                        "data": "biod",
                        "batch_size": 128,
                        "seq_len": 12,
                        "tokens": steps * 128 * 12,
                        "knowledge.p1": p1,
                        "knowledge.p2": p2,
                        "knowledge.p3": p3,
                        "knowledge.p1_int8": p1,
                        "knowledge.p2_int8": p2,
                        "knowledge.p3_int8": p3,
                        "knowledge.p1_int4": p1,
                        "knowledge.p2_int4": p2 + 0.3,
                        "knowledge.p3_int4": p3,
                        "knowledge.params_used": p_used,
                        "knowledge.params_non_embedding": p_ne,
                        "knowledge.n_people": n,
                        "knowledge.n0": N0,
                        **{f"knowledge.{k}": v for k, v in dict(K=K, C=C, D=D, L=L, T=T).items()},
                        "knowledge.tokens_per_person": 12,
                        "knowledge.tokens_per_epoch": n * 12,
                        **({"grid.exposures": e, "grid.model.size": size} if grid else {}),
                    }
                )
    return pl.DataFrame(rows)
