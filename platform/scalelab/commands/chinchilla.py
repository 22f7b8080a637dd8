"""`scalelab fit chinchilla` and `scalelab propose size`: compute-optimal model size.

    scalelab fit chinchilla TABLE.csv [--approach 2|3|both] [--compute 6ND|flops_per_token|total]
        [--window-dex 0.6] [--keep-unbracketed] [--fix-e E | --e-floor E]
        [--out FIT.json] [--plot FIT.png]
    scalelab fit chinchilla --runs DIR [...]          # a study folder's runs.parquet
    scalelab propose size --fit FIT.json --flops C [--out SIZE.json]

Approach 2 (isoFLOP parabolas) and approach 3 (L(N, D) = E + A/N^α + B/D^β) of Hoffmann et
al. 2022 (arXiv 2203.15556), approach 3 as re-fitted by Besiroglu et al. 2024 (arXiv
2404.10102); the FLOPs convention is an explicit choice (Porian et al. 2024, arXiv
2406.19146). Parse → scalelaws.chinchilla.study (read_runs, fit_chinchilla, load_analysis,
propose_sizes) → print every estimate and every diagnostic → write the ChinchillaAnalysis
JSON (Result.to_json) → plot. Bad input prints one line and exits 2 (scalelab.errors).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from scalelab.commands import fit_app, propose_app
from scalelab.errors import UserError, check_writable

CSV_COLUMNS = {
    "N": "model size in parameters (> 0; say in your notes whether it counts the embedding)",
    "D": "training tokens of the run (> 0)",
    "loss": "final loss of the run (> 0, nats/token)",
    "flops": "optional: total training FLOPs C of the run (> 0); read by --compute total, "
    "and by flops_per_token (as flops/D) when there is no flops_per_token column",
    "flops_per_token": "optional: training FLOPs per token of the run's model (> 0); "
    "C = flops_per_token·D under --compute flops_per_token",
    "budget": "optional: the run's requested FLOP budget; groups the approach-2 isoFLOP slices "
    "(otherwise runs are sliced where log10 C jumps by more than --gap-dex)",
}
RUNS_COLUMNS = (
    "N = params_total (or params with --params non_embedding), D = tokens_seen, loss = "
    "final_eval_loss (--loss-col), flops_per_token; completed trials only"
)
APPROACHES = ("2", "3", "both")  # scalelaws.chinchilla.study.APPROACHES (kept light for --help)
ISO_COLUMNS = ("C (FLOPs)", "runs", "N range", "N_opt", "N_opt 95%", "D_opt", "loss_min", "note")
COMPUTES = ("6ND", "flops_per_token", "total")  # scalelaws.chinchilla.law.COMPUTE


# --------------------------------------------------------------------------- printing


def _num(v: Any, fmt: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, fmt)


def _interval(iv, fmt: str = ".4g") -> str:
    if iv is None or any(x is None or not math.isfinite(x) for x in iv):
        return "-"
    return f"[{format(iv[0], fmt)}, {format(iv[1], fmt)}]"


def print_fits(console, res) -> None:
    """Rich tables of both fits and the comparison of a ChinchillaAnalysis, then every
    diagnostic line."""
    from rich.table import Table

    surf, iso, cmp = res.approach3, res.approach2, res.comparison
    if surf is not None:
        t = Table(title="Approach 3: L(N, D) = E + A/N^alpha + B/D^beta (95% bootstrap)")
        for c in ("param", "estimate", "95% interval"):
            t.add_column(c, justify="left" if c == "param" else "right")
        for k in ("E", "A", "B", "alpha", "beta", "n_exponent", "d_exponent", "G"):
            t.add_row(k, _num(surf.params[k], ".5g"), _interval(surf.intervals.get(k), ".5g"))
        console.print(t)
        m, i = surf.metrics, surf.info
        console.print(
            f"approach 3: {m['n_points']} runs, R² {m['r2']:.4f}, objective {m['objective']:.4g};"
            f" N* = G·(C/{i['flops_per_nd']:.4g})^n_exponent; {i['compute_convention']}; "
            f"bootstrap {i['n_boot']} (failed {i['boot_failed']}); rows dropped: "
            f"{i['rows_dropped_status']} by status, {i['rows_dropped_invalid']} invalid"
        )
    if iso is not None:
        t = Table(title="Approach 2: isoFLOP parabolas near each minimum (95% delta-method N_opt)")
        for c in ISO_COLUMNS:
            t.add_column(c, justify="right")
        for s in iso.slices:
            t.add_row(
                f"{s['flops']:.3g}",
                str(s["n_points"]),
                f"{s['n_min']:.3g}-{s['n_max']:.3g}",
                f"{s['n_opt']:.4g}",
                _interval((s["n_opt_lo"], s["n_opt_hi"])),
                f"{s['d_opt']:.4g}",
                f"{s['loss_min']:.4f}",
                "extrapolated" if s["extrapolated"] else "",
            )
        for s in iso.dropped:
            t.add_row(f"{s['flops']:.3g}", str(s["n_points"]), f"{s['n_min']:.3g}-{s['n_max']:.3g}",
                      "-", "-", "-", "-", "left out: not bracketed")  # fmt: skip
        console.print(t)
        p, iv = iso.params, iso.intervals
        console.print(
            f"approach 2: N_opt = {p['n_coef']:.4g}·C^{p['n_exponent']:.4f} "
            f"(exponent 95% {_interval(iv['n_exponent'])}), D_opt = {p['d_coef']:.4g}·"
            f"C^{p['d_exponent']:.4f} ({_interval(iv['d_exponent'])}); "
            f"{iso.info['compute_convention']}; slicing {iso.info['slicing']}; window: "
            f"{iso.info.get('window', 'every run')}; intervals: {iso.info['interval_method']}"
        )
    if cmp is not None:
        t = Table(title="Approach 2 vs 3: N* per budget")
        for c in ("C (FLOPs)", "N*_2", "N*_2 95%", "N*_3", "N*_3 95%", "ratio 2/3", "disagree"):
            t.add_column(c, justify="right")
        for b in cmp.budgets:
            t.add_row(
                f"{b['flops']:.3g}",
                f"{b['n_opt_2']:.4g}",
                _interval((b["n_opt_2_lo"], b["n_opt_2_hi"])),
                f"{b['n_opt_3']:.4g}",
                _interval((b["n_opt_3_lo"], b["n_opt_3_hi"])),
                f"{b['ratio']:.3f}",
                {True: "yes", False: "no", None: "-"}[b["disagree"]],
            )
        console.print(t)
        console.print(
            f"N* exponent: approach 2 {cmp.params['n_exponent_approach2']:.4f}, approach 3 "
            f"{cmp.params['n_exponent_approach3']:.4f}; geometric-mean N*_2/N*_3 "
            f"{cmp.params['geomean_ratio']:.3f}"
        )
    for name, res in (("approach 3", surf), ("approach 2", iso), ("comparison", cmp)):
        for d in res.diagnostics if res is not None else ():
            console.print(f"{name}: {d.line()}", markup=False)


def print_proposal(console, label: str, prop) -> None:
    from rich.table import Table

    t = Table(title=f"{label}: compute-optimal size at C = {prop.params['flops']:.4g} FLOPs")
    for c in ("quantity", "value", "95% interval"):
        t.add_column(c, justify="left" if c == "quantity" else "right")
    for k, name in (("n", "N (parameters)"), ("d", "D (tokens)"),
                    ("tokens_per_param", "D/N"), ("loss", "loss at the optimum")):  # fmt: skip
        if k in prop.params:
            t.add_row(name, _num(prop.params[k], ".5g"), _interval(prop.intervals.get(k), ".5g"))
    console.print(t)
    info = prop.info
    warned = info["fit_warnings"]
    console.print(
        f"{label}: {info['compute_convention']}; intervals: {info['interval_method']}; "
        f"{info['extrapolation_decades']:+.2f} decades outside the fitted range "
        f"[{info['flops_range'][0]:.3g}, {info['flops_range'][1]:.3g}]"
        + (f"; the fit had warnings {', '.join(warned)}" if warned else "")
    )
    for d in prop.diagnostics:
        console.print(f"{label}: {d.line()}", markup=False)


def make_console():
    from rich.console import Console

    return Console(width=max(120, Console().width))


# --------------------------------------------------------------------------- commands


def _fit_help() -> str:
    cols = "\n\n".join(f"{k}: {v}" for k, v in CSV_COLUMNS.items())
    return (
        "Compute-optimal scaling (Hoffmann et al. 2022): approach 2 (isoFLOP parabolas) and/or "
        "approach 3 (L(N, D) = E + A/N^alpha + B/D^beta), side by side, with every diagnostic."
        f"\n\nTABLE.csv columns, one row per run:\n\n{cols}\n\n--runs DIR: {RUNS_COLUMNS}."
    )


@fit_app.command("chinchilla", help=_fit_help())
def fit_chinchilla(
    table: Annotated[
        Path | None,
        typer.Argument(
            help="CSV, one row per run: columns N, D, loss [, flops, "
            "flops_per_token, budget] (see above)."
        ),  # fmt: skip
    ] = None,
    runs: Annotated[
        Path | None,
        typer.Option("--runs", help=f"Study folder with runs.parquet ({RUNS_COLUMNS})."),
    ] = None,
    approach: Annotated[
        str, typer.Option("--approach", help="2 (isoFLOP parabolas), 3 (loss surface) or both.")
    ] = "both",
    compute: Annotated[
        str,
        typer.Option(
            "--compute",
            help="FLOPs convention: 6ND (C = 6·N·D), flops_per_token (C = flops_per_token·D, "
            "the model's own count: 6N + attention), total (C = the flops column).",
        ),
    ] = "6ND",
    params: Annotated[
        str, typer.Option("--params", help="--runs: N counts 'total' or 'non_embedding' params.")
    ] = "total",
    loss_col: Annotated[
        str, typer.Option("--loss-col", help="--runs: loss column (e.g. ewa_eval_loss).")
    ] = "final_eval_loss",
    budget_col: Annotated[
        str | None,
        typer.Option("--budget-col", help="Column grouping the isoFLOP slices (CSV: budget)."),
    ] = None,
    gap_dex: Annotated[
        float, typer.Option("--gap-dex", help="Without a budget column: slice where log10 C jumps.")
    ] = 0.1,
    skip_bad_slices: Annotated[
        bool,
        typer.Option(
            "--skip-bad-slices",
            help="Approach 2: drop a slice with < 3 sizes or no minimum (SLICE_SKIPPED warning).",
        ),
    ] = False,
    window_dex: Annotated[
        float,
        typer.Option(
            "--window-dex",
            help="Approach 2: fit each parabola to the sizes within this many decades of N of "
            "the slice's lowest loss (at least 5 sizes); 0 = every run of the slice.",
        ),
    ] = 0.6,
    keep_unbracketed: Annotated[
        bool,
        typer.Option(
            "--keep-unbracketed",
            help="Approach 2: use a slice whose lowest loss is at its smallest or largest size "
            "(left out by default, OPTIMUM_NOT_BRACKETED).",
        ),
    ] = False,
    fix_e: Annotated[
        float | None,
        typer.Option(
            "--fix-e", help="Approach 3: hold E (irreducible loss, nats/token) at this value."
        ),
    ] = None,
    e_floor: Annotated[
        float | None,
        typer.Option(
            "--e-floor",
            help="Approach 3: the known lowest possible loss; E_IMPLAUSIBLE when E is below it.",
        ),
    ] = None,
    n_boot: Annotated[
        int, typer.Option("--n-boot", help="Bootstrap resamples (both approaches).")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Write FIT.json here.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="PNG: isoFLOP curves, N*(C).")] = None,
) -> None:
    from scalelaws.chinchilla import study

    if (table is None) == (runs is None):
        raise UserError("give exactly one of TABLE.csv or --runs DIR")
    if approach not in APPROACHES:
        raise UserError(f"--approach {approach!r}: use 2, 3 or both")
    if compute not in COMPUTES:
        raise UserError(f"--compute {compute!r}: use one of {', '.join(COMPUTES)}")
    if params not in ("total", "non_embedding"):
        raise UserError(f"--params {params!r}: use total or non_embedding")
    if n_boot < 0:
        raise UserError(f"--n-boot {n_boot}: must be >= 0 (0 = no intervals)")
    if not (math.isfinite(window_dex) and window_dex >= 0):
        raise UserError(f"--window-dex {window_dex}: must be >= 0 (0 = every run)")
    for v, option in ((fix_e, "--fix-e"), (e_floor, "--e-floor")):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UserError(f"{option} {v}: must be finite and > 0 (nats/token)")
    for path, option in ((out, "--out"), (plot, "--plot")):
        if path is not None:
            check_writable(path, option)
    inp = study.read_runs(table, study=runs, compute=compute, params=params, loss_col=loss_col)
    res = study.fit_chinchilla(
        inp.frame,
        inp.columns,
        approach=approach,
        compute=compute,
        budget_col=budget_col or inp.budget_col,
        gap_dex=gap_dex,
        n_boot=n_boot,
        seed=seed,
        skip_bad_slices=skip_bad_slices,
        info=inp.info,
        window_dex=window_dex or None,
        keep_unbracketed=keep_unbracketed,
        fix_e=fix_e,
        e_floor=e_floor,
    )
    console = make_console()
    print_fits(console, res)
    if out is not None:
        res.to_json(out)
        console.print(f"wrote {out}")
    if plot is not None:
        from scalelaws.chinchilla.plots import plot_isoflop

        plot_isoflop(plot, iso=res.approach2, surf=res.approach3, runs=inp.runs(compute))
        console.print(f"plot: {plot}")


@propose_app.command("size")
def propose_size(
    fit: Annotated[Path, typer.Option("--fit", help="FIT.json from `scalelab fit chinchilla`.")],
    flops: Annotated[
        float, typer.Option("--flops", help="Training budget C in FLOPs, in the fit's convention.")
    ],
    out: Annotated[Path | None, typer.Option("--out", help="Write the proposals here.")] = None,
) -> None:
    """Compute-optimal N and D for a FLOP budget, from every fit in FIT.json."""
    from scalelaws.chinchilla import study

    if not (math.isfinite(flops) and flops > 0):
        raise UserError(f"--flops {flops}: a budget must be finite and > 0")
    if out is not None:
        check_writable(out, "--out")
    res = study.propose_sizes(study.load_analysis(fit), flops, info={"fit": str(fit)})
    console = make_console()
    for key, prop in res.proposals.items():
        print_proposal(console, key.replace("approach", "approach "), prop)
    if out is not None:
        res.to_json(out)
        console.print(f"wrote {out}")
