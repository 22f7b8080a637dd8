"""The isoFLOP study (experiments/isoflop.py) and `scalelab fit chinchilla` / `propose size`.

The design is checked as expanded; the after-hook's analysis runs on runs tables drawn from a
known L(N, D) (no training); the CLI runs on Besiroglu et al.'s 240 runs
(tests/data/README_chinchilla.md). Hoffmann et al. 2022 (arXiv 2203.15556), Besiroglu et al.
2024 (arXiv 2404.10102).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from scalelab import study
from scalelab.cli import app, main
from scalelab.model import args_from_spec, flops_per_token, param_counts
from scalelab.sweep import expand
from scalelaws import find_results
from scalelaws.chinchilla.fit import ChinchillaFit
from scalelaws.chinchilla.study import ChinchillaAnalysis

REPO = Path(__file__).resolve().parents[1]
BESIROGLU = REPO / "tests" / "data" / "besiroglu2024_chinchilla_svg_extracted.csv"
# Besiroglu et al.'s notebook, cell 18: Huber δ = 1e-3 from the 4500-point grid, 240 runs
NOTEBOOK_HUBER = {"E": 1.81724, "alpha": 0.34731, "beta": 0.36718}
# the quick grammar's entropy rate (scalelab.data.pcfg, Monte Carlo over 200 sentences)
ENTROPY_RATE = 0.37388
# a known law whose optimum lies inside every window of the quick design, E at the entropy
# rate (the floor analyse() holds E at): N* ∝ C^(β/(α+β)) = C^0.75
LAW = {"E": ENTROPY_RATE, "A": 1.0, "B": 1400.0, "alpha": 0.25, "beta": 0.75}


@pytest.fixture(scope="module")
def iso():
    return study.load(REPO / "experiments" / "isoflop.py")


def _law(n, d):
    return LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]


# --------------------------------------------------------------------------- design


def test_quick_preset_expands_to_budgets_times_shapes(iso):
    design = iso.QUICK
    trials = expand(iso.SPEC)
    assert iso.PRESETS["quick"] is iso.SPEC and iso.SPEC.name == "isoflop"
    assert len(design.budgets) >= 3 and all(len(w) >= 5 for w in design.windows.values())
    assert len(trials) == sum(len(w) for w in design.windows.values())
    assert len({t.name for t in trials}) == len(trials)
    expected = {(c, design.ladder[i]) for c, w in design.windows.items() for i in w}
    seen = set()
    for t in trials:
        m, g = t.spec.model, t.spec.grid
        shape = (m.d_model, m.n_layers, m.n_heads)
        assert m.d_model // m.n_heads == 8  # one shape family: head_dim 8
        # D = C / flops_per_token of the shape the trainer builds (vocab 6, T = 64)
        fpt = flops_per_token(args_from_spec(m, 6, t.spec.seq_len))
        assert fpt == iso.flops_per_token(design, shape)
        budget = min(design.budgets, key=lambda c: abs(math.log(c / (fpt * g["tokens"]))))
        assert g["tokens"] == int(budget // fpt)
        assert budget - fpt < fpt * g["tokens"] <= budget
        assert t.spec.total_steps == g["tokens"] // (16 * 64)
        s = t.spec.schedule
        assert s.name == "cosine" and s.warmup_steps == max(1, round(0.05 * t.spec.total_steps))
        assert s.params == {"final_lr": pytest.approx(3e-4)}
        assert t.run.cpus_per_worker == 1 and t.run.device == "cpu"
        seen.add((budget, shape))
    assert seen == expected
    # the ladder roughly doubles N per rung and every window spans >= 10x in N
    ns = [iso.params_total(design, s) for s in design.ladder]
    assert all(1.7 < b / a < 2.5 for a, b in zip(ns, ns[1:], strict=False))
    for w in design.windows.values():
        assert ns[w[-1]] / ns[w[0]] >= 10


def test_cluster_preset_is_declared_and_valid(iso):
    trials = expand(iso.PRESETS["cluster"])
    assert len(trials) == 20 and all(t.run.device == "cuda" for t in trials)
    assert len({t.name for t in trials}) == 20


# --------------------------------------------------------------------------- analysis path


def _runs_row(iso, design, shape, tokens, study_name, noise):
    d, n_layers, n_heads = shape
    fpt = iso.flops_per_token(design, shape)
    n = iso.params_total(design, shape)
    seen = tokens // 1024 * 1024
    return {
        "trial": f"d{d}L{n_layers}-D{tokens}",
        "study": study_name,
        "status": "completed",
        "d_model": d,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "params_total": n,
        "params": n - 6 * d,
        "flops_per_token": fpt,
        "grid.tokens": tokens,
        "tokens": seen,
        "tokens_seen": seen,
        "steps_done": seen // 1024,
        "final_eval_loss": float(_law(n, seen) * math.exp(noise)),
    }


def _synthetic_study(iso, root: Path, seed=0, sigma=0.002) -> pl.DataFrame:
    """runs.parquet of the quick design with losses from LAW (0.2% noise)."""
    rng = np.random.default_rng(seed)
    design = iso.QUICK
    rows = [
        _runs_row(iso, design, design.ladder[i], design.point(design.ladder[i], c)["tokens"],
                  "isoflop", rng.normal(0, sigma))
        for c in design.budgets
        for i in design.windows[c]
    ]  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    df = pl.DataFrame(rows)
    df.write_parquet(root / "runs.parquet")
    return df


def _true_best_rung(iso, design, budget):
    """The ladder shape with the lowest loss under LAW at `budget` (D = C/flops_per_token)."""
    losses = []
    for s in design.ladder:
        d = design.point(s, budget)["tokens"] // 1024 * 1024
        losses.append(_law(iso.params_total(design, s), d))
    return design.ladder[int(np.argmin(losses))]


def test_after_analysis_recovers_the_known_optimum_and_writes_files(iso, tmp_path):
    root = tmp_path / "isoflop"
    _synthetic_study(iso, root)
    res = iso.analyse(root, n_boot=60)
    design = res["design"]
    assert design is iso.QUICK
    assert sorted(res["runs"]["budget_flops"].unique().to_list()) == design.budgets
    assert set(res["runs"]["budget"]) == {"1.5e+11", "3e+11", "6e+11", "1.2e+12"}
    surf, two = res["fits"].approach3, res["fits"].approach2
    assert surf.info["compute"] == two.info["compute"] == "flops_per_token"
    # E held at the grammar's entropy rate; the free-E fit beside it recovers the same law
    assert res["floor"] == pytest.approx(ENTROPY_RATE, abs=2e-4)
    assert surf.params["E"] == res["floor"] and surf.info["fix_e"] == res["floor"]
    for fit in (surf, res["free"]):
        for k in ("alpha", "beta", "E"):
            assert fit.params[k] == pytest.approx(LAW[k], rel=0.05)
    assert res["free"].info["fix_e"] is None and res["free"].info["e_floor"] == res["floor"]
    assert surf.params["n_exponent"] == pytest.approx(0.75, abs=0.03)
    # approach 2: every slice brackets its minimum, N* ∝ C^0.75 within its interval
    assert not any(s["extrapolated"] for s in two.slices)
    lo, hi = two.intervals["n_exponent"]
    assert lo < 0.75 < hi and two.params["n_exponent"] == pytest.approx(0.75, abs=0.1)
    # the proposal at 4x the largest budget snaps to the truly best rung of the ladder
    c = design.follow_up_budget
    assert c == 4 * max(design.budgets)
    prop = res["proposals"]["approach3"]
    spec, shapes = iso.follow_up(design, prop.params["n"], root)
    best = _true_best_rung(iso, design, c)
    assert tuple(shapes[1]["shape"]) == best
    i = design.ladder.index(best)
    assert [tuple(s["shape"]) for s in shapes] == list(design.ladder[i - 1 : i + 2])
    trials = expand(spec)
    assert spec.storage == str(tmp_path / "isoflop_follow_up") and len(trials) == 3
    for t, s in zip(trials, shapes, strict=True):
        fpt = iso.flops_per_token(design, tuple(s["shape"]))
        assert t.spec.grid["tokens"] == int(c // fpt)
    # follow-up "measured" from the same law: scored, and the proposal wins
    fu = pl.DataFrame(
        [_runs_row(iso, design, tuple(s["shape"]), s["point"]["tokens"], spec.name, 0.0)
         for s in shapes]
    )  # fmt: skip
    scores = iso.score(surf, shapes, fu, free=res["free"])
    assert scores["proposed_beat_neighbours"] and scores["margin"] > 0
    assert scores["best_measured"] == scores["best_predicted"] == "proposed"
    for r in scores["rows"]:
        assert r["measured"] == pytest.approx(r["predicted"], rel=0.01)
        assert r["measured"] == pytest.approx(r["predicted_free"], rel=0.01)
        assert r["predicted_lo"] <= r["predicted"] <= r["predicted_hi"]
    assert scores["covered"] == scores["covered_free"] == 3
    iso.write_outputs(root, res, shapes, scores, {"sweep": 1.0})
    doc = json.loads((root / "isoflop.json").read_text())
    assert doc["kind"] == "ChinchillaAnalysis" and doc["info"]["compute"] == "flops_per_token"
    assert ChinchillaFit.from_dict(doc["approach3"]).params == surf.params
    assert doc["info"]["follow_up"]["scores"]["proposed_beat_neighbours"] is True
    assert doc["proposals"]["approach3"]["params"]["flops"] == c
    assert set(doc["proposals"]) == {"approach3", "approach2", "approach3_free_e"}
    assert doc["info"]["entropy_rate"] == res["floor"]
    assert ChinchillaFit.from_dict(doc["info"]["approach3_free_e"]).params == res["free"].params
    # one Result: Result.load round-trips it and the study's findings list it
    back = ChinchillaAnalysis.load(root / "isoflop.json")
    assert back.approach3.params == surf.params and back.to_dict() == doc
    found = {f.path.name: f for f in find_results(root)}
    assert found["isoflop.json"].kind == "ChinchillaAnalysis"
    assert ("approach3.alpha", surf.params["alpha"]) in [
        r[:2] for r in found["isoflop.json"].param_rows()
    ]
    md = (root / "isoflop.md").read_text()
    assert "## Follow-up" in md and "beat both neighbours" in md and "| alpha |" in md
    assert "E held at the grammar's entropy rate 0.37" in md and "E free (for comparison)" in md
    assert "3 of 3 measured losses inside the E-held intervals, 3 of 3 inside the E-free" in md
    assert (root / "isoflop.png").stat().st_size > 10_000
    # the saved fits feed `scalelab propose size`
    out = CliRunner().invoke(app, ["propose", "size", "--fit", str(root / "isoflop.json"),
                                   "--flops", str(c)])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "approach 3" in out.output and "approach 2" in out.output


def test_a_slice_without_minimum_is_skipped_and_reported(iso, tmp_path):
    """A slice whose parabola opens downward (noise) has its lowest losses at its ends: it is
    left out as not bracketed (OPTIMUM_NOT_BRACKETED; SLICE_SKIPPED before approach 2 fitted
    near each minimum); the other three budgets still give approach 2, and the report says
    so."""
    root = tmp_path / "isoflop"
    df = _synthetic_study(iso, root)
    c = pl.col("flops_per_token") * pl.col("grid.tokens")
    x = pl.col("params_total").log() - 10.0
    df = df.with_columns(
        final_eval_loss=pl.when((c - 3e11).abs() < 3e9).then(0.6 - 0.01 * x * x)
        .otherwise(pl.col("final_eval_loss"))
    )  # fmt: skip
    df.write_parquet(root / "runs.parquet")
    res = iso.analyse(root, n_boot=20)
    two = res["fits"].approach2
    assert [d.subject for d in two.diagnostics if d.code == "OPTIMUM_NOT_BRACKETED"] == ["3e+11"]
    assert [s["label"] for s in two.dropped] == ["3e+11"]
    assert [s["label"] for s in two.slices] == ["1.5e+11", "6e+11", "1.2e+12"]
    iso.write_outputs(root, res, None, None)
    assert "OPTIMUM_NOT_BRACKETED (3e+11)" in (root / "isoflop.md").read_text()
    assert (root / "isoflop.png").is_file()


def test_load_runs_refuses_runs_off_the_design(iso, tmp_path):
    root = tmp_path / "isoflop"
    df = _synthetic_study(iso, root)
    df.with_columns(pl.col("grid.tokens") * 3).write_parquet(root / "runs.parquet")
    with pytest.raises(ValueError, match="not on a budget"):
        iso.load_runs(root)
    df.with_columns(study=pl.lit("other")).write_parquet(root / "runs.parquet")
    with pytest.raises(ValueError, match="expected one of"):
        iso.load_runs(root)


# --------------------------------------------------------------------------- CLI


def _besiroglu_csv(path: Path, budgets: bool = False) -> Path:
    """N, D = FLOP/(6N), loss, flops for their 240 runs (the 5 highest losses dropped); with
    `budgets`, a budget column: the Hoffmann budget within 0.03 dex of each run (others out)."""
    df = pl.read_csv(BESIROGLU)
    df = df.filter(pl.col("loss") < df["loss"].sort()[-5])
    df = df.select(
        N=pl.col("model_size"),
        D=pl.col("training_flop") / (6 * pl.col("model_size")),
        loss=pl.col("loss"),
        flops=pl.col("training_flop"),
    )
    if budgets:
        hb = np.array([6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21])
        dist = np.abs(np.log10(df["flops"].to_numpy())[:, None] - np.log10(hb))
        b = np.where(dist.min(1) < 0.03, hb[dist.argmin(1)], np.nan)
        df = df.with_columns(budget=pl.Series(b)).filter(pl.col("budget").is_not_nan())
    df.write_csv(path)
    return path


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    """`scalelab ARGV` through the CLI's one error path (scalelab.errors.run_cli)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def _row_value(output: str, name: str) -> float:
    m = re.search(rf"│ {name}\s+│\s+([-+0-9.e]+) │", output)
    assert m, f"no row {name} in\n{output}"
    return float(m.group(1))


