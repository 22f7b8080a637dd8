"""The surfaces of the hyperparameter fit (docs/hparams.md): `scalelab fit hparams` on a study
folder and on a runs file, `scalelab propose hparams` and its study points, every bad input's
one line, the HTML report's section (with the CBS beside B*, and without a CBS fit) and the
study's W&B analysis run (offline). The CLI runs in-process through its entry point.

Inputs: the study fixture tests/data/study_hparams (a known optimum path, seeded noise and one
diverged run; tests/data/README_studies.md) and the known-answer runs of test_hparams_fit.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from cli_run import cli
from test_hparams_fit import make_runs
from test_report import Page
from wandb_offline import offline_runs

import scalelaws as sl
from scalelab.cli import main
from scalelab.config import TrialSpec
from scalelab.sweep import SweepSpec, expand
from scalelaws.study.findings import KNOWN
from scalelaws.study.hparams import curvature_text, study_runs

DATA = Path(__file__).resolve().parent / "data"
FIXTURE = DATA / "study_hparams"
SEQ = 32  # the fixture's seq_len
N_BOOT = 30


def copy_study(dst: Path, src: Path = FIXTURE, drop=("hparams.json",)) -> Path:
    root = shutil.copytree(src, dst)
    for name in drop:
        (root / name).unlink(missing_ok=True)
    return root


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    """`scalelab fit hparams --runs DIR` on a copy of the fixture with W&B offline: the JSON,
    the figure and the analysis run its hook logs (one figure for every test here)."""
    tmp = tmp_path_factory.mktemp("hp")
    root = copy_study(tmp / "study_hparams")
    with pytest.MonkeyPatch.context() as mp:
        for var, value in {
            "WANDB_MODE": "offline",
            "WANDB_DATA_DIR": tmp / "wandb-data",
            "WANDB_CACHE_DIR": tmp / "wandb-cache",
            "WANDB_CONFIG_DIR": tmp / "wandb-config",
            "NETRC": tmp / "no-netrc",
        }.items():
            mp.setenv(var, str(value))
        for var in ("WANDB_API_KEY", "WANDB_ENTITY", "WANDB_PROJECT"):
            mp.delenv(var, raising=False)
        with pytest.raises(SystemExit) as e:
            main(["fit", "hparams", "--runs", str(root), "--n-boot", str(N_BOOT)])
    assert e.value.code == 0
    return root


@pytest.fixture(autouse=True)
def no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


# ----------------------------------------------------------------------- fit hparams


def test_fit_on_a_study_writes_the_library_result_and_its_figure(fitted):
    root = fitted
    runs = study_runs(sl.load_study(root))
    assert runs.left_out == {"diverged": 1} and runs.seq_len == SEQ
    want = sl.fit_hparams(runs.frame, **runs.columns, n_boot=N_BOOT)
    assert json.loads((root / "hparams.json").read_text()) == json.loads(want.to_json())
    assert (root / "hparams.png").stat().st_size > 20_000
    # the fixture's known path: lr* ∝ N^-0.3·D^0.1, B* ∝ D^0.5 (tokens per optimizer step)
    for key, truth in (("lr~ND.N", -0.3), ("lr~ND.D", 0.1), ("batch~ND.D", 0.5)):
        lo, hi = want.intervals[key]
        assert lo <= truth <= hi, key
    assert want.info["batch_unit"] == "tokens per optimizer step"
    assert want.info["rows"] == 107  # 108 trials, the diverged one left out


def test_fit_prints_the_cells_the_laws_and_every_diagnostic(tmp_path, capsys):
    root = copy_study(tmp_path / "s")
    argv = ["fit", "hparams", "--runs", root, "--n-boot", 0, "--out", tmp_path / "f.json"]
    code, out, err = cli([*argv, "--no-plot"], capsys)
    assert code == 0, err
    fit = sl.HparamsFit.load(tmp_path / "f.json")
    text = " ".join(out.split())  # rich wraps long lines
    assert "left out 1 run(s): 1 diverged" in text
    for c in fit.cells:
        assert c["label"] in text
    for key, law in fit.laws.items():
        assert f"{key}: {'lr*' if key[:2] == 'lr' else 'B*'} = {law['coef']:.4g}·" in text
    assert f"curvature: {curvature_text(fit)} (δ in ln units" in text
    assert fit.diagnostics and all(" ".join(d.line().split()) in text for d in fit.diagnostics)
    assert {d.code for d in fit.diagnostics} >= {"NO_INTERVAL", "NON_IDENTIFIABLE"}
    assert not (root / "hparams.json").exists() and not (tmp_path / "f.png").exists()


def test_fit_on_a_runs_file_with_its_column_names(tmp_path, capsys):
    frame = make_runs(seeds=1).rename({"params": "n", "lr": "peak_lr", "loss": "final"})
    frame.write_csv(tmp_path / "runs.csv")
    frame.write_parquet(tmp_path / "runs.parquet")
    cols = ["--params-col", "n", "--lr-col", "peak_lr", "--loss-col", "final"]
    for name in ("runs.csv", "runs.parquet"):
        out = tmp_path / f"{name}.json"
        argv = ["fit", "hparams", tmp_path / name, *cols, "--n-boot", 20, "--out", out]
        code, _, err = cli([*argv, "--no-plot"], capsys)
        assert code == 0, err
        read = pl.read_csv if name.endswith("csv") else pl.read_parquet
        want = sl.fit_hparams(
            read(tmp_path / name), params="n", lr="peak_lr", loss="final", n_boot=20
        )
        assert json.loads(out.read_text()) == json.loads(want.to_json())
    assert want.info["columns"]["batch"] == "batch_size"


# ----------------------------------------------------------------------- propose hparams


def test_propose_gives_the_optimum_and_its_neighbourhood_as_study_points(fitted, tmp_path, capsys):
    root = fitted
    n, d = 1e5, 2e6
    out = tmp_path / "study_points.json"
    code, text, err = cli(
        ["propose", "hparams", root / "hparams.json", "--params", n, "--tokens", d, "--out", out],
        capsys,
    )
    assert code == 0, err
    doc = json.loads(out.read_text())
    fit = sl.HparamsFit.load(root / "hparams.json")
    pred = fit.predict(n, d, level=0.9)
    assert doc["params"]["lr"] == pytest.approx(pred.lr)
    assert doc["intervals"]["batch"] == pytest.approx(list(pred.intervals["batch"]))
    assert doc["info"]["seq_len"] == SEQ and doc["info"]["seq_len_from"].endswith("runs.parquet")
    batch = round(pred.batch / SEQ)  # B* is in tokens per optimizer step
    assert doc["point"] == {
        "optim.lr": float(f"{pred.lr:.3g}"),
        "batch_size": batch,
        "total_steps": int(d // (batch * SEQ)),
    }
    assert doc["points"][4] == doc["point"] and len(doc["points"]) == 9
    for row, p in zip(doc["neighbourhood"], doc["points"], strict=True):
        assert row["point"] == p
        assert p["optim.lr"] == pytest.approx(pred.lr * row["lr_factor"], rel=5e-3)
        assert p["batch_size"] == round(batch * row["batch_factor"])
        assert p["total_steps"] == int(d // (p["batch_size"] * SEQ))
        pen = fit.penalty(n, d, p["optim.lr"], p["batch_size"] * SEQ)
        assert row["penalty_nats"] == pytest.approx(pen.params["nats"])
    assert doc["neighbourhood"][4]["penalty_nats"] < 1e-4  # the optimum, up to rounding
    # the points are ready for a SweepSpec: each trial runs about D tokens
    trials = expand(SweepSpec("next", TrialSpec(seq_len=SEQ), points=doc["points"]))
    assert len(trials) == 9
    for t, p in zip(trials, doc["points"], strict=True):
        s = t.spec
        assert (s.optim.lr, s.batch_size, s.total_steps) == (
            p["optim.lr"],
            p["batch_size"],
            p["total_steps"],
        )
        assert d - s.batch_size * SEQ < s.total_steps * s.batch_size * SEQ <= d
    # N and D lie beyond the fitted range: said, with the factor
    extrap = [x for x in doc["diagnostics"] if x["code"] == "EXTRAPOLATION"]
    assert {x["subject"] for x in extrap} >= {"params N", "tokens D", "compute C = 6ND"}
    flat = " ".join(text.split())
    assert all(" ".join(x["message"].split()) in flat for x in extrap)
    assert "the fit had warnings: NON_IDENTIFIABLE" in flat


def test_propose_takes_seq_len_and_a_sequences_fit(tmp_path, capsys):
    frame = make_runs(seeds=1).with_columns(pl.col("batch_size") / 256)  # sequences of 256
    fit = sl.fit_hparams(frame, batch_unit="sequences per optimizer step", n_boot=0)
    fit.to_json(tmp_path / "fit.json")
    argv = ["propose", "hparams", tmp_path / "fit.json", "--params", 3e7, "--tokens", 3e9]
    code, _, err = cli([*argv, "--seq-len", 256, "--out", tmp_path / "p.json"], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "p.json").read_text())
    batch = round(fit.predict(3e7, 3e9).batch)  # already in sequences
    assert doc["point"]["batch_size"] == batch
    assert doc["point"]["total_steps"] == int(3e9 // (batch * 256))
    assert not [x for x in doc["diagnostics"] if x["code"] == "EXTRAPOLATION"]


# ----------------------------------------------------------------------- bad input


def _bad_files(tmp: Path) -> dict[str, Path]:
    runs = make_runs(seeds=1)
    paths = {"csv": tmp / "runs.csv", "nolr": tmp / "nolr.csv", "nan": tmp / "nan.csv"}
    runs.write_csv(paths["csv"])
    runs.drop("lr").write_csv(paths["nolr"])
    runs.with_columns(loss=pl.when(pl.col("lr") > 2e-3).then(None).otherwise("loss")).write_csv(
        paths["nan"]
    )
    (tmp / "runs.txt").write_text("x")
    (tmp / "empty").mkdir()
    return paths


FIT_CASES = {
    "no input": ([], r"give exactly one of RUNS"),
    "both": (["{csv}", "--runs", "{study}"], r"give exactly one of RUNS"),
    "no file": (["{tmp}/missing.csv"], r"RUNS: no file"),
    "not csv": (["{tmp}/runs.txt"], r"neither \.csv nor \.parquet"),
    "missing column": (["{nolr}"], r"^lr: runs has no column 'lr'"),
    "nan loss": (["{nan}"], r"^loss: \d+ of \d+ rows of column 'loss' are NaN"),
    "not a study": (["--runs", "{tmp}/empty"], r"no runs\.parquet"),
    "column with runs": (["--runs", "{study}", "--lr-col", "x"], r"--lr-col: applies to a RUNS"),
    "where with file": (["{csv}", "--where", "lr > 0"], r"--where: applies to --runs"),
    "bad where": (["--runs", "{study}", "--where", "lr >>> 1"], r"where: 'lr >>> 1' is not"),
    "unit": (["{csv}", "--batch-unit", "samples"], r"--batch-unit 'samples'"),
    "unit with runs": (["--runs", "{study}", "--batch-unit", "tokens"], r"--batch-unit: applies"),
    "n_boot": (["{csv}", "--n-boot", "-1"], r"--n-boot -1: must be >= 0"),
    "out folder": (["{csv}", "--out", "{tmp}"], r"--out: .* is a folder"),
    "loss column": (["--runs", "{study}", "--loss-col", "nope"], r"no column\(s\) \['nope'\]"),
}
PROPOSE_CASES = {
    "no fit": (["{tmp}/missing.json"], r"FIT\.json: no file"),
    "not hparams": (["{study}/CBS.json"], r"not a `scalelab fit hparams` result"),
    "params": (["{study}/hparams.json", "--params", "0"], r"--params 0\.0: must be finite"),
    "seq_len": (["{tmp}/fit.json"], r"--seq-len: give the sequence length"),
    "level": (["{study}/hparams.json", "--level", "1.5"], r"level"),
}


@pytest.mark.parametrize("case", sorted(FIT_CASES) + [f"propose {c}" for c in PROPOSE_CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path, capsys):
    study = copy_study(tmp_path / "study", drop=())
    (tmp_path / "fit.json").write_text((FIXTURE / "hparams.json").read_text())
    paths = _bad_files(tmp_path) | {"study": study, "tmp": tmp_path}
    before = sorted(p for p in tmp_path.rglob("*"))
    if case.startswith("propose "):
        args, pattern = PROPOSE_CASES[case.removeprefix("propose ")]
        args = ["propose", "hparams", *args, "--out", "{tmp}/points.json"]
        if "--params" not in args:
            args += ["--params", "1e5"]
        args += ["--tokens", "2e6"]
    else:
        args, pattern = FIT_CASES[case]
        args = ["fit", "hparams", *args]
    code, out, err = cli([a.format(**paths) for a in args], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and not out
    assert re.search(pattern, lines[0].removeprefix("error: ")), lines[0]
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written


# ----------------------------------------------------------------------- report and W&B


def test_report_section_with_b_star_beside_the_cbs(fitted, tmp_path, capsys):
    root = shutil.copytree(fitted, tmp_path / "study_hparams", ignore=_no_wandb)
    points = root / "study_points.json"
    argv = ["propose", "hparams", root / "hparams.json", "--params", 1e5, "--tokens", 2e6]
    assert cli([*argv, "--out", points], capsys)[0] == 0
    page = Page(sl.write_report(root).read_text())
    fit = sl.HparamsFit.load(root / "hparams.json")
    assert "Optimal peak LR and batch size" in page.headings
    cells = page.table("hparams-cells")
    head, body = cells[0], cells[1:]
    assert head[:4] == ["cell", "N", "D", "lr*"] and len(body) == len(fit.cells) == 9
    for row, c in zip(body, fit.cells, strict=True):
        assert row[0] == c["label"]
        assert float(row[head.index("lr*")]) == pytest.approx(c["lr_opt"], rel=1e-4)
        assert float(row[head.index("B* hi")]) == pytest.approx(c["batch_interval"][1], rel=1e-4)
        assert row[head.index("lr status")] == c["lr_status"]
    laws = {(r[0], r[1]): r for r in page.table("hparams-laws")[1:]}
    assert float(laws[("lr~ND", "N")][2]) == pytest.approx(fit.params["lr~ND.N"], rel=1e-4)
    assert float(laws[("batch~ND", "D")][4]) == pytest.approx(
        fit.intervals["batch~ND.D"][1], rel=1e-4
    )
    assert "NON_IDENTIFIABLE" in {r[1] for k, t in page.tables if k == "diagnostics" for r in t}
    assert curvature_text(fit) in (root / "report.html").read_text()
    assert page.images[KNOWN["hparams.json"]]  # the figure written beside the JSON
    # the CBS of the same (N, D), in tokens (x seq_len), and B*/CBS
    cbs = sl.CBSResult.load(root / "CBS.json")
    rows = page.table("hparams-cbs")
    head = rows[0]
    for row, c in zip(rows[1:], fit.cells, strict=True):
        g = next(g for g in cbs.groups if g.group == row[head.index("CBS group")])
        assert (g.params, g.tokens) == (c["params"], c["tokens"])
        ratio = c["batch_opt"] / (g.cbs * SEQ)
        assert float(row[head.index("B*/CBS")]) == pytest.approx(ratio, rel=1e-4)
    growth = {r[0]: r for r in page.table("hparams-growth")[1:]}
    assert float(growth["B* (hparams fit)"][2]) == pytest.approx(fit.params["batch~ND.D"], 1e-4)
    assert float(growth["CBS (critical batch fit)"][2]) > 0  # grows with D
    # the hparams fit has its own section, not a second copy among the other fits
    fits = [r[0] for k, t in page.tables if k == "fit" for r in t]
    assert "lr~ND.N" not in fits and "cbs[6K/D=1.31e+05]" in fits
    # a proposal written into the folder is shown with the other results, with its interval
    assert any(h.startswith(KNOWN["study_points.json"]) for h in page.headings)
    rows = {r[0]: r for k, t in page.tables if k == "fit" for r in t}
    proposal = json.loads(points.read_text())
    assert float(rows["lr"][1]) == pytest.approx(proposal["params"]["lr"], rel=1e-4)
    assert float(rows["batch"][3]) == pytest.approx(proposal["intervals"]["batch"][1], rel=1e-4)
    # no CBS fit in the folder: the same section without the comparison
    (root / "CBS.json").unlink()
    page = Page(sl.write_report(root).read_text())
    assert "Optimal peak LR and batch size" in page.headings
    assert len(page.table("hparams-cells")) == 10
    assert not [k for k, _ in page.tables if k in ("hparams-cbs", "hparams-growth")]


def _no_wandb(folder, names):
    return [n for n in names if n == "wandb"]


def test_the_wandb_analysis_run_holds_the_fit(fitted):
    root = fitted
    (run,) = offline_runs(root)
    assert run.config["reason"] == "fit" and run.run.job_type == "analysis"
    fit = json.loads((root / "hparams.json").read_text())
    for key in ("lr~ND.N", "lr~ND.D", "batch~ND.D", "curvature.lr"):
        assert run.summary[f"fits/hparams/params/{key}"] == pytest.approx(fit["params"][key])
    assert run.summary["fits/hparams/interval/lr~ND.N"] == pytest.approx(
        fit["intervals"]["lr~ND.N"]
    )
    assert run.summary["fits/hparams/n_diagnostics"] == len(fit["diagnostics"])
    cells = run.table("tables/hparams/cells")
    assert cells["columns"][:4] == ["cell", "N", "D", "lr*"] and len(cells["data"]) == 9
    got = {r[0]: r[3] for r in cells["data"]}
    assert got == pytest.approx({c["label"]: c["lr_opt"] for c in fit["cells"]})
    laws = run.table("tables/hparams/laws")
    assert ["lr~ND", "N"] in [r[:2] for r in laws["data"]]
    image = run.logged("plots/hparams")
    assert image["_type"] == "image-file" and run.file(image["path"]).stat().st_size > 20_000
    (art,) = [a for a in run.artifacts if a.type == "study-results"]
    staged = [e.path for e in art.manifest.contents]
    assert staged.count("fits/hparams.json") == 1 and "fits/CBS.json" in staged
    assert run.summary["fits/CBS/n_diagnostics"] >= 0  # the study's other fits are there too
