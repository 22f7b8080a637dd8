"""Real text: the quickstart's multi-power-law loop, and a critical-batch-size measurement, on
the Python standard library's own source (DataSpec("python_stdlib"), docs/data.md).

Two presets, one corpus:

- `mpl` (the default, study `realtext`): three GPTs (50K, 150K, 500K non-embedding
  parameters) x the quickstart's four LR schedules: constant, cosine, one step drop (wsdcon)
  and WSD. As in the quickstart, the multi-power law (Luo et al., ICLR 2025) is fitted on the
  constant, cosine and wsdcon curves of one size (150K, the quickstart's fitted size) and
  tested on the held-out WSD; then a schedule is proposed for the same budget. The other two
  sizes are fitted the same way for the report. 7.5-8.3 min on 2 shared cores (2026-12-06).
- `cbs` (study `realtext_cbs`): Zhang et al.'s steps-to-target critical batch size (ICLR 2025)
  at one size (150K): experiments/critical_batch.py's design and analysis, with its batch
  sizes (4-128 sequences) and LR ladder plus one rung above it, on this corpus, with D =
  160K-640K tokens (four data sizes, from one set of 24 runs; the synthetic study's largest D
  halved). About 20 min on 2 shared cores (18 runs took 14-18 min; 6 more, 5.8 min).

Data. The BPE vocabulary is 1,024 tokens, not the source's default 4,096. With tied
embeddings the embedding is V·d parameters and the output layer V·d multiply-adds per token:
at 4,096 tokens it is 1.8x the 150K model's non-embedding parameters and trains 1.5-2x
slower on a CPU (measured on 2 shared cores: 13-14K against 20-28K tokens/s). At 1,024 it is
0.44x. Bytes (257 tokens) are faster per token (35K/s), but a BPE-1,024 token is 2.7
characters, so BPE-1,024 trains on about twice as much text per second, and the loss stays a
per-token loss on a real vocabulary. The held-out eval data are the source's eval split: 2%
of the stdlib files, whole.

    scalelab run experiments/realtext.py --no-wandb                # MPL loop
    scalelab run experiments/realtext.py --no-wandb --preset cbs   # CBS measurement

`after(root)`: for `realtext` the fits (mpl_fit.json/png: 150K; mpl_fit_<size>.json: the
others), the proposal (proposed_schedule.json/png) and report.md, which compares the fit's
quality with the synthetic quickstart's (results/quickstart beside this study if it was run,
else the committed fixture tests/data/study_quickstart; the report names which). For
`realtext_cbs`: experiments/critical_batch.py's analysis (CBS.json, CBS_raw.json, CBS.md,
cbs.png, cbs_study.png) and report.md.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from scalelab.config import DataSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.study import load
from scalelab.sweep import SweepSpec

HERE = Path(__file__).resolve().parent
critical_batch = load(HERE / "critical_batch.py")  # its Design, sweep() and analyse()

VOCAB = 1024  # BPE tokens (see the docstring)
DATA = DataSpec("python_stdlib", params={"vocab_size": VOCAB})

# ---------------------------------------------------------------- the MPL loop (preset mpl)

STEPS = 1000
WARMUP = 50
PEAK = 3e-3
FLOOR = PEAK / 10
SIZES = ["50K", "150K", "500K"]
FIT_SIZE = "150K"  # the size the MPL is fitted on and the proposal made for (as the quickstart)
FIT_SCHEDULES = ("constant", "cosine", "wsdcon")
TEST_SCHEDULE = "wsd"

SCHEDULES = [
    ScheduleSpec("constant", WARMUP),
    ScheduleSpec("cosine", WARMUP, {"final_lr": FLOOR}),
    ScheduleSpec("wsdcon", WARMUP, {"drop_step": 700, "value": FLOOR}),
    ScheduleSpec("wsd", WARMUP, {"decay_frac": 0.2, "shape": "linear", "final_lr": FLOOR}),
]

MPL = SweepSpec(
    name="realtext",
    base=TrialSpec(  # the model and the schedule come from the grid
        optim=OptimSpec(lr=PEAK),
        data=DATA,
        batch_size=16,  # sequences per step
        seq_len=64,  # tokens per sequence -> 1,024 tokens per step, 1.02M per run
        total_steps=STEPS,
        eval_batch_size=128,  # 8,192 held-out tokens, the same windows at every eval
    ),
    run=RunConfig(eval_every=20, noise_every=0),  # placement and cadence: not in the hash
    grid={"model.size": SIZES, "schedule": SCHEDULES},
)

# ---------------------------------------------------------------- the CBS measurement (preset cbs)

CBS = replace(
    critical_batch.QUICK,
    name="realtext_cbs",
    sizes=("150K",),
    # 625, 1250, 1875, 2500 steps at B_ref = 4; four, the fewest a CBS-vs-D fit takes (the runs'
    # budgets follow the largest alone, so a D added here costs no training)
    data_sizes=(160_000, 320_000, 480_000, 640_000),
    eval_every_ref=25,  # an eval lands on each D at B_ref
    # the synthetic study's LR centre and one rung more above it: with three rungs the best LR
    # at B = 4-32 sat on the grid's top edge on this corpus (LR_AT_EDGE; docs/realtext.md)
    base_lr={"150K": 3e-3},
    lr_steps=(-1, 0, 1, 2),
    base=replace(critical_batch.QUICK.base, data=DATA),
)

PRESETS = {"mpl": MPL, "cbs": critical_batch.sweep(CBS)}
SPEC = MPL


def after(root: Path) -> None:
    from scalelab import files

    root = Path(root)
    name = files.read_json(root / "study.json")["name"]
    if name == CBS.name:
        res = critical_batch.analyse(root, CBS)
        print(write_cbs_report(root, res))
    else:
        print(mpl_after(root))


# ---------------------------------------------------------------- MPL analysis


def fit_one_size(study, size: str, n_boot: int = 30):
    """The MPL fitted on one size's constant, cosine and wsdcon curves, WSD held out."""
    import polars as pl

    import scalelaws as sl
    from scalelaws.multipower.fit import collect_curves

    done = study.runs.filter((pl.col("status") == "completed") & (pl.col("model") == size))
    fit_runs = done.filter(pl.col("schedule").is_in(FIT_SCHEDULES))["trial"].to_list()
    test_runs = done.filter(pl.col("schedule") == TEST_SCHEDULE)["trial"].to_list()
    curves = collect_curves(
        study.curves.filter(pl.col("trial").is_in(fit_runs)),
        study.curves.filter(pl.col("trial").is_in(test_runs)),
        study=study,
    )
    return curves, sl.fit_multipower(curves, n_boot=n_boot)