def test_cli_fits_besiroglu_approach_3_and_proposes(tmp_path):
    csv = _besiroglu_csv(tmp_path / "runs.csv")
    fit = tmp_path / "fit.json"
    res = CliRunner().invoke(
        app, ["fit", "chinchilla", str(csv), "--approach", "3", "--n-boot", "20",
              "--out", str(fit), "--plot", str(tmp_path / "fit.png")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    for k, v in NOTEBOOK_HUBER.items():
        assert _row_value(res.output, k) == pytest.approx(v, rel=2e-3)
    assert "C = 6·N·D" in res.output and "NON_IDENTIFIABLE" in res.output
    doc = json.loads(fit.read_text())
    assert doc["approach2"] is None and doc["approach3"]["params"]["alpha"] == pytest.approx(
        NOTEBOOK_HUBER["alpha"], rel=2e-3
    )
    assert (tmp_path / "fit.png").stat().st_size > 10_000
    assert ChinchillaAnalysis.load(fit).approach3.params == pytest.approx(
        doc["approach3"]["params"]
    )
    out = tmp_path / "size.json"
    res = CliRunner().invoke(
        app, ["propose", "size", "--fit", str(fit), "--flops", "5.88e23", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "EXTRAPOLATION" in res.output and "N (parameters)" in res.output
    n = json.loads(out.read_text())["proposals"]["approach3"]["params"]["n"]
    assert 3e10 < n < 2e11  # Chinchilla's budget: tens of billions of parameters


def test_cli_both_approaches_with_a_budget_column(tmp_path):
    csv = _besiroglu_csv(tmp_path / "runs.csv", budgets=True)
    res = CliRunner().invoke(
        app, ["fit", "chinchilla", str(csv), "--n-boot", "20", "--compute", "total"]
    )
    assert res.exit_code == 0, res.output
    assert "Approach 2" in res.output and "Approach 2 vs 3" in res.output
    assert "slicing by column 'budget'" in res.output and "C = the total-FLOPs column" in res.output


@pytest.mark.parametrize(
    ("edit", "args", "message"),
    [
        (lambda df: df.drop("loss"), [], r"missing column\(s\) loss"),
        (lambda df: df.with_columns(N=-pl.col("N")), [], r"row 1 has N = -"),
        (lambda df: df.drop("flops"), ["--compute", "total"], r"missing column\(s\) flops"),
        (lambda df: df, ["--approach", "4"], r"--approach '4'"),
        (lambda df: df, ["--compute", "6nd"], r"--compute '6nd'"),
        (lambda df: df.head(4), ["--approach", "3"], r"only 4 usable runs"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, edit, args, message):
    df = pl.read_csv(_besiroglu_csv(tmp_path / "ok.csv"))
    bad = tmp_path / "bad.csv"
    edit(df).write_csv(bad)
    code, out, err = _main(["fit", "chinchilla", str(bad), *args], capsys)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(message, lines[0])
    assert out == ""


def test_cli_bad_paths_exit_2(tmp_path, capsys):
    for argv in (
        ["fit", "chinchilla", "--runs", str(tmp_path)],
        ["fit", "chinchilla", str(tmp_path / "none.csv")],
        ["fit", "chinchilla"],
        ["propose", "size", "--fit", str(tmp_path / "none.json"), "--flops", "1e20"],
    ):
        code, out, err = _main(argv, capsys)
        assert code == 2, (argv, out + err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    (tmp_path / "fit.json").write_text(json.dumps({"kind": "other"}))
    code, _, err = _main(
        ["propose", "size", "--fit", str(tmp_path / "fit.json"), "--flops", "-1"], capsys
    )
    assert code == 2 and "--flops -1" in err


def test_params_counts_match_the_design_helpers(iso):
    """params_total in the runs table is param_counts(...)['total'] of the same args."""
    design = iso.QUICK
    for s in design.ladder:
        args = iso.model_args(design, s)
        assert iso.params_total(design, s) == param_counts(args)["total"]
        assert args.vocab_size == 6 and args.seq_len == 64


def test_cli_help_documents_every_column_and_convention():
    res = CliRunner().invoke(app, ["fit", "chinchilla", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for col in (
        "N: model size",
        "D: training tokens",
        "loss: final loss",
        "flops: optional",
        "flops_per_token: optional",
        "budget: optional",
        "--runs DIR: N = params_total",
    ):
        assert col in text, col
    for opt in ("--approach", "--compute", "6ND", "flops_per_token", "total", "--out", "--plot"):
        assert opt in text


def test_wsd_preset_trains_each_shapes_budgets_as_cooldowns_of_one_run(iso):
    """The WSD variant: per shape one warmup, the peak LR, then a 20% linear cooldown; every
    shorter budget of a shape forks from its longest run where its cooldown starts."""
    from scalelab import prefix

    design, trials = iso.WSD, expand(iso.PRESETS["wsd"])
    assert iso.DESIGNS["isoflop_wsd"] is design and not design.follow_up
    assert len(trials) == len(expand(iso.SPEC))  # the same (shape, budget) points
    plan = prefix.plan(trials)
    shapes: dict[tuple, list] = {}
    for t in trials:
        assert t.spec.schedule.name == "wsd" and t.spec.schedule.params["decay_frac"] == 0.2
        shapes.setdefault((t.spec.model.d_model, t.spec.model.n_layers), []).append(t)
    for group in shapes.values():
        assert len({t.spec.schedule.warmup_steps for t in group}) == 1
        longest = max(group, key=lambda t: t.spec.total_steps)
        assert longest.name not in plan.forks
        for t in group:
            if t is not longest:
                f = plan.forks[t.name]
                assert f.parent == longest.name
                assert f.step == round(0.8 * t.spec.total_steps) + 1  # first cooldown update
    assert len(plan.forks) == sum(len(g) - 1 for g in shapes.values()) > 0
    # the compute line counts each trial's own updates only
    runs = pl.DataFrame(
        {"steps_done": [100, 100], "fork_step": [None, 81], "flops_per_token": [10, 10]}
    )
    line = iso.compute_spent(runs, design)
    # (100 + 19) updates × 1,024 tokens × 10 FLOPs, of 200 × 1,024 × 10
    assert line.startswith("Compute spent: 1.22e+06 FLOPs of the 2.05e+06") and "(60%;" in line
