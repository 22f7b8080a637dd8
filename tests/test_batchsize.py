"""Critical batch size: steps to target, S(B) fit, CBS / B_crit, scaling, and the CLI.

McCandlish et al. 2018 (S(B) = S_min + E_min/B, B_crit = E_min/S_min); Zhang et al. ICLR 2025
(arXiv 2410.21676): CBS = 1.2·B_ref + b/(5a), reproduced on their published table.
"""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

import scalelab.commands.cbs  # noqa: F401  (registers `fit cbs`)
from scalelab.commands import fit_app
from scalelaws.core.powerlaw import fit_joint_power_law, fit_power_law
from scalelaws.critical_batch.law import cbs_20pct, fit_cbs_group, fit_cbs_scaling, fit_cbs_table
from scalelaws.critical_batch.steps import first_crossing, noise_scale_at_target, steps_to_target

REFDATA = Path(__file__).resolve().parents[2] / "shared" / "refdata" / "cbs"
ZHANG_CSV = REFDATA / "zhang2025_cbs_chinchilla_steps_to_target.csv"
ZHANG_CBS = {"85M": 745.3, "151M": 955.2, "302M": 1393.7, "604M": 1888.5, "1.2B": 2533.4}


def cli_app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(fit_app, name="fit")
    return app


def run_row(trial, batch, lr, status="completed", seed=0, model="m", params=1000):
    return dict(
        trial=trial,
        status=status,
        model=model,
        params=params,
        batch_size=batch,
        seq_len=16,
        lr=lr,
        total_steps=300,
        tokens=1_000_000,
        seed=seed,
    )


def curve_rows(trial, steps, losses, noise=None, ewa=None):
    noise = noise or [None] * len(steps)
    ewa = ewa or losses
    return [
        dict(
            trial=trial,
            step=s,
            tokens=s * 100,
            lr=1e-3,
            train_loss=5.0,
            eval_loss=v,
            grad_norm=1.0,
            noise_scale=n,
            ewa_eval_loss=e,
        )
        for s, v, n, e in zip(steps, losses, noise, ewa, strict=True)
    ]


def hand_study():
    runs = pl.DataFrame(
        [
            run_row("t1", 8, 1e-3),
            run_row("t2", 8, 3e-3),
            run_row("t3", 16, 1e-3),
            run_row("t4", 16, 3e-3, status="failed"),  # reaches early but failed: ignored
            run_row("t5", 32, 1e-3, seed=0),
            run_row("t6", 32, 1e-3, seed=1),
        ]
    )
    rows = (
        # eval every 100 steps, train-only rows (eval_loss null) in between
        curve_rows(
            "t1",
            [0, 50, 100, 150, 200, 300],
            [5.0, None, 4.0, None, 3.0, 2.5],
            noise=[10.0, None, 20.0, None, 30.0, 40.0],
            ewa=[4.8, None, 3.5, None, 2.9, 2.4],
        )
        + curve_rows("t2", [0, 100, 200], [5.0, 3.8, 3.4])
        + curve_rows("t3", [0, 100, 200], [5.0, 4.0, 3.9])
        + curve_rows("t4", [0, 10], [5.0, 2.0])
        + curve_rows("t5", [0, 100, 200], [4.5, 3.5, 3.0])  # crosses 3.5 at 100
        + curve_rows("t6", [0, 100, 200, 300], [4.5, 4.0, 3.5, 3.0])  # crosses 3.5 at 200
    )
    return runs, pl.DataFrame(rows)


def test_first_crossing_interpolates():
    s = np.array([0, 100, 200, 300])
    loss = np.array([5.0, 4.0, 3.0, 2.5])
    assert first_crossing(s, loss, 3.5) == pytest.approx(150.0)  # 100 + 0.5/1.0·100
    assert first_crossing(s, loss, 2.75) == pytest.approx(250.0)
    assert first_crossing(s, loss, 6.0) == 0.0  # below target at the first eval
    assert first_crossing(s, loss, 2.0) is None
    # unsorted input and NaN (not evaluated) points
    assert first_crossing(s[::-1], loss[::-1], 3.5) == pytest.approx(150.0)
    assert first_crossing(s, np.array([5.0, np.nan, 3.0, 2.5]), 3.5) == pytest.approx(150.0)