def mpl_after(root: Path, spec: SweepSpec = MPL, fit_size: str = FIT_SIZE) -> str:
    """Fits (every size of `spec`), the proposal (`fit_size`) and report.md; returns the
    report. `spec`: MPL, or a smaller loop of the same shape (a grid of model.size x the four
    schedules; the tests run one)."""
    import scalelaws as sl
    from scalelaws.multipower.plots import plot_curves, plot_proposal

    study = sl.load_study(root)
    fits = {}
    for size in spec.grid["model.size"]:
        curves, fit = fit_one_size(study, size)
        fits[size] = fit
        if size == fit_size:
            fit.to_json(root / "mpl_fit.json")
            plot_curves(curves, fit.params, root / "mpl_fit.png", law=fit.law, fit=fit)
        else:
            fit.to_json(root / f"mpl_fit_{size}.json")
    steps, peak = spec.base.total_steps, spec.base.optim.lr
    warmup = spec.grid["schedule"][0].warmup_steps
    prop = sl.propose_schedule(
        root / "mpl_fit.json", steps, peak, warmup_steps=warmup, floor=peak * FLOOR / PEAK
    )
    prop.to_json(root / "proposed_schedule.json")
    plot_proposal(prop, root / "proposed_schedule.png")
    return write_mpl_report(root, study, fits, prop, spec, fit_size)


def synthetic_quickstart(root: Path) -> tuple[Path, str] | None:
    """The synthetic quickstart's MPL fit to compare with: results/quickstart beside this study
    if it has run, else the committed fixture (a toy-size quickstart)."""
    own = root.parent / "quickstart" / "mpl_fit.json"
    if own.is_file():
        return own, "the quickstart study run beside this one (150K model, 600 steps)"
    fixture = HERE.parent / "tests" / "data" / "study_quickstart" / "mpl_fit.json"
    if fixture.is_file():
        return fixture, (
            "the committed fixture tests/data/study_quickstart (the quickstart grid at toy size: "
            "14K model, 200 steps of 8x32 tokens; results/quickstart was not there)"
        )
    return None


