"""Closed loop for the multi-power law (Luo et al., ICLR 2025, arXiv 2503.12811).

1. Train one small model on the PCFG language with the fitting schedules (constant, cosine,
   one step drop) and held-out ones (WSD linear, WSD exponential, a 1.5x longer cosine).
2. Fit the MPL on the first group; report its prediction accuracy on the second.
3. Propose the schedule that minimises the predicted final loss for the same budget.
4. Run the proposal next to cosine and the best WSD with 3 seeds each; compare the measured
   final loss (mean +- std over seeds) with the prediction. Written to report.md.

    scalelab run experiments/schedules.py      # about 10 minutes on 2 idle cores
"""

from __future__ import annotations

from pathlib import Path

from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec

STEPS = 1000
WARMUP = 50
PEAK = 3e-3
FLOOR = PEAK / 10
SEEDS = [0, 1, 2]

FIT = [
    ScheduleSpec("constant", WARMUP),
    ScheduleSpec("cosine", WARMUP, {"final_lr": FLOOR}),
    ScheduleSpec("wsdcon", WARMUP, {"drop_step": 700, "value": FLOOR}),
]
HELD_OUT = [
    ScheduleSpec("wsd", WARMUP, {"decay_frac": 0.2, "shape": "linear", "final_lr": FLOOR}),
    ScheduleSpec("wsd", WARMUP, {"decay_frac": 0.2, "shape": "exp", "final_lr": FLOOR}),
]

BASE = TrialSpec(
    model=ModelSpec("150K"),
    optim=OptimSpec(lr=PEAK),
    data=DataSpec("pcfg"),
    batch_size=16,  # sequences per step
    seq_len=64,  # 1,024 tokens per step
    total_steps=STEPS,
    eval_batch_size=128,
)
RUN = RunConfig(eval_every=10, noise_every=0)

SPEC = SweepSpec(
    name="schedules",
    base=BASE,
    run=RUN,
    points=[{"schedule": s} for s in FIT + HELD_OUT]
    + [{"schedule": ScheduleSpec("cosine", WARMUP, {"final_lr": FLOOR}), "total_steps": 1500}],
)


def validation_spec(proposal, root: Path) -> SweepSpec:
    """The proposal next to cosine and the best WSD, 3 seeds each, same budget."""
    base = proposal.baselines
    schedules = [
        ScheduleSpec("array", WARMUP, {"values": proposal.lr.tolist()}),  # in the spec: hashed
        ScheduleSpec("cosine", WARMUP, base["cosine"]["params"]),
        ScheduleSpec("wsd", WARMUP, base["wsd"]["params"]),  # registry terms: decay_steps, ...
    ]
    return SweepSpec(
        name="schedules_validate",
        base=BASE,
        run=RUN,
        grid={"schedule": schedules, "seed": SEEDS},
        storage=str(root.parent / "schedules_validate"),
    )


# the MPL fit: runs.parquet filters (Polars SQL)
WHERE = f"total_steps = {STEPS} AND schedule IN ('constant', 'cosine', 'wsdcon')"
TEST_WHERE = f"schedule = 'wsd' OR total_steps = {int(1.5 * STEPS)}"


def fit_and_propose(root: Path):
    """MPL fit on the FIT schedules (held-out: the WSDs and the longer cosine), then the proposal
    for the same budget; writes mpl_fit.json/png and proposed_schedule.json/png."""
    import polars as pl

    import scalelaws as sl
    from scalelaws.multipower.fit import collect_curves
    from scalelaws.multipower.plots import plot_curves, plot_proposal

    study = sl.load_study(root)
    done = study.runs.filter(pl.col("status") == "completed")
    fit_runs = done.filter(pl.sql_expr(WHERE))["trial"].to_list()
    test_runs = done.filter(pl.sql_expr(TEST_WHERE))["trial"].to_list()
    curves = collect_curves(
        study.curves.filter(pl.col("trial").is_in(fit_runs)),
        study.curves.filter(pl.col("trial").is_in(test_runs)),
        study=study,
    )
    fit = sl.fit_multipower(curves)
    fit.to_json(root / "mpl_fit.json")
    plot_curves(curves, fit.params, root / "mpl_fit.png", law=fit.law, fit=fit)
    prop = sl.propose_schedule(root / "mpl_fit.json", STEPS, PEAK, warmup_steps=WARMUP, floor=FLOOR)
    prop.to_json(root / "proposed_schedule.json")
    plot_proposal(prop, root / "proposed_schedule.png")
    return fit, prop


def after(root: Path) -> None:
    import polars as pl

    from scalelab import launch
    from scalelaws.io import write_text

    fit, proposal = fit_and_propose(root)
    check = launch.run(validation_spec(proposal, root), wandb_mode=None)

    predicted = {
        "array": proposal.predicted_final_loss,
        "cosine": proposal.baselines["cosine"]["predicted_final_loss"],
        "wsd": proposal.baselines["wsd"]["predicted_final_loss"],
    }
    runs = pl.read_parquet(check / "runs.parquet").filter(pl.col("status") == "completed")
    table = (
        runs.group_by("schedule")
        .agg(
            pl.col("final_eval_loss").mean().alias("measured"),
            pl.col("final_eval_loss").std().alias("std"),
            pl.len().alias("seeds"),
        )
        .with_columns(predicted=pl.col("schedule").replace_strict(predicted, default=None))
        .sort("measured")
    )
    lines = [
        f"MPL fitted on {WHERE}; tested on {TEST_WHERE}.",
        "",
        "| curves | R² | MAE | PredE | WorstE |",
        "|---|---|---|---|---|",
    ]
    for role in ("fit", "test"):
        m = fit.metrics[role]
        lines.append(
            f"| {role} | {m['r2']:.4f} | {m['mae']:.4f} | {m['pred_e']:.4f} | {m['worst_e']:.4f} |"
        )
    names = {"array": "proposed (MPL-optimal)", "cosine": "cosine", "wsd": "best WSD"}
    lines += [
        "",
        f"Final eval loss after {STEPS} steps, {len(SEEDS)} seeds each:",
        "",
        "| schedule | predicted | measured (mean ± std) |",
        "|---|---|---|",
    ]
    for r in table.iter_rows(named=True):
        lines.append(
            f"| {names.get(r['schedule'], r['schedule'])} | {r['predicted']:.4f} | "
            f"{r['measured']:.4f} ± {r['std'] or 0:.4f} (n={r['seeds']}) |"
        )
    report = "\n".join(lines) + "\n"
    write_text(root / "report.md", report)
    print(report)


if __name__ == "__main__":
    from scalelab.cli import run_file

    run_file(__file__)
