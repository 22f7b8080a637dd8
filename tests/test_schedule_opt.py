"""Schedule optimisation under the multi-power law: gradient, baselines, the paper's optimum."""

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from scalelab.commands import fit_app, propose_app
from scalelab.commands import multipower as _commands  # noqa: F401  (registers the commands)
from scalelaws import schedules
from scalelaws.multipower import schedule as sch
from scalelaws.multipower.law import predict

REF = Path(__file__).resolve().parents[2] / "shared" / "refdata" / "multipower"
PARAMS_400M = dict(L0=2.3747, A=0.6542, alpha=0.4288, B=523.42, C=2.0246, beta=0.5935, gamma=0.6347)
P, W, T = 3e-4, 2160, 24000


def test_final_loss_gradient_matches_finite_differences():
    lr = schedules.lr_array("wsd", P, 3000, 200, decay_steps=840, shape="cosine", final_lr=P / 10)
    lr[2500:2600] *= 0.9  # a non-monotone bump: the formula must hold for any schedule
    loss, grad = sch.final_loss_grad(PARAMS_400M, lr)
    assert loss == pytest.approx(sch.final_loss(PARAMS_400M, lr), rel=1e-13)
    for i in (0, 1, 150, 199, 200, 1200, 2100, 2500, 2599, 2600, 2998, 2999):
        h = 1e-9
        up, dn = lr.copy(), lr.copy()
        up[i] += h
        dn[i] -= h
        fd = (sch.final_loss(PARAMS_400M, up) - sch.final_loss(PARAMS_400M, dn)) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-6), i


def test_baseline_schedules_are_the_registrys_and_follow_the_refdata_formulas():
    s = np.arange(W, T)
    cos = sch.baseline_lr({"name": "cosine", "params": {"final_lr": 3e-5}}, T, W, P)
    np.testing.assert_allclose(cos[:W], np.linspace(0, P, W))
    np.testing.assert_allclose(
        cos[W:], 3e-5 + (P - 3e-5) / 2 * (1 + np.cos(np.pi * (s - W) / (T - W)))
    )
    # refdata wsd_20000_24000: 3e-4 until 20000, then P^((24000−s)/4000)·E^((s−20000)/4000)
    params = sch.wsd_params(T, W, 4000 / (T - W), "exp", 3e-5)
    assert params == {"decay_steps": 4000, "shape": "exp", "final_lr": 3e-5}
    wsd = sch.baseline_lr({"name": "wsd", "params": params}, T, W, P)
    t = np.arange(20000, T)
    np.testing.assert_allclose(wsd[W:20000], P)
    np.testing.assert_allclose(
        wsd[20000:], P ** ((24000 - t) / 4000) * 3e-5 ** ((t - 20000) / 4000)
    )
    # the best WSD is reported in the registry's terms and rebuilds to its predicted loss
    best = sch.best_wsd(PARAMS_400M, 4000, 300, P, 3e-5)
    assert set(best["params"]) == {"decay_steps", "shape", "final_lr"}
    assert best["shape"] == best["params"]["shape"] in schedules.WSD_SHAPES
    lr = schedules.lr_array("wsd", P, 4000, 300, **best["params"])
    assert sch.final_loss(PARAMS_400M, lr) == best["predicted_final_loss"]
    assert best["decay_fraction"] == best["params"]["decay_steps"] / 3700
    for shape in schedules.WSD_SHAPES:
        p = sch.wsd_params(T, W, 0.2, shape, 3e-5)
        lr = schedules.lr_array("wsd", P, T, W, **p)
        assert lr.size == T and np.all(np.diff(lr[W:]) <= 0)
        assert lr[-1] == pytest.approx(3e-5, rel=0.01) and lr[-1] > 3e-5
    # no floor: the exp shape (which needs final_lr > 0) is left out of the search
    assert sch.best_wsd(PARAMS_400M, 4000, 300, P, 0.0)["shape"] != "exp"


@pytest.mark.skipif(not REF.is_dir(), reason=f"reference data not found at {REF}")
def test_proposed_schedule_beats_the_papers_optimum_cosine_and_wsd():
    prop = sch.optimise_schedule(PARAMS_400M, T, W, P)
    lr = prop.lr
    assert lr.dtype == np.float64 and lr.size == T
    np.testing.assert_array_equal(lr[:W], np.linspace(0, P, W))
    assert np.all(np.diff(lr[W:]) <= 0) and lr[W] <= P and lr[-1] > 0
    assert prop.predicted_final_loss == pytest.approx(predict(PARAMS_400M, lr, [T])[0], rel=1e-12)

    paper = np.concatenate([np.linspace(0, P, W), np.load(REF / "optimized_schedules" / "400.npy")])
    assert paper.size == T
    paper_loss = sch.final_loss(PARAMS_400M, paper)
    b = prop.baselines
    assert prop.predicted_final_loss <= paper_loss
    assert prop.predicted_final_loss < b["wsd"]["predicted_final_loss"]
    assert b["wsd"]["predicted_final_loss"] < b["cosine"]["predicted_final_loss"]
    assert b["wsd"]["shape"] in sch.WSD_SHAPES and 0 < b["wsd"]["decay_fraction"] < 0.6
    # the optimum looks like the paper's: flat at peak for most steps, then a fast decay
    flat = np.mean(lr[W:] >= P * (1 - 1e-9))
    assert 0.75 < flat < 0.95 and lr[-1] < P / 50
    # the trainer's `array` schedule takes it as is
    np.testing.assert_array_equal(schedules.lr_array("array", P, T, 0, values=lr), lr)


def test_cli_propose_schedule(tmp_path):
    app = typer.Typer()
    app.add_typer(fit_app, name="fit")
    app.add_typer(propose_app, name="propose")
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps({"law": "multipower", "params": PARAMS_400M, "input_hash": "x"}))
    out, png = tmp_path / "sched.json", tmp_path / "sched.png"
    args = ["propose", "schedule", "--fit", str(fit), "--total-steps", "4000"]
    args += ["--warmup-steps", "300", "--peak-lr", "3e-4", "--out", str(out), "--plot", str(png)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    lr = np.array(doc["lr"])
    assert lr.size == 4000 and np.all(np.diff(lr[300:]) <= 0)
    assert doc["predicted_final_loss"] == pytest.approx(predict(PARAMS_400M, lr, [4000])[0])
    assert doc["predicted_final_loss"] < doc["baselines"]["wsd"]["predicted_final_loss"]
    assert doc["predicted_final_loss"] < doc["baselines"]["cosine"]["predicted_final_loss"]
    assert {"decay_fraction", "shape"} <= set(doc["baselines"]["wsd"])
    for name, b in doc["baselines"].items():  # registry terms: lr_array rebuilds each baseline
        blr = schedules.lr_array(b["name"], 3e-4, 4000, 300, **b["params"])
        assert b["predicted_final_loss"] == pytest.approx(predict(PARAMS_400M, blr, [4000])[0]), (
            name
        )
    assert png.stat().st_size > 10_000
    bad = tmp_path / "power.json"
    bad.write_text(json.dumps({"law": "power", "params": {"L0": 1, "A": 1, "alpha": 0.5}}))
    from scalelab.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(args[:2] + ["--fit", str(bad)] + args[4:])
    assert exit_.value.code == 2