def _metrics_row(label: str, fit) -> str:
    f, t = fit.metrics["fit"], fit.metrics.get("test", {})
    test = (  # no WSD curve: no test
        f"{t['r2']:.4f} | {t['mae']:.4f} | {t['pred_e']:.4f} | {t['worst_e']:.4f}"
        if t
        else "— | — | — | —"
    )
    return f"| {label} | {f['r2']:.4f} | {f['mae']:.4f} | {f['pred_e']:.4f} | {test} |"


def final_predictions(fit, size: str, runs, spec: SweepSpec) -> list[str]:
    """Predicted against measured final eval loss of each schedule at `size` (the fit's law on
    the trial's exact per-update LR)."""
    import polars as pl

    from scalelab.sweep import expand

    lines = []
    for t in expand(spec):
        if t.spec.model.size != size:
            continue
        row = runs.filter(pl.col("trial") == t.name)["final_eval_loss"]
        measured = f"{row[0]:.4f}" if len(row) else "—"
        role = "held out" if t.spec.schedule.name == TEST_SCHEDULE else "fitted"
        predicted = float(fit.predict(t.spec.lr_array())[-1])
        lines.append(f"| {t.spec.schedule.name} ({role}) | {predicted:.4f} | {measured} |")
    return lines


def write_mpl_report(root: Path, study, fits: dict, prop, spec: SweepSpec, fit_size: str) -> str:
    import polars as pl

    import scalelaws as sl
    from scalelab import files
    from scalelab.data.stdlib import ensure_prepared
    from scalelaws.io import write_text
    from scalelaws.multipower.fit import MultipowerFit

    manifest = files.read_json(ensure_prepared(_source_params()) / "manifest.json")
    runs = study.runs.filter(pl.col("status") == "completed")
    tps, steps = spec.base.tokens_per_step, spec.base.total_steps
    sizes, schedules = spec.grid["model.size"], spec.grid["schedule"]
    try:
        trained = files.read_json(root / "prefix.json")["trained_steps"]
    except (OSError, KeyError, ValueError):
        trained = int(runs["steps_done"].sum())
    corpus = manifest["corpus"]
    lines = [
        "# Real text: the multi-power-law loop on the Python standard library",
        "",
        f"Corpus: python_stdlib, Python {corpus['python']}, {corpus['files']} files; "
        f"BPE {manifest['vocab_size']:,} tokens; {manifest['train']['tokens']:,} train tokens, "
        f"{manifest['eval']['tokens']:,} held-out tokens ({manifest['eval']['documents']} files). "
        f"Prepared in {manifest['timing']['total_s']:.1f} s "
        f"({manifest['timing']['mb_per_s']:.2f} MB/s on {manifest['timing']['input_mb']:.1f} MB).",
        "",
        f"{len(runs)} of {len(study.runs)} trials completed: {len(sizes)} sizes x "
        f"{len(schedules)} schedules, {steps} steps of {tps:,} tokens; "
        f"{trained:,} steps trained ({trained * tps:,} tokens) with shared prefixes.",
        "",
        "Final eval loss (nats per token):",
        "",
        "| model | " + " | ".join(s.name for s in schedules) + " |",
        "|---|" + "---|" * len(schedules),
    ]
    for size in sizes:
        row = runs.filter(pl.col("model") == size)
        cells = []
        for s in schedules:
            v = row.filter(pl.col("schedule") == s.name)["final_eval_loss"]
            cells.append(f"{v[0]:.4f}" if len(v) else "—")
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"MPL fitted on {', '.join(FIT_SCHEDULES)}; tested on the held-out {TEST_SCHEDULE} "
        "(post-warmup eval points, exact per-step LR):",
        "",
        "| fit | fit R² | fit MAE | fit PredE | test R² | test MAE | test PredE | test WorstE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        mark = " (fitted, proposal)" if size == fit_size else ""
        lines.append(_metrics_row(f"real text, {size}{mark}", fits[size]))
    synth = synthetic_quickstart(root)
    synth_fit = MultipowerFit.load(synth[0]) if synth else None
    if synth:
        lines.append(_metrics_row("synthetic quickstart (PCFG)", synth_fit))
        lines += ["", f"Synthetic numbers from {synth[1]}: {synth[0]}."]
    else:
        lines += ["", "No synthetic quickstart fit found to compare with."]
    lines += [
        "",
        "R² is relative to the curves' own spread: after warmup the eval loss of the fitted and held-out "
        f"curves spans {_span(study.curves, fits[fit_size])} here"
        + (
            f" and {_span(sl.load_study(synth[0].parent).curves, synth_fit)} in the synthetic one"
            if synth
            else ""
        )
        + ", so read MAE and PredE (mean relative error) too.",
        "",
        f"Diagnostics of the {fit_size} fit: "
        + (", ".join(sorted({d.code for d in fits[fit_size].diagnostics})) or "none")
        + " (mpl_fit.json).",
        "",
        f"Final eval loss at {fit_size}, the law against the run:",
        "",
        "| schedule | predicted | measured |",
        "|---|---|---|",
        *final_predictions(fits[fit_size], fit_size, runs, spec),
    ]
    base = prop.baselines
    lines += [
        "",
        f"Proposal for {prop.total_steps} steps at peak {prop.peak_lr:g} (floor "
        f"{base['cosine']['floor']:g}), {fit_size} model: "
        f"predicted final loss {prop.predicted_final_loss:.4f}{_interval(prop, 'proposed')}; cosine "
        f"{base['cosine']['predicted_final_loss']:.4f}, best WSD "
        f"{base['wsd']['predicted_final_loss']:.4f} ({base['wsd']['params']}).",
    ]
    report = "\n".join(lines) + "\n"
    write_text(root / "report.md", report)
    return report