def test_steps_to_target_explicit_target():
    runs, curves = hand_study()
    out = steps_to_target(curves, runs, target=3.5)
    by_b = {r["batch_size"]: r for r in out.to_dicts()}
    assert set(by_b) == {8, 16, 32}
    # B=8: t1 crosses at 150, t2 at 100 + 0.3/0.4·100 = 175; min over LRs = 150 (t1)
    assert by_b[8]["steps_to_target"] == pytest.approx(150.0)
    assert by_b[8]["trial"] == "t1" and by_b[8]["lr"] == 1e-3 and by_b[8]["reached"]
    # B=16: t3 never reaches, t4 failed -> not reached, null steps, no trial
    assert by_b[16]["reached"] is False
    assert by_b[16]["steps_to_target"] is None and by_b[16]["trial"] is None
    # B=32: two seeds of one LR are averaged: (100 + 200)/2
    assert by_b[32]["steps_to_target"] == pytest.approx(150.0)
    assert out["target"].to_list() == [3.5] * 3
    assert out["group"][0] == "m/D=1e+06"
    # the EWA loss column
    ewa = steps_to_target(curves, runs, target=3.5, loss_col="ewa_eval_loss")
    assert ewa.filter(pl.col("batch_size") == 8)["steps_to_target"][0] == pytest.approx(100.0)


def test_steps_to_target_auto_target_and_noise_scale():
    runs, curves = hand_study()
    # target = best final eval loss at the reference batch over LRs: min(2.5, 3.4) = 2.5
    out = steps_to_target(curves, runs, ref_batch=8)
    assert out["target"].unique().to_list() == [2.5]
    b8 = out.filter(pl.col("batch_size") == 8)
    assert b8["steps_to_target"][0] == pytest.approx(300.0) and b8["trial"][0] == "t1"
    # noise scale of t1 read at the step where it reaches the target
    at3 = steps_to_target(curves, runs, target=3.5)
    ns = noise_scale_at_target(curves, at3, ref_batch=8)
    assert ns.to_dicts() == [
        dict(group="m/D=1e+06", trial="t1", step=150.0, noise_scale=pytest.approx(25.0))
    ]
    with pytest.raises(ValueError, match="ref_batch=64"):
        steps_to_target(curves, runs, ref_batch=64)
    with pytest.raises(ValueError, match="target or ref_batch"):
        steps_to_target(curves, runs)


def test_fit_cbs_exact_data():
    b = 2.0 ** np.arange(5, 14)
    fit = fit_cbs_group(b, 2000 + 2000 * 600 / b, ref_batch=256, n_boot=200)
    assert fit.s_min == pytest.approx(2000, rel=1e-6)
    assert fit.e_min == pytest.approx(1.2e6, rel=1e-6)
    assert fit.b_crit == pytest.approx(600, rel=1e-6)
    assert fit.cbs == pytest.approx(1.2 * 256 + 600 / 5, rel=1e-6)
    assert max(abs(r) for r in fit.residuals) < 1e-8
    # pure linear scaling (S_min = 0): B_crit and CBS are infinite, not a silent number
    lin = fit_cbs_group(b, 1e6 / b, ref_batch=256, n_boot=200)
    assert lin.s_min == 0.0 and math.isinf(lin.b_crit) and math.isinf(lin.cbs)
    with pytest.raises(ValueError, match="3 distinct"):
        fit_cbs_group([64, 128, 64], [10, 5, 10], ref_batch=64)


def test_fit_cbs_recovers_b_crit_with_noise():
    """Steps from S_min + E_min/B with 5% multiplicative noise: the truth lies in the 95%
    bootstrap interval (in most datasets) and the estimate is close."""
    b = 2.0 ** np.arange(4, 15)
    s_min, bc = 3000.0, 800.0
    covered, errors = 0, []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        steps = (s_min + s_min * bc / b) * np.exp(rng.normal(0, 0.05, b.size))
        fit = fit_cbs_group(b, steps, ref_batch=256, n_boot=200, seed=0)
        lo, hi = fit.b_crit_interval
        covered += lo <= bc <= hi
        errors.append(abs(fit.b_crit / bc - 1))
        assert lo <= fit.b_crit <= hi
        assert fit.cbs == pytest.approx(cbs_20pct(fit.s_min, fit.e_min, 256))
    assert covered >= 8
    assert max(errors) < 0.2 and np.median(errors) < 0.06
    rng = np.random.default_rng(0)
    steps = (s_min + s_min * bc / b) * np.exp(rng.normal(0, 0.05, b.size))
    fit = fit_cbs_group(b, steps, ref_batch=256, n_boot=200, seed=0)
    assert fit.b_crit_interval[0] <= bc <= fit.b_crit_interval[1]


