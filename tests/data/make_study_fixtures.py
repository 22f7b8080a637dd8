"""Rebuild the small study fixtures of the notebooks, the report and the W&B tests
(tests/data/README_studies.md says what each one is).

    .venv/bin/python tests/data/make_study_fixtures.py      # about 1 minute on 2 cores
    .venv/bin/python tests/data/make_study_fixtures.py hparams   # one of them

study_quickstart (+ _validate) are real trials trained by scalelab (no Ray: train() one after
another, then results.collect); study_cbs, study_capacity and study_hparams are synthetic
tables in the documented schema whose losses obey the laws exactly (study_hparams: up to
seeded noise) (the builders of the analysis tests).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: analysis_data

from analysis_data import capacity_runs  # noqa: E402

import scalelaws as sl  # noqa: E402
from scalelab import launch, results  # noqa: E402
from scalelab.config import (  # noqa: E402
    DataSpec,
    ModelSpec,
    OptimSpec,
    RunConfig,
    ScheduleSpec,
    TrialSpec,
)
from scalelab.sweep import SweepSpec, expand  # noqa: E402
from scalelab.train import train  # noqa: E402

STEPS, WARMUP, PEAK = 200, 10, 3e-3
KEEP = ("runs.parquet", "curves.parquet", "study.json")
BASE = TrialSpec(
    optim=OptimSpec(lr=PEAK),
    data=DataSpec("pcfg"),
    batch_size=8,
    seq_len=32,
    total_steps=STEPS,
    eval_batch_size=32,
)
RUN = RunConfig(eval_every=5, log_every=5, noise_every=10)
SCHEDULES = [
    ScheduleSpec("constant", WARMUP),
    ScheduleSpec("cosine", WARMUP, {"final_lr": PEAK / 10}),
    ScheduleSpec("wsdcon", WARMUP, {"drop_step": 140, "value": PEAK / 10}),
    ScheduleSpec("wsd", WARMUP, {"decay_frac": 0.2, "shape": "linear", "final_lr": PEAK / 10}),
]


def run_study(spec: SweepSpec, root: Path) -> Path:
    """Train every trial in this process, collect, keep only the tables."""
    shutil.rmtree(root, ignore_errors=True)
    trials = expand(spec)
    root.mkdir(parents=True)
    launch.write_study_json(root, spec, trials)
    for t in trials:
        train(t, launch.trial_dir(root, t))
    results.collect(root)
    for p in root.iterdir():
        if p.name not in KEEP:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return root


def quickstart() -> None:
    """2 sizes x 4 schedules, then the quickstart's after(): MPL fit on the 14K model's
    constant/cosine/wsdcon (WSD held out) and the proposal; then the closed loop: the proposal,
    cosine and the best WSD, 2 seeds each (study_quickstart_validate)."""
    root = HERE / "study_quickstart"
    spec = SweepSpec(
        "study_quickstart", BASE, run=RUN, grid={"model.size": ["6K", "14K"], "schedule": SCHEDULES}
    )
    run_study(spec, root)
    study = sl.load_study(root)
    big = study.curves.filter(pl.col("grid.model.size") == "14K")
    fitted = big.filter(pl.col("grid.schedule.name").is_in(["constant", "cosine", "wsdcon"]))
    fit = sl.fit_multipower(
        fitted, test=big.filter(pl.col("grid.schedule.name") == "wsd"), study=study
    )
    fit.to_json(root / "mpl_fit.json")
    prop = sl.propose_schedule(fit, STEPS, PEAK, warmup_steps=WARMUP)
    prop.to_json(root / "proposed_schedule.json")
    check = SweepSpec(
        "study_quickstart_validate",
        dataclasses.replace(BASE, model=ModelSpec("14K")),
        run=RUN,
        grid={
            "schedule": [
                ScheduleSpec("array", WARMUP, {"values": prop.lr.tolist()}),
                ScheduleSpec("cosine", WARMUP, prop.baselines["cosine"]["params"]),
                ScheduleSpec("wsd", WARMUP, prop.baselines["wsd"]["params"]),
            ],
            "seed": [0, 1],
        },
    )
    run_study(check, HERE / "study_quickstart_validate")


def cbs() -> None:
    """The critical-batch layout (experiments/critical_batch.py) at 2 sizes x 4 batch sizes x 2
    LRs, constant LR: progress after s steps at batch B is s·B/(1 + B/B_crit) (McCandlish et al.
    2018, eq. 2.11), loss = 0.4 + 2·(1 + p·q/50)^-0.5 (q = 1 at the better LR, 0.6 at the
    other), EWA loss = eval loss, so T(B) to any target obeys S(B) = S_min + E_min/B with
    B_crit = 40 (6K) and 60 (14K) sequences. Bigger batches run longer (as the study's budgets
    do); the per-D tables in cbs/ come from scalelaws.critical_batch.study.cbs_tables; CBS.json is
    fit_cbs on them (EWA loss)."""
    from scalelaws.critical_batch.study import cbs_tables

    root = HERE / "study_cbs"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    b_crit, lrs, seq, ref, d_max = {"6K": 40.0, "14K": 60.0}, (1e-2, 3e-3), 64, 4, 1_024_000
    points = [
        {"model.size": n, "batch_size": b, "optim.lr": lr, "total_steps": _steps(b, ref, d_max)}
        for n in b_crit
        for b in (ref, 16, 64, 256)
        for lr in lrs
    ]
    base = TrialSpec(optim=OptimSpec(lr=3e-3), schedule=ScheduleSpec("constant", 5), seq_len=seq)
    spec = SweepSpec("study_cbs", base, run=RunConfig(eval_every=1), points=points)
    runs, curves = [], []
    for t in expand(spec):
        s_, b = t.spec, t.spec.batch_size
        steps = np.unique(np.linspace(s_.total_steps / 80, s_.total_steps, 80).astype(int))
        q = 1.0 if s_.optim.lr == lrs[0] else 0.6
        loss = 0.4 + 2 * (1 + steps * b / (1 + b / b_crit[s_.model.size]) * q / 50) ** -0.5
        runs.append(_run_row(t, float(loss[-1])))
        curves.append(
            pl.DataFrame(
                {
                    "trial": t.name,
                    "step": steps,
                    "tokens": steps * b * seq,
                    "lr": s_.optim.lr,
                    "train_loss": loss,
                    "eval_loss": loss,
                    "ewa_eval_loss": loss,
                    "noise_scale": np.full(steps.size, b_crit[s_.model.size] + b),
                }
            )
        )
    runs, curves = pl.DataFrame(runs), pl.concat(curves)
    runs.write_parquet(root / "runs.parquet")
    curves.write_parquet(root / "curves.parquet")
    launch.write_study_json(root, spec, expand(spec))
    per_d = cbs_tables(runs, curves, (d_max // 4, d_max // 2, d_max), ref, seq)
    (root / "cbs").mkdir()
    per_d[0].write_parquet(root / "cbs" / "runs.parquet")
    per_d[1].write_parquet(root / "cbs" / "curves.parquet")
    res = sl.fit_cbs(study=root / "cbs", loss="ewa_eval_loss", noise_batch=64)
    res.to_json(root / "CBS.json")


def _steps(b: int, ref: int, d_max: int, knee: float = 48.0, margin: float = 1.3) -> int:
    """The CBS study's budgets: D_max at B_ref, more tokens past the knee."""
    if b == ref:
        return d_max // (ref * 64)
    return int(d_max * margin * (1 + b / knee) / (1 + ref / knee) / (b * 64))


