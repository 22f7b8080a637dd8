"""The analysis as a library (scalelaws public API): load_study, fit_multipower,
propose_schedule, fit_cbs, fit_capacity. Each one on real Parquet tables; the CLI writes what
the library returns; the API runs without torch and ray; scalelaws has no import cycles.
"""

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from analysis_data import PARAMS_400M, capacity_runs, cbs_table, mpl_study
from typer.testing import CliRunner

import scalelaws as sl
from scalelab.commands import capacity as _cap  # noqa: F401  (registers the commands)
from scalelab.commands import cbs as _cbs  # noqa: F401
from scalelab.commands import fit_app, propose_app
from scalelab.commands import multipower as _mpl  # noqa: F401
from scalelaws.core.result import Result
from scalelaws.multipower.curves import curves_from_frame
from scalelaws.multipower.law import predict
from scalelaws.schedules import WSD_SHAPES

TESTS = Path(__file__).resolve().parent
REF = TESTS.parents[1] / "shared" / "refdata" / "multipower"


def cli(args: list[str]) -> str:
    app = typer.Typer()
    app.add_typer(fit_app, name="fit")
    app.add_typer(propose_app, name="propose")
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def same_numbers(a, b, path: str = "") -> None:
    """a == b, floats to 1e-12 relative (JSON round trips keep them exact anyway)."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            same_numbers(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same_numbers(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12), path
    else:
        assert a == b, path


def roundtrip(doc: dict) -> dict:
    return json.loads(json.dumps(doc))


# --------------------------------------------------------------------------- load_study


def test_load_study_joins_grid_columns_and_gives_the_exact_lr(tmp_path):
    study = sl.load_study(mpl_study(tmp_path / "s"))
    assert study.meta == {"name": "mpl"} and study.root == tmp_path / "s"
    assert study.grid_columns == ["grid.schedule", "grid.schedule.name", "grid.seed"]
    # every curve row carries its run's grid point
    c = study.curves
    assert {"grid.schedule", "grid.schedule.name", "grid.seed"} <= set(c.columns)
    assert c.height == 8 * 3000
    by_trial = c.group_by("trial").agg(
        pl.col("grid.schedule").unique(), pl.col("grid.seed").unique()
    )
    for trial, labels, seeds in by_trial.iter_rows():
        assert labels == [trial.split("-")[0]] and seeds == [int(trial[-1])]
    cos = c.filter(pl.col("grid.schedule").is_in(["constant", "cosine"]))
    assert sorted(cos["trial"].unique()) == ["constant-s0", "constant-s1", "cosine-s0", "cosine-s1"]
    # lr(trial) is the registry's schedule from the spec: the logged lr at step s is lr[s - 1]
    for trial in ("cosine-s0", "wsd-s1", "wsdcon-s0"):
        rows = c.filter(pl.col("trial") == trial).sort("step")
        np.testing.assert_array_equal(study.lr(trial)[rows["step"] - 1], rows["lr"].to_numpy())
    lr = study.lr("cosine-s0")
    assert lr.size == 3000 and lr[0] == 0.0 and lr[99] == 1e-3 and lr[-1] > 1e-4
    assert study.trials() == [
        f"{s}-s{k}" for k in (0, 1) for s in ("constant", "cosine", "wsdcon", "wsd")
    ]
    with pytest.raises(ValueError, match="spec lacks"):
        study.lr("broken")
    with pytest.raises(ValueError, match="not in"):
        study.lr("nope")


def test_load_study_of_old_tables_without_grid_columns(tmp_path):
    study = sl.load_study(mpl_study(tmp_path / "old", grid=False))
    assert study.grid_columns == []
    assert set(study.curves.columns) == {"trial", "step", "tokens", "lr", "train_loss", "eval_loss"}
    # old tables filter on runs columns; the exact LR works the same
    cos = study.runs.filter(pl.col("schedule") == "cosine")["trial"].to_list()
    assert cos == ["cosine-s0", "cosine-s1", "broken"]
    assert study.lr("cosine-s1")[-1] == pytest.approx(1e-4, rel=1e-3)


def test_load_study_needs_the_collected_tables(tmp_path):
    with pytest.raises(ValueError, match=r"no runs.parquet/curves.parquet; run `scalelab collect"):
        sl.load_study(tmp_path)


def test_load_study_of_a_collected_scalelab_study(tmp_path):
    """Trial folders written through scalelab (files, TrialSpec), collected by results.collect."""
    from scalelab import files, results
    from scalelab.config import OptimSpec, ScheduleSpec, Trial, TrialSpec
    from scalelab.train.recorder import new_record

    for name, sch in (
        ("a", ScheduleSpec("cosine", 10, {"final_lr": 3e-4})),
        ("b", ScheduleSpec("wsd", 10, {"decay_steps": 30, "shape": "exp", "final_lr": 1e-4})),
    ):
        t = TrialSpec(name, "st", schedule=sch, optim=OptimSpec(lr=3e-3), total_steps=100)
        folder = tmp_path / "trials" / name
        lr = t.lr_array()
        rows = [
            {"step": s, "tokens": s * 2048, "lr": lr[s - 1], "train_loss": 3.0}
            for s in range(1, 101)
        ]
        files.write_parquet(folder / "curve.parquet", files.curve_frame(rows))
        rec = new_record(Trial(t)) | {"status": "completed", "steps_done": 100}
        rec |= {"params": {"non_embedding": 1000, "total": 2000}}
        files.write_json(folder / "trial.json", rec)
    results.collect(tmp_path)
    study = sl.load_study(tmp_path)
    assert study.meta == {} and study.trials() == ["a", "b"]
    for name in ("a", "b"):
        spec = TrialSpec.from_json(study.runs.filter(pl.col("trial") == name)["spec"][0])
        np.testing.assert_array_equal(study.lr(name), spec.lr_array())
        assert study.schedule(name)[1] == 10


# --------------------------------------------------------------------------- fit_multipower


def test_fit_multipower_on_a_study_frame_exact_or_rebuilt_lr(tmp_path):
    study = sl.load_study(mpl_study(tmp_path / "s"))
    s0 = study.curves.filter(pl.col("grid.seed") == 0)
    fit_rows = s0.filter(pl.col("grid.schedule").is_in(["constant", "cosine", "wsdcon"]))
    test_rows = s0.filter(pl.col("grid.schedule") == "wsd")
    exact = sl.fit_multipower(fit_rows, test=test_rows, study=study, n_boot=0)
    assert isinstance(exact, sl.MultipowerFit)
    assert exact.info["lr_source"] == dict.fromkeys(
        ["constant-s0", "cosine-s0", "wsdcon-s0", "wsd-s0"], "spec"
    )
    assert [c["role"] for c in exact.curves] == ["fit"] * 3 + ["test"]
    assert exact.metrics["test"]["worst_e"] < 1e-3  # noise-free MPL curves, unseen schedule
    # the design-doc call: no study, so the LR is rebuilt from the rows (every step logged: exact)
    rebuilt = sl.fit_multipower(fit_rows, test=test_rows, n_boot=0)
    assert set(rebuilt.info["lr_source"].values()) == {"rebuilt"}
    assert [d.code for d in rebuilt.diagnostics if d.code.startswith("LR_")] == ["LR_REBUILT"]
    assert not any(d.code.startswith("LR_") for d in exact.diagnostics)
    for k, v in exact.params.items():
        assert rebuilt.params[k] == pytest.approx(v, rel=1e-9), k
    # predict: the fitted law on the held-out schedule
    lr = study.lr("wsd-s0")
    y = study.curves.filter((pl.col("trial") == "wsd-s0") & (pl.col("step") == 3000))["eval_loss"][
        0
    ]
    assert exact.predict(lr, [3000])[0] == pytest.approx(y, rel=1e-3)
    assert exact.predict(lr).shape == (2999,)  # S1 = lr[0] = 0 after the first update
    # JSON round trip keeps the type and every number
    exact.to_json(tmp_path / "fit.json")
    assert sl.MultipowerFit.load(tmp_path / "fit.json") == exact


def test_fit_multipower_rebuilds_sparse_logs_with_the_warmup(tmp_path):
    """Rows every 10 steps from step 10 (inside the 100-step warmup): rebuilt warmup anchored at
    lr[0] = 0, warmup read off the rows (first step at the peak)."""
    study = sl.load_study(mpl_study(tmp_path / "s", log_every=10))
    frame = study.curves.filter(pl.col("grid.seed") == 0)
    fit = sl.fit_multipower(frame.filter(pl.col("grid.schedule") != "wsd"), n_boot=0)
    assert set(fit.info["lr_source"].values()) == {"rebuilt"}
    # the rebuilt warmup is the registry's straight line from lr[0] = 0, and ends at step 100
    (cv,) = curves_from_frame(frame.filter(pl.col("trial") == "cosine-s0"))
    np.testing.assert_allclose(cv.lr[:100], study.lr("cosine-s0")[:100], rtol=1e-12)
    assert cv.steps.min() == 150 and cv.lr.size == 3000  # evals every 50 steps after warmup
    assert np.max(np.abs(cv.lr - study.lr("cosine-s0"))) < 1e-7  # cosine between rows
    # the law fitted on the rebuilt LR predicts the held-out WSD nearly as the exact one does
    lr = study.lr("wsd-s0")
    y = frame.filter((pl.col("trial") == "wsd-s0") & (pl.col("step") > 100))
    y = y.filter(pl.col("eval_loss").is_not_null())
    rel = np.abs(fit.predict(lr, y["step"].to_numpy()) / y["eval_loss"].to_numpy() - 1)
    assert rel.max() < 5e-3
    with pytest.raises(ValueError, match="lacks columns \\['ewa_eval_loss'\\]"):
        sl.fit_multipower(frame, loss="ewa_eval_loss")
    with pytest.raises(ValueError, match="no fitting curve"):
        sl.fit_multipower(frame.clear())


def test_cli_fit_and_propose_write_what_the_library_returns(tmp_path):
    root = mpl_study(tmp_path / "s")
    out, sched = tmp_path / "FIT.json", tmp_path / "SCHED.json"
    cli(["fit", "multipower", "--runs", root, "--where", "seed = 0 AND schedule != 'wsd'"]
        + ["--test-where", "schedule = 'wsd' AND seed = 0", "--bootstrap", "4", "--out", out])  # fmt: skip
    study = sl.load_study(root)
    s0 = study.curves.filter(pl.col("grid.seed") == 0)
    fit = sl.fit_multipower(
        s0.filter(pl.col("grid.schedule") != "wsd"),
        test=s0.filter(pl.col("grid.schedule") == "wsd"),
        study=study,
        n_boot=4,
    )
    doc = json.loads(out.read_text())
    same_numbers(doc, roundtrip(fit.to_dict()))
    assert {"law", "params", "intervals", "metrics", "curves", "residuals", "input_hash"} <= set(
        doc
    )
    assert len(doc["info"]["bootstrap_params"]) == 4 and "diagnostics" in doc
    # 4 resamples of 3 curves: no 95% interval, and the fit says so
    assert {"FEW_RESAMPLES", "FEW_GROUPS"} <= {d["code"] for d in doc["diagnostics"]}

    cli(["propose", "schedule", "--fit", out, "--total-steps", "2000", "--warmup-steps", "100",
         "--peak-lr", "1e-3", "--out", sched])  # fmt: skip
    prop = sl.propose_schedule(out, 2000, 1e-3, warmup_steps=100)
    same_numbers(json.loads(sched.read_text()), roundtrip(prop.to_dict()))
    assert prop.fit == str(out) and prop.fit_input_hash == fit.input_hash
    # the interval is the 95% range of the final loss under the fit's bootstrap refits
    finals = [predict(p, prop.lr, [2000])[0] for p in fit.bootstrap_params]
    assert prop.interval == pytest.approx(tuple(np.percentile(finals, [2.5, 97.5])), rel=1e-12)
    assert prop.predicted_final_loss == pytest.approx(predict(fit.params, prop.lr, [2000])[0])
    wsd = prop.baselines["wsd"]
    assert wsd["params"]["shape"] in WSD_SHAPES
    assert sl.ScheduleProposal.load(sched).lr.tolist() == prop.lr.tolist()
    # from the fit object directly: the same schedule, no FIT.json path
    again = sl.propose_schedule(fit, 2000, 1e-3, warmup_steps=100)
    assert again.lr.tolist() == prop.lr.tolist() and again.fit == ""
    assert [d.code for d in sl.propose_schedule(PARAMS_400M, 2000, 1e-3).diagnostics] == [
        "NO_INTERVAL",
        "NO_FIT_RANGE",
    ]
    with pytest.raises(ValueError, match="needs a multipower fit"):
        sl.propose_schedule(sl.FitResult("power", {"L0": 1.0}), 2000, 1e-3)


@pytest.mark.skipif(not REF.is_dir(), reason=f"reference data not found at {REF}")
def test_fit_multipower_on_files_matches_the_cli_and_the_published_fit(tmp_path):
    d = REF / "csv_400"
    fits = [d / f"{n}.csv" for n in ("cosine_24000", "constant_24000", "wsdcon_9")]
    tests = [d / f"{n}.csv" for n in ("wsd_20000_24000", "wsdld_20000_24000", "wsdcon_3")]
    out = tmp_path / "fit.json"
    args = ["fit", "multipower", "--warmup-steps", "2160", "--step-offset", "1", "--bootstrap", "2"]
    cli(
        args
        + [a for f in fits for a in ("--fit", f)]
        + [a for t in tests for a in ("--test", t)]
        + ["--out", out]
    )
    res = sl.fit_multipower(fits, test=tests, warmup_steps=2160, step_offset=1, n_boot=2)
    same_numbers(json.loads(out.read_text()), roundtrip(res.to_dict()))
    assert (
        res.metrics["test"]["r2"] > 0.997
    )  # docs/multipower.md: 0.99741 over the six official test curves
    assert any(d.code == "LR_REBUILT" for d in res.diagnostics)


# --------------------------------------------------------------------------- fit_cbs


def test_fit_cbs_on_a_table_frame_csv_and_cli(tmp_path):
    table = cbs_table()
    res = sl.fit_cbs(table, ref_batch=32, n_boot=200)
    for g, bc in {"a": 300.0, "b": 450.0, "c": 600.0, "d": 900.0}.items():
        assert res.params[f"b_crit[{g}]"] == pytest.approx(bc, rel=1e-6)
        assert res.params[f"cbs[{g}]"] == pytest.approx(1.2 * 32 + bc / 5, rel=1e-6)
        assert res.predict(64, g) == pytest.approx(2000 + 2000 * bc / 64, rel=1e-6)
    # B_crit = 300·(N/1e7)^(log 1.5/log 4)·(D/1e9)^(log 2/log 4) exactly on these 4 groups
    assert res.params["b_crit~joint.a"] == pytest.approx(np.log(1.5) / np.log(4), abs=1e-9)
    assert res.params["b_crit~joint.b"] == pytest.approx(0.5, abs=1e-9)
    csv = tmp_path / "steps.csv"
    table.write_csv(csv)
    out = tmp_path / "CBS.json"
    cli(["fit", "cbs", csv, "--ref-batch", "32", "--n-boot", "200", "--out", out])
    from_csv = sl.fit_cbs(csv, ref_batch=32, n_boot=200)
    same_numbers(json.loads(out.read_text()), roundtrip(from_csv.to_dict()))
    same_numbers(roundtrip(res.to_dict())["groups"], roundtrip(from_csv.to_dict())["groups"])
    back = sl.CBSResult.load(out)
    assert back.params == pytest.approx(from_csv.params) and back.scaling[
        "joint"
    ].b == pytest.approx(from_csv.scaling["joint"].b)
    # a CBS.json written before params/diagnostics existed still loads, with the same params
    legacy = {
        k: v
        for k, v in json.loads(out.read_text()).items()
        if k not in ("params", "intervals", "metrics", "diagnostics", "info")
    }
    old = sl.CBSResult.from_dict(legacy)
    assert old.params == pytest.approx(from_csv.params) and old.info["n_boot"] == 200
    with pytest.raises(ValueError, match="exactly one"):
        sl.fit_cbs()
    with pytest.raises(ValueError, match="table lacks columns"):
        sl.fit_cbs(table.drop("params"))


def test_fit_cbs_from_study_tables_matches_the_cli(tmp_path):
    from test_batchsize import synthetic_study

    root, truth = synthetic_study(tmp_path)
    out = tmp_path / "CBS.json"
    cli(
        [
            "fit",
            "cbs",
            "--runs",
            root,
            "--target",
            "3.0",
            "--ref-batch",
            "64",
            "--n-boot",
            "200",
            "--out",
            out,
        ]
    )
    res = sl.fit_cbs(study=root, target=3.0, ref_batch=64, n_boot=200)
    same_numbers(json.loads(out.read_text()), roundtrip(res.to_dict()))
    for g in res.groups:
        assert g.b_crit == pytest.approx(truth[g.group.split("/")[0]], rel=0.01)
        assert g.target == 3.0 and g.noise_scale is not None
    # three model sizes: the scaling fits in N are refused (< 4 groups) and say so
    assert [d.code for d in res.diagnostics] == ["TARGET_NOT_REACHED"] * 3 + ["TOO_FEW_POINTS"] * 2


def test_fit_cbs_groups_by_the_requested_data_size(tmp_path):
    """Sweeps round steps down, so the planned tokens of one D differ between batch sizes; the
    requested budget grid.tokens keeps them in one group (tables without it: planned tokens)."""
    from test_batchsize import synthetic_study

    root, _ = synthetic_study(tmp_path)
    runs = pl.read_parquet(root / "runs.parquet")
    rounded = runs.with_columns(
        tokens=pl.col("tokens") - pl.col("batch_size") * 64 * (pl.col("batch_size") % 3),
        **{"grid.tokens": pl.col("tokens")},
    )
    rounded.write_parquet(root / "runs.parquet")
    res = sl.fit_cbs(study=root, target=3.0, ref_batch=64, n_boot=200)
    assert [(g.group, g.tokens) for g in res.groups] == [
        (f"{m}/D=1e+08", 100_000_000) for m in ("m1", "m4", "m16")
    ]
    rounded.drop("grid.tokens").write_parquet(root / "runs.parquet")
    with pytest.raises(ValueError, match="3 distinct batch sizes"):  # split: one D per rounding
        sl.fit_cbs(study=root, target=3.0, ref_batch=64, n_boot=200)


# --------------------------------------------------------------------------- fit_capacity


def test_fit_capacity_uses_grid_exposures_and_matches_the_cli(tmp_path):
    runs = capacity_runs()
    res = sl.fit_capacity(runs)
    # bound at 1000 exposures: 6K at N=500 and N=1000, 14K at N=1000, all with bits = 2·P
    assert res.params["R"] == pytest.approx(2.0, rel=1e-9)
    assert res.params["R[100]"] == pytest.approx(0.4, rel=1e-9)
    assert res.ratio["bound_trials"] == ["14K-N1000-E1000", "6K-N1000-E1000", "6K-N500-E1000"]
    assert res.params["R_int8"] == pytest.approx(2.0, rel=1e-9)
    # int4 loses 0.3 nats of every value: N·K·0.3/ln 2 bits per trial; OLS through the origin
    bound = [t for t in res.trials if t["name"] in res.ratio["bound_trials"]]
    lost = [2.0 * t["params"] - 8 * t["n_people"] * 0.3 / np.log(2) for t in bound]
    want = sum(p["params"] * b for p, b in zip(bound, lost, strict=True)) / sum(
        p["params"] ** 2 for p in bound
    )
    assert res.params["R_int4"] == pytest.approx(want, rel=1e-9)
    assert res.predict(5_000, 28_000) == pytest.approx(10_000.0)
    assert not any(d.code == "EXPOSURES_GUESSED" for d in res.diagnostics)
    study = tmp_path / "cap"
    study.mkdir()
    runs.write_parquet(study / "runs.parquet")
    out = tmp_path / "CAP.json"
    cli(["fit", "capacity", "--runs", study, "--out", out])
    same_numbers(json.loads(out.read_text()), roundtrip(sl.fit_capacity(study).to_dict()))
    legacy = {
        k: v
        for k, v in json.loads(out.read_text()).items()
        if k not in ("params", "intervals", "metrics", "diagnostics", "info")
    }
    assert sl.CapacityResult.from_dict(legacy).params == pytest.approx(res.params)


def test_fit_capacity_reads_requested_exposures_before_guessing():
    """A step covering two passes: 5 requested exposures train 4 (steps round down). The grid
    column says 5; an old table without it can only guess 4, and says so."""
    coarse = capacity_runs().row(0, named=True) | {
        "trial": "coarse",
        "batch_size": 1000,
        "tokens": 4 * 500 * 12,
        "grid.exposures": 5,
    }
    runs = pl.concat([capacity_runs(), pl.DataFrame([coarse])], how="diagonal_relaxed")
    exp = {t["name"]: t["exposures"] for t in sl.fit_capacity(runs).trials}
    assert exp["coarse"] == 5.0 and exp["6K-N500-E1000"] == 1000.0
    old = sl.fit_capacity(runs.drop([c for c in runs.columns if c.startswith("grid.")]))
    assert {t["name"]: t["exposures"] for t in old.trials}["coarse"] == 4.0
    assert "EXPOSURES_GUESSED" in [d.code for d in old.diagnostics]
    assert any(
        d.code == "FIT_SKIPPED" and d.subject == "5 exposures"
        for d in sl.fit_capacity(runs).diagnostics
    )


# --------------------------------------------------------------------------- the study hooks


def test_quickstart_after_writes_fit_and_proposal(tmp_path):
    """experiments/quickstart.py after(): MPL fit on 150K constant/cosine/wsdcon, WSD held out,
    proposal for the same budget; curves made by the MPL itself from each trial's spec."""
    from scalelab.study import load
    from scalelab.sweep import expand

    module = load(TESTS.parent / "experiments" / "quickstart.py")
    runs, curves = [], []
    for t in (trial.spec for trial in expand(module.SPEC)):
        lr = t.lr_array()
        steps = np.arange(1, t.total_steps + 1)
        loss = np.full(steps.size, np.nan)
        ev = steps % 10 == 0
        loss[ev] = predict(PARAMS_400M, lr * 0.1, steps[ev])  # an MPL with other parameters
        runs.append({"trial": t.name, "status": "completed", "model": t.model.size,
                     "schedule": t.schedule.name, "spec": t.to_json()})  # fmt: skip
        curves.append(
            pl.DataFrame(
                {"trial": t.name, "step": steps, "lr": lr[steps - 1], "eval_loss": loss}
            ).with_columns(pl.col("eval_loss").fill_nan(None))
        )
    pl.DataFrame(runs).write_parquet(tmp_path / "runs.parquet")
    pl.concat(curves).write_parquet(tmp_path / "curves.parquet")
    module.after(tmp_path)
    fit = sl.MultipowerFit.load(tmp_path / "mpl_fit.json")
    assert fit.metrics["test"]["worst_e"] < 1e-3
    assert sorted(c["role"] for c in fit.curves) == ["fit", "fit", "fit", "test"]
    assert all(c["name"].startswith("N150K") for c in fit.curves)
    assert set(fit.info["lr_source"].values()) == {"spec"}
    prop = sl.ScheduleProposal.load(tmp_path / "proposed_schedule.json")
    assert prop.lr.size == 600 and prop.warmup_steps == 30 and prop.peak_lr == 3e-3
    assert prop.interval is not None and prop.fit == str(tmp_path / "mpl_fit.json")
    for png in ("mpl_fit.png", "proposed_schedule.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_schedules_validation_spec_runs_the_reported_baselines():
    """The best WSD is reported in the registry's terms: the validation trial's LR is exactly
    the baseline the law predicted."""
    from scalelab.study import load
    from scalelab.sweep import expand

    module = load(TESTS.parent / "experiments" / "schedules.py")
    prop = sl.propose_schedule(
        PARAMS_400M, module.STEPS, module.PEAK, warmup_steps=module.WARMUP, floor=module.FLOOR
    )
    validate = expand(module.validation_spec(prop, Path("/tmp/x")))
    trials = {t.spec.schedule.name: t.spec for t in validate}
    for name in ("cosine", "wsd"):
        np.testing.assert_array_equal(trials[name].lr_array(), prop.baseline_lr(name))
    np.testing.assert_array_equal(trials["array"].lr_array(), prop.lr)


# --------------------------------------------------------------------------- import hygiene

NO_TORCH = """
import importlib.abc, importlib.machinery, json, sys
class Block(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # torch and ray are found (probes such as polars' find_spec pass) but never import
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "ray"):
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ImportError(f"blocked: {spec.name}")
    def exec_module(self, module):
        raise ImportError(f"blocked: {module.__name__}")
sys.meta_path.insert(0, Block())
sys.path.insert(0, TESTS)
from pathlib import Path
import polars as pl
import scalelaws as sl
from analysis_data import PARAMS_400M, capacity_runs, cbs_table, mpl_study
study = sl.load_study(mpl_study(Path(ROOT), total=800))
c = study.curves.filter(pl.col("grid.seed") == 0)
fit = sl.fit_multipower(c.filter(pl.col("grid.schedule") != "wsd"),
                        test=c.filter(pl.col("grid.schedule") == "wsd"), study=study, n_boot=2)
prop = sl.propose_schedule(fit, 800, 1e-3, warmup_steps=100, knots=50)
cbs = sl.fit_cbs(cbs_table(), ref_batch=32, n_boot=200)
cap = sl.fit_capacity(capacity_runs())
out = {"worst_e": fit.metrics["test"]["worst_e"], "n_lr": len(prop.lr),
       "lr_ok": bool(prop.lr[100] <= 1e-3), "b_crit": cbs.params["b_crit[c]"], "R": cap.params["R"],
       "mods": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "ray"))}
try:
    import torch
    out["torch"] = "imported"
except ImportError:
    out["torch"] = "blocked"
print(json.dumps(out))
"""


@pytest.mark.integration
def test_the_api_runs_with_torch_and_ray_blocked(tmp_path):
    code = f"TESTS = {str(TESTS)!r}\nROOT = {str(tmp_path / 's')!r}\n" + NO_TORCH
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["torch"] == "blocked" and out["mods"] == []
    assert out["worst_e"] < 1e-3 and out["n_lr"] == 800 and out["lr_ok"]
    assert out["b_crit"] == pytest.approx(600.0, rel=1e-6) and out["R"] == pytest.approx(2.0)


def test_scalelaws_has_no_import_cycles():
    from test_layering import _cycle, _graph  # one import-graph reader (function-level imports too)

    graph = {m: deps for m, deps in _graph().items() if m.startswith("scalelaws")}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)
    assert (
        "scalelaws.multipower.curves" in graph["scalelaws.multipower.law"]
    )  # the graph is read right