def test_power_law_fits():
    x = np.array([1e6, 3e6, 1e7, 3e7, 1e8])
    law = fit_power_law(
        x, 3.0 * (x / 1e6) ** 0.5 * np.array([1.01, 0.99, 1.0, 1.01, 0.99]), x_unit=1e6
    )
    assert law.exponent == pytest.approx(0.5, abs=0.01) and law.coef == pytest.approx(3, rel=0.03)
    assert law.exponent_interval[0] < 0.5 < law.exponent_interval[1]
    n, d = np.meshgrid([1e6, 1e7, 1e8], [1e8, 1e9, 1e10])
    n, d = n.ravel(), d.ravel()
    y = 2.0 * (n / 1e6) ** 0.1 * (d / 1e9) ** 0.45
    joint = fit_joint_power_law(n, d, y, n_unit=1e6, d_unit=1e9)
    assert (joint.coef, joint.a, joint.b) == pytest.approx((2.0, 0.1, 0.45), rel=1e-9)
    with pytest.raises(ValueError, match="vary together"):
        fit_joint_power_law(n, 20 * n, y)
    with pytest.raises(ValueError, match=">= 3 points"):
        fit_power_law([1, 2], [1, 2])


def zhang_table() -> pl.DataFrame:
    if not ZHANG_CSV.exists():
        pytest.skip(f"reference data not found at {ZHANG_CSV}")
    return pl.read_csv(ZHANG_CSV).select(
        pl.col("model").alias("group"),
        (pl.col("params_M") * 1_000_000).cast(pl.Int64).alias("params"),
        pl.col("batch_size_seqs").alias("batch_size"),
        pl.col("steps_to_target_used_in_fit").alias("steps_to_target"),
        pl.col("chinchilla_tokens").alias("tokens"),
    )