def _run_row(t, final: float | None, status: str = "completed") -> dict:
    """A runs row of a trial that reached `final` (spec, grid columns and all)."""
    from scalelab.model import model_args, param_counts

    s_ = t.spec
    n = param_counts(model_args(s_.model.size, 6, s_.seq_len))
    rec = {
        "name": t.name,
        "study": s_.study,
        "status": status,
        "content_hash": t.content_hash(),
        "spec": s_.to_dict(),
        "run": t.run.to_dict(),
        "grid": s_.grid,
        "params": n,
        "steps_done": s_.total_steps,
        "tokens_seen": s_.total_steps * s_.batch_size * s_.seq_len,
        "final_eval_loss": final,
        "best_eval_loss": final,
        "final_train_loss": final,
    }
    return results.run_row(rec)


# study_hparams: the known optimum path (docs/hparams.md; tests/test_hparams_surfaces.py)
HP_LR = (0.015, -0.3, 0.1)  # lr* = 0.015·N^-0.3·D^0.1
HP_B = (1.0, 0.0, 0.5)  # B* = 1.0·D^0.5 tokens per optimizer step
HP_CURV = (0.05, 0.03)  # nats per (ln lr)² and per (ln B)²
HP_BCRIT = 0.05  # CBS.json: B_crit = 0.05·D^0.5 sequences, any N


