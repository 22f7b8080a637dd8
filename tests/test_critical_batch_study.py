"""experiments/critical_batch.py: the presets expand to the intended design, and its analysis
recovers a known B_crit from synthetic curves that obey McCandlish et al.'s S(B) law.

No training here: the study itself is run by `scalelab run experiments/critical_batch.py`.
"""

import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from scalelab.model import SIZES, model_args, param_counts
from scalelab.study import load
from scalelab.sweep import expand

STUDY = Path(__file__).resolve().parents[1] / "experiments" / "critical_batch.py"


@pytest.fixture(scope="module")
def study():
    return load(STUDY)


def _fields(trial):
    """A trial's spec and run fields side by side (the tests read both)."""
    return SimpleNamespace(
        **{f.name: getattr(trial.spec, f.name) for f in dataclasses.fields(trial.spec)},
        **{f.name: getattr(trial.run, f.name) for f in dataclasses.fields(trial.run)},
    )


def test_quick_preset_is_the_design(study):
    d = study.QUICK
    trials = [_fields(t) for t in expand(study.SPEC)]
    assert study.PRESETS["quick"] is study.SPEC
    # 2 sizes x 6 batch sizes x 3 LRs, one run each (every D is read off the same runs)
    assert len(trials) == 2 * 6 * 3
    assert {t.model.size for t in trials} == {"50K", "150K"}
    assert sorted({t.batch_size for t in trials}) == [4, 8, 16, 32, 64, 128]
    for t in trials:
        assert t.schedule.name == "constant" and t.data.name == "pcfg" and t.seq_len == 64
        assert 0 < t.ewa_decay < 1 and t.noise_every == 5 and t.cpus_per_worker == 1
        assert t.schedule.warmup_steps < t.total_steps / 10  # a short warmup
        lr_grid = sorted(
            x.optim.lr for x in trials if (x.model, x.batch_size) == (t.model, t.batch_size)
        )
        assert len(lr_grid) == 3 and lr_grid[2] / lr_grid[0] == pytest.approx(10, rel=0.12)
        tokens = t.total_steps * t.batch_size * 64
        if t.batch_size == d.ref_batch:
            # B_ref runs are exactly D_max long, with an eval at every D (the targets)
            assert tokens == max(d.data_sizes) == 1_280_000
            for dd in d.data_sizes:
                assert (dd // (4 * 64)) % t.eval_every == 0
        else:
            # bigger batches get (1 + B/knee)/(1 + 4/knee) x 1.3 more tokens, ~80 evals
            grow = 1.3 * (1 + t.batch_size / 48) / (1 + 4 / 48)
            assert tokens == pytest.approx(1_280_000 * grow, abs=t.batch_size * 64)
            assert 60 <= t.total_steps / t.eval_every <= 100
    # 150K LRs: 3e-4..3e-3 at B = 4 (centre 3e-3·sqrt(4/16) -> 1e-3), 1e-3..1e-2 from B = 16
    assert study.lrs(d, "150K", 4) == [3e-4, 1e-3, 3e-3]
    assert study.lrs(d, "150K", 64) == [1e-3, 3e-3, 1e-2]
    assert study.lrs(d, "50K", 64) == [3e-3, 1e-2, 3e-2]


def test_cluster_preset_expands_on_gpus(study):
    trials = [_fields(t) for t in expand(study.PRESETS["cluster"])]
    assert len(trials) == 3 * 7 * 3
    assert {t.model.size for t in trials} == {"20M", "50M", "124M"}
    assert sorted({t.batch_size for t in trials}) == [32, 64, 128, 256, 512, 1024, 2048]
    for t in trials:
        assert t.gpus_per_worker == 1 and t.precision == "bf16" and t.seq_len == 512
        assert t.data.name == "tokens"
    ref = [t for t in trials if t.batch_size == 32]
    assert {t.total_steps * 32 * 512 for t in ref} == {max(study.CLUSTER.data_sizes)}


def test_design_errors(study):
    from dataclasses import replace

    with pytest.raises(ValueError, match="data_sizes: 1000 is not a multiple"):
        study.sweep(replace(study.QUICK, data_sizes=(1000,)))
    with pytest.raises(ValueError, match="batch_sizes"):
        study.sweep(replace(study.QUICK, batch_sizes=(8, 4, 16)))
    with pytest.raises(ValueError, match="base_lr"):
        study.sweep(replace(study.QUICK, sizes=("500K",)))


def synthetic_study(study, root: Path, b_crit: dict[str, float]) -> None:
    """runs/curves tables for the quick design whose curves obey S(B) = S_min + E_min/B.

    Progress after s steps at batch B is the effective example count s·B/(1 + B/B_crit)
    (McCandlish et al. 2018, eq. 2.11); loss = 0.4 + 2·(1 + progress·q/50)^-0.5 with q = 1 at
    the LR-grid centre and 0.6 off it; the EWA loss equals the raw loss; B_simple is logged as
    B_crit + B (to see which run it is read from). Reaching any target then takes
    S(B) = E/B + E/B_crit steps: B_crit is the same at every D."""
    d = study.QUICK
    runs, curves = [], []
    for t in map(_fields, expand(study.SPEC)):
        grid = study.lrs(d, t.model.size, t.batch_size)
        q = 1.0 if t.optim.lr == grid[1] else 0.6
        s = np.arange(t.eval_every, t.total_steps + 1, t.eval_every)
        progress = s * t.batch_size / (1 + t.batch_size / b_crit[t.model.size])
        loss = 0.4 + 2 * (1 + progress * q / 50) ** -0.5
        n = param_counts(model_args(t.model.size, 6, 64))["non_embedding"]
        runs.append(
            dict(
                trial=t.name,
                status="completed",
                model=t.model.size,
                params=n,
                batch_size=t.batch_size,
                lr=t.optim.lr,
                tokens=t.total_steps * t.batch_size * 64,
                steps_done=t.total_steps,
            )
        )
        curves.append(
            pl.DataFrame(
                dict(
                    trial=t.name,
                    step=s,
                    tokens=s * t.batch_size * 64,
                    eval_loss=loss,
                    ewa_eval_loss=loss,
                    noise_scale=np.full(s.size, b_crit[t.model.size] + t.batch_size),
                )
            )
        )
    root.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(runs).write_parquet(root / "runs.parquet")
    pl.concat(curves).write_parquet(root / "curves.parquet")
    (root / "study.json").write_text(json.dumps({"name": d.name}))


def test_analysis_recovers_b_crit(study, tmp_path):
    truth = {"50K": 40.0, "150K": 60.0}
    synthetic_study(study, tmp_path, truth)
    study.analyse(tmp_path, study.QUICK, plots=False)  # after(root) = this + the figures
    doc = json.loads((tmp_path / "CBS.json").read_text())
    assert len(doc["groups"]) == 6  # 2 sizes x 3 data sizes
    assert {g["tokens"] for g in doc["groups"]} == set(study.QUICK.data_sizes)
    for g in doc["groups"]:
        bc = truth[g["group"].split("/")[0]]
        assert g["b_crit"] == pytest.approx(bc, rel=0.03)
        assert g["cbs"] == pytest.approx(1.2 * 4 + bc / 5, rel=0.03)
        assert g["noise_scale"] == pytest.approx(bc + 64)  # read from the B = 64 run
        # the target is the best loss at B_ref = 4 after D tokens (the centre LR)
        progress = g["tokens"] / 64 / (1 + 4 / bc)
        assert g["target"] == pytest.approx(0.4 + 2 * (1 + progress / 50) ** -0.5, rel=1e-9)
    # B_crit does not change with D here, so the fitted D exponent is ~0
    assert doc["scaling_b_crit"]["joint"]["b"] == pytest.approx(0.0, abs=0.02)
    # the per-D tables: B_ref runs cut at D, the others whole
    runs = pl.read_parquet(tmp_path / "cbs" / "runs.parquet")
    curves = pl.read_parquet(tmp_path / "cbs" / "curves.parquet")
    assert runs.height == 3 * 36
    ref = curves.filter(
        pl.col("trial").str.contains("-B4-") & pl.col("trial").str.ends_with("@D320000")
    )
    assert ref["step"].max() == 320_000 // 256
    md = (tmp_path / "CBS.md").read_text()
    row = next(x for x in md.splitlines() if x.startswith("| 147,904 | 1,280,000 |"))
    assert "| 124 | 108 |" in row  # B_simple at B = 64: 60 + 64; median over B >= 16: 60 + 48


def test_sizes_exist(study):
    for d in (study.QUICK, study.CLUSTER):
        assert set(d.sizes) <= set(SIZES)


def test_lr_at_edge_names_the_batch_sizes_whose_fastest_lr_ends_the_sweep():
    """T(B) is a minimum over the LRs swept: where the fastest LR is the sweep's highest (or
    lowest), a faster one may lie beyond it, and the fit says so at exactly those batch sizes
    (study_cbs: LRs 3e-3 and 1e-2 at every batch size, so every reached best is an edge)."""
    import scalelaws as sl

    fixture = Path(__file__).parent / "data" / "study_cbs" / "cbs"
    res = sl.fit_cbs(study=fixture, ref_batch=4, loss="ewa_eval_loss", n_boot=200)
    steps = pl.DataFrame(list(res.steps))
    runs = sl.load_study(fixture).runs
    swept = runs.group_by("batch_size").agg(hi=pl.col("lr").max(), lo=pl.col("lr").min())
    want = {}
    for row in steps.join(swept, on="batch_size").filter(pl.col("reached")).to_dicts():
        edge = "high" if row["lr"] == row["hi"] else "low" if row["lr"] == row["lo"] else None
        if edge:
            want.setdefault(row["group"], []).append(f"B = {row['batch_size']:g} ({edge} LR")
    got = {d.subject: d.message for d in res.diagnostics if d.code == "LR_AT_EDGE"}
    assert want and got.keys() == want.keys()
    for group, parts in want.items():
        assert all(p in got[group] for p in parts) and len(
            re.findall(r"\((?:high|low) LR ", got[group])
        ) == len(parts)
    # one LR per batch size: nothing to be beyond, no diagnostic
    one = sl.load_study(fixture)
    keep = one.runs.filter(pl.col("lr") == 3e-3)["trial"].to_list()
    solo = sl.Study(
        one.root,
        one.runs.filter(pl.col("trial").is_in(keep)),
        one.curves.filter(pl.col("trial").is_in(keep)),
    )
    res1 = sl.fit_cbs(study=solo, ref_batch=4, loss="ewa_eval_loss", n_boot=200)
    assert not [d for d in res1.diagnostics if d.code == "LR_AT_EDGE"]