def test_cli_reproduces_zhang_2025(tmp_path):
    table = tmp_path / "steps.csv"
    zhang_table().write_csv(table)
    out, png = tmp_path / "CBS.json", tmp_path / "cbs.png"
    res = CliRunner().invoke(
        cli_app(),
        [
            "fit",
            "cbs",
            str(table),
            "--ref-batch",
            "256",
            "--out",
            str(out),
            "--plot",
            str(png),
            "--n-boot",
            "200",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "CBS (20%)" in res.output
    doc = json.loads(out.read_text())
    cbs = {g["group"]: g for g in doc["groups"]}
    for model, want in ZHANG_CBS.items():
        g = cbs[model]
        assert g["cbs"] == pytest.approx(want, rel=0.02)
        assert g["cbs"] == pytest.approx(1.2 * 256 + g["e_min"] / (5 * g["s_min"]), rel=1e-9)
        assert g["b_crit"] == pytest.approx(g["e_min"] / g["s_min"], rel=1e-9)
        assert g["cbs_interval"][0] <= g["cbs"] <= g["cbs_interval"][1]
        assert g["b_crit"] > 2.5 * g["cbs"]  # B_crit is a different, larger quantity
    law = doc["scaling"]["params"]
    assert law["exponent"] == pytest.approx(0.468, abs=0.01)
    assert law["coef"] == pytest.approx(93.2, rel=0.02)  # N in millions
    assert law["exponent_interval"][0] < 0.468 < law["exponent_interval"][1]
    assert "tokens" in doc["scaling"]  # D varies too (D ≈ 20N) ...
    assert "joint" not in doc["scaling"]  # ... but with N, so no joint fit
    # the clean published case prints no warning; the impossible joint fit is an info
    assert doc["warnings"] == []
    skipped = [d for d in doc["diagnostics"] if d["code"] == "FIT_SKIPPED"]
    assert len(skipped) == 2 and all(d["severity"] == "info" for d in skipped)
    assert all("vary together" in d["message"] for d in skipped)
    assert png.read_bytes()[:4] == b"\x89PNG"


def synthetic_study(tmp_path: Path) -> tuple[Path, dict]:
    """Three model sizes at one data size; the best LR reaches the target at exactly
    T(B) = S_min + E_min/B (loss linear in step, so interpolation is exact)."""
    truth, runs, curves = {}, [], []
    target = 3.0
    for model, params in (("m1", 1_000_000), ("m4", 4_000_000), ("m16", 16_000_000)):
        s_min, bc = 500.0, 200.0 * (params / 1e6) ** 0.5  # B_crit = 200, 400, 800
        truth[model] = bc
        for b in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096):
            for lr, slow in ((1e-3, 1.0), (3e-3, 1.3), (3e-4, 1.6)):
                t_star = (s_min + s_min * bc / b) * slow
                total = 3 * t_star if b < 4096 else 0.5 * t_star  # B=4096 never reaches
                trial = f"{model}-b{b}-lr{lr:g}"
                runs.append(
                    dict(
                        trial=trial,
                        status="completed",
                        model=model,
                        params=params,
                        batch_size=b,
                        seq_len=64,
                        lr=lr,
                        total_steps=int(total),
                        tokens=100_000_000,
                        seed=0,
                    )
                )
                steps = np.linspace(0, total, 41).round()
                loss = target + 0.5 * (1 - steps / t_star)
                curves += [
                    dict(
                        trial=trial,
                        step=int(s),
                        tokens=int(s) * b * 64,
                        lr=lr,
                        train_loss=v,
                        eval_loss=v,
                        grad_norm=1.0,
                        noise_scale=100.0 + 0.01 * s,
                    )
                    for s, v in zip(steps, loss, strict=True)
                ]
    study = tmp_path / "study"
    study.mkdir()
    pl.DataFrame(runs).write_parquet(study / "runs.parquet")
    pl.DataFrame(curves).write_parquet(study / "curves.parquet")
    return study, truth


def test_cli_from_study_tables(tmp_path):
    study, truth = synthetic_study(tmp_path)
    out = tmp_path / "CBS.json"
    res = CliRunner().invoke(
        cli_app(),
        [
            "fit",
            "cbs",
            "--runs",
            str(study),
            "--target",
            "3.0",
            "--ref-batch",
            "64",
            "--out",
            str(out),
            "--n-boot",
            "200",
            "--force",  # three model sizes: a scaling fit on < 4 groups needs --force
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["ref_batch"] == 64 and doc["loss_col"] == "eval_loss"
    forced = [d for d in doc["diagnostics"] if d["code"] == "TOO_FEW_POINTS"]
    assert [d["subject"] for d in forced] == ["cbs vs params", "b_crit vs params"]
    for g in doc["groups"]:
        bc = truth[g["group"].split("/")[0]]
        assert g["b_crit"] == pytest.approx(bc, rel=0.01)
        assert g["s_min"] == pytest.approx(500, rel=0.01)
        assert g["cbs"] == pytest.approx(1.2 * 64 + bc / 5, rel=0.01)
        assert 4096 not in g["batch_sizes"]  # not reached: excluded
        # noise scale at the step where the B=64 best-LR run reaches the target
        t_ref = 500 + 500 * bc / 64
        assert g["noise_scale_step"] == pytest.approx(t_ref, rel=1e-3)
        assert g["noise_scale"] == pytest.approx(100 + 0.01 * t_ref, rel=1e-4)
        assert g["target"] == 3.0
    assert sum("not reached at batch sizes [4096]" in w for w in doc["warnings"]) == 3
    unreached = [r for r in doc["steps"] if not r["reached"]]
    assert {r["batch_size"] for r in unreached} == {4096}
    # B_crit = 200·N^0.5 exactly; D is fixed so there is no D or joint law
    assert doc["scaling_b_crit"]["params"]["exponent"] == pytest.approx(0.5, abs=0.01)
    assert set(doc["scaling"]) == {"params"}


def test_cli_errors(tmp_path, capsys):
    from scalelab.cli import main

    bad = tmp_path / "bad.csv"
    pl.DataFrame({"group": ["a"], "batch_size": [1]}).write_csv(bad)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "cbs", str(bad), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "lacks columns" in err and err.count("\n") == 1
    res = CliRunner().invoke(cli_app(), ["fit", "cbs", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0
    assert not (tmp_path / "x").exists()


def test_fit_cbs_table_warns_on_unreached():
    t = pl.DataFrame(
        {
            "group": ["g"] * 5,
            "params": [10] * 5,
            "batch_size": [8, 16, 32, 64, 128],
            "steps_to_target": [1100.0, 600.0, 350.0, 225.0, None],
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (fit,) = fit_cbs_table(t, ref_batch=8, n_boot=200)
    assert any("[128]" in str(w.message) for w in caught)
    assert fit.batch_sizes == (8, 16, 32, 64)
    assert fit.b_crit == pytest.approx(8000 / 100, rel=1e-6)  # T = 100 + 8000/B
    assert fit_cbs_scaling([fit]) == {}  # one group: nothing to scale