def hparams() -> None:
    """A peak LR x batch sweep at 3 sizes x 3 token budgets: final loss = 1.5 + 30/N^0.3 +
    20/D^0.2 + 0.05·ln(lr/lr*)² + 0.03·ln(B/B*)² + 0.002 nats of seeded noise, with lr*, B* on
    the known path above (N non-embedding, B = batch_size·seq_len tokens); the run at the top LR
    and smallest batch of (25K, 2^17) diverged. hparams.json is `scalelab fit hparams --runs`
    on it; CBS.json is fit_cbs on a steps-to-target table at the same (N, D) cells (S(B) =
    S_min + E_min/B exactly, B_crit = 0.05·D^0.5 sequences): not measured from these runs, it
    is there so the report shows B* beside the CBS."""
    from scalelab.cli import main

    root = HERE / "study_hparams"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    seq, sizes, budgets = 32, ("6K", "14K", "25K"), (2**17, 2**18, 2**19)
    points = [
        {"model.size": n, "tokens": d, "optim.lr": lr, "batch_size": b}
        for n in sizes
        for d in budgets
        for b in (8, 16, 32)
        for lr in (1e-3, 2e-3, 4e-3, 8e-3)
    ]
    base = TrialSpec(optim=OptimSpec(lr=3e-3), schedule=ScheduleSpec("cosine", 10), seq_len=seq)
    spec = SweepSpec("study_hparams", base, run=RunConfig(eval_every=50), points=points)
    rng = np.random.default_rng(0)
    runs, curves = [], []
    for t in expand(spec):
        s_ = t.spec
        row = _run_row(t, 0.0)
        n, d, lr, b = row["params"], row["tokens"], s_.optim.lr, s_.batch_size * seq
        lr_opt = HP_LR[0] * n ** HP_LR[1] * d ** HP_LR[2]
        b_opt = HP_B[0] * n ** HP_B[1] * d ** HP_B[2]
        final = 1.5 + 30 / n**0.3 + 20 / d**0.2 + HP_CURV[0] * np.log(lr / lr_opt) ** 2
        final += HP_CURV[1] * np.log(b / b_opt) ** 2 + 0.002 * rng.standard_normal()
        diverged = s_.model.size == "25K" and d == budgets[0] and lr == 8e-3 and b == 8 * seq
        if diverged:
            row = _run_row(t, None, status="diverged")
        else:
            row = _run_row(t, float(final))
        runs.append(row)
        steps = np.linspace(s_.total_steps / 4, s_.total_steps, 4).astype(int)
        loss = list(final + 2.0 * (1 - steps / s_.total_steps))
        evals = list(loss)
        if diverged:  # as the trainer logs it: the last row's train loss is not finite
            steps, loss, evals = steps[:3], loss[:2] + [float("nan")], evals[:2] + [None]
        curves.append(
            pl.DataFrame(
                {
                    "trial": t.name,
                    "step": steps,
                    "tokens": steps * b,
                    "lr": lr,
                    "train_loss": loss,
                    "eval_loss": evals,
                },
                schema_overrides={"eval_loss": pl.Float64},
            )
        )
    pl.DataFrame(runs).write_parquet(root / "runs.parquet")
    pl.concat(curves).write_parquet(root / "curves.parquet")
    launch.write_study_json(root, spec, expand(spec))
    try:
        main(["fit", "hparams", "--runs", str(root), "--no-plot"])
    except SystemExit as e:
        assert e.code == 0, e.code
    steps = []
    cells = pl.DataFrame(runs).select("model", "params", "tokens").unique().sort("params", "tokens")
    for model, n, d in cells.iter_rows():
        b_crit, s_min = HP_BCRIT * d**0.5, 200.0
        for b in (2, 4, 8, 16, 32, 64, 128):
            steps.append((f"{model}/D={d:.3g}", n, d, b, s_min + b_crit * s_min / b))
    table = pl.DataFrame(
        steps, schema=["group", "params", "tokens", "batch_size", "steps_to_target"], orient="row"
    )
    sl.fit_cbs(table, ref_batch=2).to_json(root / "CBS.json")


def capacity() -> None:
    """The capacity test builder (tests/analysis_data.py): compact bioD at N = 500 and 1000
    people, 3 sizes, 1000 and 100 exposures; bits = min(2·P, 0.99·max) at 1000 exposures. Its
    curves: 10 rows per trial falling to the trial's value loss."""
    root = HERE / "study_capacity"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    runs = capacity_runs().with_columns(
        study=pl.lit("study_capacity"),
        final_eval_loss=pl.col("knowledge.p2"),
        best_eval_loss=pl.col("knowledge.p2"),
        steps_done=pl.col("tokens") // (128 * 12),
    )
    runs.write_parquet(root / "runs.parquet")
    curves = []
    for r in runs.iter_rows(named=True):
        steps = np.linspace(r["steps_done"] / 10, r["steps_done"], 10).astype(int)
        loss = r["knowledge.p2"] + 3.0 * np.exp(-5 * steps / steps[-1])
        curves.append(
            pl.DataFrame(
                {"trial": r["trial"], "step": steps, "tokens": steps * 128 * 12, "eval_loss": loss}
            )
        )
    pl.concat(curves).write_parquet(root / "curves.parquet")
    (root / "study.json").write_text(json.dumps({"name": "study_capacity"}))
    sl.fit_capacity(root).to_json(root / "capacity.json")


if __name__ == "__main__":
    which = sys.argv[1:] or ["quickstart", "cbs", "capacity", "hparams"]
    for name in which:
        globals()[name]()
        print(f"{name}: done")
