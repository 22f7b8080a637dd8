"""`scalelab fit capacity`: knowledge capacity (bits per parameter) of a bioS / bioD study.

    scalelab fit capacity --runs DIR --out CAP.json [--plot CAP.png] [--bound-frac 0.9]

DIR holds runs.parquet with the `knowledge.*` columns that trials with knowledge_eval=True
write (scalelab/knowledge.py). Per trial: bits from p1/p2/p3 (laws.md §3, recomputed here with
scalelaws.capacity), P = non-embedding + used embedding rows, R = bits / P, R_max = max / P.
The law bits ≈ min(R·P, max bits) (Allen-Zhu & Li 2024, arXiv 2404.05405) is fitted by OLS
through the origin on the capacity-bound trials (bits < bound_frac·max), per exposure count;
`ratio` is the fit at the largest exposure count. `quantized`: the same fit for the int8 / int4
copies (per-channel symmetric RTN) on the same trials, and the share of bits that survives.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path
from typing import Annotated

import typer

from scalelab.commands import fit_app
from scalelaws.io import write_json

QUANT = ("int8", "int4")
QUANT_METHOD = "per-channel (per output row) symmetric round-to-nearest; norm gains stay fp32"
_META = ("n_people", "n0", "K", "C", "D", "L", "T", "S0")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _exposures(row: dict) -> float:
    """Passes over every person. sweep.py rounds the steps down, so a budget of E exposures
    gives tokens/pass in [E - one step, E]: return the roundest E in that window (999.94 with
    steps of 0.26 passes -> 1000)."""
    per_epoch = row.get("knowledge.tokens_per_epoch") or (
        row["knowledge.n_people"] * row["knowledge.tokens_per_person"]
    )
    lo = row["tokens"] / per_epoch
    hi = (row["tokens"] + row["batch_size"] * row["seq_len"]) / per_epoch
    for digits in range(1, 8):
        unit = 10.0 ** (math.floor(math.log10(lo)) - digits + 1)
        e = math.ceil(lo / unit - 1e-9) * unit
        if e < hi:
            return float(f"{e:.{digits}g}")
    return lo


def trial_table(runs) -> list[dict]:
    """One dict per completed knowledge trial of a runs.parquet frame (polars)."""
    from scalelaws.capacity import knowledge_bits, knowledge_max_bits

    need = {"knowledge.p1", "knowledge.p2", "knowledge.params_used"}
    if not need <= set(runs.columns):
        raise ValueError(
            f"no knowledge columns ({', '.join(sorted(need - set(runs.columns)))} missing): "
            "train on bios/biod with knowledge_eval=True, then `scalelab collect DIR`"
        )
    out = []
    for r in runs.sort("trial").iter_rows(named=True):
        if r["status"] != "completed" or r.get("knowledge.p1") is None:
            continue
        meta = {k: r[f"knowledge.{k}"] for k in _META if r.get(f"knowledge.{k}") is not None}
        meta["kind"] = r["data"]
        p = int(r["knowledge.params_used"])
        bits = float(knowledge_bits(meta, r["knowledge.p1"], r["knowledge.p2"], r["knowledge.p3"]))
        mx = knowledge_max_bits(meta)
        t = {
            "name": r["trial"],
            "data": r["data"],
            "model": r["model"],
            "params": p,
            "params_non_embedding": int(r["knowledge.params_non_embedding"]),
            "n_people": int(meta["n_people"]),
            "exposures": _exposures(r),
            "bits": bits,
            "max_bits": mx,
            "ratio": bits / p,
            "ratio_max": mx / p,
            "ratio_non_embedding": bits / int(r["knowledge.params_non_embedding"]),
            "fraction_of_max": bits / mx,
            "p1": r["knowledge.p1"],
            "p2": r["knowledge.p2"],
            "p3": r["knowledge.p3"],
        }
        for q in QUANT:
            if r.get(f"knowledge.p1_{q}") is not None:
                qp = (r[f"knowledge.{k}_{q}"] for k in ("p1", "p2", "p3"))
                t[f"bits_{q}"] = float(knowledge_bits(meta, *qp))
                t[f"ratio_{q}"] = t[f"bits_{q}"] / p
                t[f"retained_{q}"] = t[f"bits_{q}"] / bits if bits > 0 else None
        out.append(t)
    if not out:
        raise ValueError("no completed trial with knowledge measurements in runs.parquet")
    return out


def _fit(trials: list[dict], key: str, bound_frac: float, bound=None, params="params") -> dict:
    """fit_ratio on `trials` (bits under `key`); an `error` entry when it cannot be fitted."""
    from scalelaws.capacity import fit_ratio

    try:
        f = fit_ratio(
            [t[params] for t in trials],
            [t[key] for t in trials],
            [t["max_bits"] for t in trials],
            bound_frac=bound_frac,
            bound=bound,
        )
    except ValueError as e:
        return {"estimate": None, "interval": None, "n_bound": 0, "error": str(e)}
    k = f.peak_index
    return {
        "estimate": f.ratio,
        "interval": list(f.ratio_interval),
        "n_bound": f.n_bound,
        "bound_trials": [t["name"] for t, b in zip(trials, f.bound, strict=True) if b],
        "bound": list(f.bound),
        "peak": f.peak_ratio,
        "peak_trial": trials[k]["name"],
    }


def fit_study(trials: list[dict], bound_frac: float = 0.9) -> dict:
    """`ratio` (largest exposure count), `groups` (one fit per exposure count), `quantized`."""
    groups = []
    for e in sorted({t["exposures"] for t in trials}, reverse=True):
        sel = [t for t in trials if t["exposures"] == e]
        g = {"exposures": e, **_fit(sel, "bits", bound_frac)}
        if g["estimate"] is not None:
            ne = _fit(sel, "bits", bound_frac, g["bound"], "params_non_embedding")
            g["non_embedding"] = {k: ne[k] for k in ("estimate", "interval")}
        big = [t for t, b in zip(sel, g.get("bound") or [False] * len(sel), strict=True) if not b]
        g["fraction_of_max_unbound"] = [t["fraction_of_max"] for t in big]
        quant = {}
        for q in QUANT:
            if not all(f"bits_{q}" in t for t in sel):
                continue
            mask = g.get("bound")
            fq = _fit(sel, f"bits_{q}", bound_frac, mask) if mask else {}
            kept = sum(t[f"bits_{q}"] for t in sel) / max(sum(t["bits"] for t in sel), 1e-9)
            quant[q] = {
                "estimate": fq.get("estimate"),
                "interval": fq.get("interval"),
                "retained": kept,  # sum of quantized bits / sum of fp32 bits, this group
                "retained_bound": (
                    sum(t[f"bits_{q}"] for t, b in zip(sel, mask, strict=True) if b)
                    / max(sum(t["bits"] for t, b in zip(sel, mask, strict=True) if b), 1e-9)
                    if mask
                    else None
                ),
            }
        g["quantized"] = quant
        groups.append(g)
    main = groups[0]
    ratio = {k: v for k, v in main.items() if k not in ("quantized", "bound")}
    quantized = {"method": QUANT_METHOD, "exposures": main["exposures"], **main["quantized"]}
    for g in groups:
        g.pop("bound", None)
    return {"ratio": ratio, "groups": groups, "quantized": quantized}


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.{digits}f}" if abs(x) < 1000 else f"{x:,.0f}"


@fit_app.command("capacity")
def capacity(
    runs: Annotated[Path, typer.Option("--runs", help="Study folder with runs.parquet.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write CAP.json.")],
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PNG: bits vs P per N, and R vs R_max.")
    ] = None,
    bound_frac: Annotated[
        float, typer.Option("--bound-frac", help="Capacity-bound: bits < this × max bits.")
    ] = 0.9,
) -> None:
    """Bits stored per parameter (Allen-Zhu & Li): R with a 95% interval, per-trial R, int8/int4."""
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(110, Console().width))
    path = runs / "runs.parquet"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if not path.exists():
                raise ValueError(f"--runs {runs}: runs.parquet not found (run `scalelab collect`)")
            trials = trial_table(pl.read_parquet(path))
            fits = fit_study(trials, bound_frac)
        except ValueError as e:
            console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(1) from e
    doc = {
        "kind": "capacity",
        "source": str(runs),
        "input_sha256": _sha256(path),
        "bound_frac": bound_frac,
        "units": {
            "bits": "bits (laws.md §3 lower bound from p1/p2/p3 in nats)",
            "params": "non-embedding + used_token_ids × d_model (tied embedding counted once)",
            "ratio": "bits / params",
            "exposures": "passes over every person (training tokens / tokens per pass)",
        },
        "trials": trials,
        **fits,
        "warnings": [str(w.message) for w in caught],
    }
    write_json(out, doc)

    tab = Table(title=f"Knowledge capacity ({runs.name}); full trial names in {out.name}")
    cols = ["data", "exp.", "model", "P", "bits", "max", "of max", "R", "R_max", "R int8", "R int4"]
    for c in cols:
        tab.add_column(c, justify="left" if c in ("data", "model") else "right", no_wrap=True)
    for t in sorted(trials, key=lambda t: (t["data"], t["n_people"], -t["exposures"], t["params"])):
        tab.add_row(
            f"{t['data']} N={t['n_people']:,}",
            f"{t['exposures']:g}",
            t["model"],
            f"{t['params'] / 1e3:,.1f}K",
            f"{t['bits'] / 1e3:,.1f}K",
            f"{t['max_bits'] / 1e3:,.1f}K",
            f"{t['fraction_of_max']:.1%}",
            _f(t["ratio"]),
            _f(t["ratio_max"]),
            _f(t.get("ratio_int8")),
            _f(t.get("ratio_int4")),
        )
    console.print(tab)
    for g in fits["groups"]:
        if g["estimate"] is None:
            console.print(f"[yellow]{g['exposures']:g} exposures:[/yellow] {g['error']}")
            continue
        lo, hi = g["interval"]
        line = (
            f"{g['exposures']:g} exposures: R = {g['estimate']:.3f} bits/param "
            f"(95% [{lo:.3f}, {hi:.3f}], {g['n_bound']} capacity-bound trials; "
            f"peak {g['peak']:.3f} {g['peak_trial']})"
        )
        for q, v in g["quantized"].items():
            line += f"; {q} R = {_f(v['estimate'])}, keeps {v['retained']:.1%} of the bits"
        console.print(line)
    for w in caught:
        console.print(f"[yellow]warning:[/yellow] {w.message}")
    if plot is not None:
        from scalelaws.plots_cbs import plot_capacity_study

        plot_capacity_study(trials, fits["ratio"].get("estimate"), plot)
        console.print(f"plot: {plot}")
    console.print(f"wrote {out}")