def _interval(prop, key: str) -> str:
    iv = (prop.intervals or {}).get(key)
    return f" (bootstrap interval [{iv[0]:.4f}, {iv[1]:.4f}])" if iv else ""


def _span(curves, fit) -> str:
    """'5.37 to 3.13 nats': the eval loss of a fit's curves once the LR has reached its peak."""
    import polars as pl

    trials = [c["name"] for c in fit.curves]
    peaked = pl.col("step") >= pl.col("step").filter(pl.col("lr") == pl.col("lr").max()).min()
    rows = curves.filter(pl.col("trial").is_in(trials) & pl.col("eval_loss").is_not_null())
    rows = rows.filter(peaked.over("trial"))["eval_loss"]
    return f"{rows.max():.2f} to {rows.min():.2f} nats"


def _source_params() -> dict:
    """DATA's params as the source validates them (defaults filled in)."""
    from scalelab.data.stdlib import PythonStdlibSource

    return {k: DATA.params.get(k, p.default) for k, p in PythonStdlibSource.PARAMS.items()}


# ---------------------------------------------------------------- CBS report


def write_cbs_report(root: Path, res) -> str:
    """report.md: the real-text CBS per D, and the synthetic study's beside it when
    results/critical_batch/CBS.json exists next to this study."""
    from scalelaws.critical_batch.fit import CBSResult
    from scalelaws.io import write_text

    lines = [
        f"# Real text: critical batch size on the Python standard library ({', '.join(CBS.sizes)})",
        "",
        "Zhang et al.'s steps-to-target CBS (experiments/critical_batch.py's analysis), EWA "
        "eval loss, 95% bootstrap intervals; batch sizes in sequences of "
        f"{CBS.seq_len} tokens. Tables in CBS.md.",
        "",
        "| data | group | target | CBS (20%) | B_crit | S_min | E_min |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += _cbs_rows("real text", res)
    synth = root.parent / "critical_batch" / "CBS.json"
    if synth.is_file():
        lines += _cbs_rows("synthetic (PCFG)", CBSResult.load(synth))
        lines += ["", f"Synthetic rows from {synth}."]
    else:
        lines += [
            "",
            f"No {synth} beside this study: the synthetic study's measured rows are in "
            "docs/critical_batch.md (run experiments/critical_batch.py to have them here).",
        ]
    lines += ["", *[f"- {d.line()}" for d in res.diagnostics]]
    report = "\n".join(lines) + "\n"
    write_text(root / "report.md", report)
    return report


def _cbs_rows(label: str, res) -> list[str]:
    def cell(g, key: str, fmt: str) -> str:
        lo, hi = getattr(g, f"{key}_interval")
        return f"{getattr(g, key):{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"

    rows = []
    for g in res.groups:
        target = "—" if g.target is None else f"{g.target:.4f}"
        rows.append(
            f"| {label} | {g.group} | {target} | {cell(g, 'cbs', '.1f')} "
            f"| {cell(g, 'b_crit', '.0f')} | {cell(g, 's_min', '.0f')} | {cell(g, 'e_min', '.0f')} |"
        )
    return rows


if __name__ == "__main__":
    from scalelab.cli import run_file

    run_file(__file__)