@pytest.mark.integration
def test_public_api_is_lazy_and_complete():
    code = textwrap.dedent(
        """
        import json, sys, scalelaws
        before = sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "polars", "scipy"))
        names = {n: type(getattr(scalelaws, n)).__name__ for n in scalelaws.__all__}
        print(json.dumps({"before": before, "names": names}))
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(r.stdout)
    assert out["before"] == []  # `import scalelaws` alone loads no numerical library
    assert {n for n, kind in out["names"].items() if kind == "function"} == {
        "load_study", "fit_multipower", "evaluate_multipower", "propose_schedule", "fit_cbs",
        "fit_capacity", "lr_array",
        "fit_isoflop", "fit_loss_surface", "compare_approaches", "propose_size",
        "fit_hparams",
        # a study at a glance, its result files, closed loops, the HTML report (no fitting)
        "status_counts", "grid_keys", "runs_table", "find_results", "find_validation",
        "predicted_vs_measured", "paired_differences", "write_report",
        # held-out predictions against their intervals
        "backtest",
    }  # fmt: skip
    for cls in ("MultipowerFit", "ScheduleProposal", "CBSResult", "CapacityResult",
                "IsoFLOPFit", "ChinchillaFit", "Comparison", "SizeProposal", "Prediction",
                "Backtest", "PairedDifferences", "HparamsFit"):  # fmt: skip
        assert dataclasses.is_dataclass(getattr(sl, cls))
        assert issubclass(getattr(sl, cls), Result)
