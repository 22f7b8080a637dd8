"""Paired differences over seeds for a closed loop (closed_loop.paired_differences): the
proposal's final loss minus each baseline's at the same seed, their mean and its t-interval,
on runs tables built from known numbers; and the report the schedules study writes from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from scipy import stats

import scalelaws as sl
from scalelaws.multipower.schedule import ScheduleProposal
from scalelaws.study.findings import find_results

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

SEEDS = [0, 1, 2, 3, 4]
# what each seed does to every schedule alike (init, data order): large against the effect
SEED_EFFECT = np.array([0.0, 0.02, -0.015, 0.03, -0.01])
NOISE = np.array([0.001, -0.002, 0.0015, -0.0005, 0.0])  # mean 0
COSINE = 0.52 + SEED_EFFECT
PROPOSED = COSINE - 0.01 + NOISE  # 0.01 better than cosine at every seed, give or take
WSD = PROPOSED + 0.0002 - 3 * NOISE[::-1]  # a hair worse than the proposal, lost in the noise


def runs_table(losses: dict[str, list], seeds=SEEDS, total_steps=1000, **status) -> pl.DataFrame:
    """One completed run per schedule and seed (status overrides per (schedule, seed)), in a
    shuffled row order: pairing must go by the seed column, not by position."""
    rows = [
        {
            "trial": f"{name}-s{s}",
            "schedule": name,
            "seed": s,
            "status": status.get(f"{name}_{s}", "completed"),
            "total_steps": total_steps,
            "final_eval_loss": float(v),
        }
        for name, vals in losses.items()
        for s, v in zip(seeds, vals, strict=True)
    ]
    order = np.random.default_rng(0).permutation(len(rows))
    return pl.DataFrame([rows[i] for i in order])


def scipy_interval(d, level=0.95) -> tuple[float, float]:
    """The t-interval of the mean of d, by scipy's one-sample t-test."""
    ci = stats.ttest_1samp(np.asarray(d), 0.0).confidence_interval(confidence_level=level)
    return float(ci.low), float(ci.high)


def codes(res) -> dict[tuple[str, str], object]:
    return {(d.code, d.subject): d for d in res.diagnostics}


def standard() -> pl.DataFrame:
    return runs_table({"array": PROPOSED, "cosine": COSINE, "wsd": WSD})


# --------------------------------------------------------------------------- the numbers


def test_mean_and_interval_of_the_paired_differences():
    res = sl.paired_differences(standard())
    assert isinstance(res, sl.PairedDifferences) and res.level == 0.95
    assert [c.baseline for c in res.comparisons] == ["cosine", "wsd"]
    cos = res.comparison("cosine")
    d = PROPOSED - COSINE
    assert cos.seeds == (0, 1, 2, 3, 4) and cos.n == 5
    assert cos.differences == pytest.approx(list(d), abs=1e-12)
    assert cos.mean == pytest.approx(-0.01, abs=1e-12)  # the noise has mean 0
    lo, hi = scipy_interval(d)
    assert (cos.lo, cos.hi) == pytest.approx((lo, hi), rel=1e-9)
    assert hi < 0 and cos.excludes_zero
    # an unpaired comparison of the same runs (Welch) cannot separate them: the seed spread
    welch = stats.ttest_ind(PROPOSED, COSINE, equal_var=False).confidence_interval()
    assert welch.low < 0 < welch.high
    # the convention fields and the table say the same
    assert res.params["proposed-cosine"] == cos.mean
    assert res.intervals["proposed-cosine"] == (cos.lo, cos.hi)
    assert res.metrics["proposed-cosine"]["n"] == 5
    assert res.metrics["proposed-cosine"]["sd"] == pytest.approx(np.std(d, ddof=1))
    row = res.table().row(0, named=True)
    assert row == {"comparison": "proposed − cosine", "mean": cos.mean, "lo": cos.lo} | {
        "hi": cos.hi,
        "n": 5,
        "excludes_zero": True,
    }
    assert ("NOT_SEPARATED", "cosine") not in codes(res)
    assert not any(d.code == "TOO_FEW_SEEDS" for d in res.diagnostics)


def test_the_level_sets_the_interval():
    d = PROPOSED - COSINE
    for level in (0.8, 0.99):
        c = sl.paired_differences(standard(), level=level).comparison("cosine")
        assert (c.lo, c.hi) == pytest.approx(scipy_interval(d, level), rel=1e-9)
    wide = sl.paired_differences(standard(), level=0.99).comparison("cosine")
    narrow = sl.paired_differences(standard(), level=0.8).comparison("cosine")
    assert wide.lo < narrow.lo and wide.hi > narrow.hi


def test_a_tiny_effect_against_the_noise_is_not_separated():
    res = sl.paired_differences(standard())
    wsd = res.comparison("wsd")
    d = PROPOSED - WSD
    assert wsd.mean == pytest.approx(-0.0002, abs=1e-12)
    assert (wsd.lo, wsd.hi) == pytest.approx(scipy_interval(d), rel=1e-9)
    assert wsd.lo < 0 < wsd.hi and not wsd.excludes_zero
    diag = codes(res)[("NOT_SEPARATED", "wsd")]
    assert diag.severity == "info" and "cannot separate" in diag.message
    assert "holds 0" in diag.message and "5 seeds" in diag.message
    assert [d.code for d in res.warnings] == []  # info only


def test_three_seeds_are_too_few():
    res = sl.paired_differences(
        runs_table({"array": PROPOSED[:3], "cosine": COSINE[:3], "wsd": WSD[:3]}, seeds=[0, 1, 2])
    )
    cos = res.comparison("cosine")
    assert cos.n == 3
    assert (cos.lo, cos.hi) == pytest.approx(scipy_interval((PROPOSED - COSINE)[:3]), rel=1e-9)
    for name in ("cosine", "wsd"):
        d = codes(res)[("TOO_FEW_SEEDS", name)]
        assert d.severity == "warning" and "3 paired seed(s), fewer than 5" in d.message
    assert sl.paired_differences(standard(), min_seeds=6).warnings  # the threshold is used


def test_one_seed_gives_a_mean_and_no_interval():
    res = sl.paired_differences(
        runs_table({"array": [0.5], "cosine": [0.51], "wsd": [0.49]}, seeds=[3])
    )
    cos = res.comparison("cosine")
    assert cos.mean == pytest.approx(-0.01) and cos.lo is None and cos.hi is None
    assert not cos.excludes_zero and "proposed-cosine" not in res.intervals
    assert "no interval" in codes(res)[("NOT_SEPARATED", "cosine")].message
    assert ("TOO_FEW_SEEDS", "cosine") in codes(res)


def test_unpaired_seeds_are_dropped_and_named():
    """Seed 5 of cosine failed; wsd has a seed 6 the proposal never ran."""
    losses = {"array": [*PROPOSED, 0.3], "cosine": [*COSINE, 0.9]}
    runs = runs_table(losses, seeds=[*SEEDS, 5], cosine_5="failed")
    wsd = runs_table({"wsd": [*WSD, 0.1]}, seeds=[*SEEDS, 6])
    res = sl.paired_differences(pl.concat([runs, wsd]))
    cos, w = res.comparison("cosine"), res.comparison("wsd")
    assert cos.seeds == w.seeds == (0, 1, 2, 3, 4)
    assert cos.mean == pytest.approx(-0.01, abs=1e-12)  # seed 5 would pull it far off
    assert (w.lo, w.hi) == pytest.approx(scipy_interval(PROPOSED - WSD), rel=1e-9)
    d = codes(res)[("UNPAIRED_SEEDS", "cosine")]
    assert d.severity == "warning" and "seed(s) [5] only in the proposal" in d.message
    d = codes(res)[("UNPAIRED_SEEDS", "wsd")]
    assert "seed(s) [5] only in the proposal" in d.message
    assert "seed(s) [6] only in 'wsd'" in d.message


def test_a_missing_baseline_is_said_and_the_other_compared():
    res = sl.paired_differences(runs_table({"array": PROPOSED, "cosine": COSINE}))
    assert [c.baseline for c in res.comparisons] == ["cosine"]
    assert "only in the proposal" in codes(res)[("UNPAIRED_SEEDS", "wsd")].message


def test_runs_of_another_budget_are_left_out():
    other = runs_table({"array": PROPOSED, "cosine": COSINE + 1.0}, total_steps=1500)
    runs = pl.concat([standard(), other.filter(pl.col("schedule") == "cosine")])
    res = sl.paired_differences(runs)
    assert res.info["total_steps"] == 1000
    assert res.comparison("cosine").mean == pytest.approx(-0.01, abs=1e-12)
    both = pl.concat([standard(), other])
    with pytest.raises(ValueError, match=r"total_steps \[1000, 1500\]; pass total_steps="):
        sl.paired_differences(both)
    long = sl.paired_differences(both, total_steps=1500).comparison("cosine")
    assert long.mean == pytest.approx(-1.01, abs=1e-12)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda r: r.drop("seed"), "no column 'seed'"),
        (lambda r: r.drop("status"), "no column 'status'"),
        (lambda r: r.drop("schedule"), "no column 'schedule'"),
        (lambda r: r.drop("final_eval_loss"), r"no column 'final_eval_loss' \(the loss compared"),
        (lambda r: r.filter(pl.col("schedule") != "array"), "no completed run of schedule 'array'"),
        (
            lambda r: r.with_columns(status=pl.lit("failed")),
            "no completed run of schedule 'array'",
        ),
        (lambda r: pl.concat([r, r.head(1)]), "more than one completed run at seed"),
        (lambda r: r.to_dicts(), "a Polars DataFrame is needed"),
    ],
)
def test_bad_input_gets_one_line_naming_the_column_and_the_fix(change, match):
    with pytest.raises(ValueError, match=match) as e:
        sl.paired_differences(change(standard()))
    assert "\n" not in str(e.value) and ";" in str(e.value)  # what, then the fix


def test_bad_level_or_no_pairs_get_one_line():
    with pytest.raises(ValueError, match="level=1.5"):
        sl.paired_differences(standard(), level=1.5)
    lonely = pl.concat(
        [
            runs_table({"array": PROPOSED[:2]}, seeds=[0, 1]),
            runs_table({"cosine": COSINE[:2]}, seeds=[7, 8]),
        ]
    )
    with pytest.raises(ValueError, match="no seed of 'array' pairs") as e:
        sl.paired_differences(lonely)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="no column 'loss'"):
        sl.paired_differences(standard(), loss="loss")


# --------------------------------------------------------------------------- files


def test_json_round_trip_and_findings_pick_it_up(tmp_path):
    res = sl.paired_differences(standard())
    res.to_json(tmp_path / "closed_loop.json")
    back = sl.PairedDifferences.load(tmp_path / "closed_loop.json")
    assert back.comparisons == res.comparisons and back.diagnostics == res.diagnostics
    assert back.intervals == res.intervals and back.info == res.info
    (found,) = find_results(tmp_path)
    assert found.kind == "PairedDifferences" and "paired by seed" in found.title
    rows = {r[0]: r[1:] for r in found.param_rows()}
    c = res.comparison("cosine")
    assert rows["proposed-cosine"] == pytest.approx((c.mean, c.lo, c.hi))
    assert found.metrics()["proposed-wsd.n"] == 5.0


def test_the_schedules_study_writes_the_paired_table(tmp_path):
    from scalelab.study import load

    module = load(EXPERIMENTS / "schedules.py")
    assert module.SEEDS == [0, 1, 2, 3, 4]
    m = {"r2": 0.99, "mae": 0.004, "pred_e": 0.007, "worst_e": 0.03}
    fit = SimpleNamespace(metrics={"fit": m, "test": m})
    prop = ScheduleProposal(
        lr=np.full(module.STEPS, 1e-3),
        predicted_final_loss=0.50,
        baselines={"cosine": {"predicted_final_loss": 0.52}, "wsd": {"predicted_final_loss": 0.5}},
        total_steps=module.STEPS,
    )
    report = module.write_closed_loop(tmp_path, fit, prop, standard())
    assert (tmp_path / "report.md").read_text() == report
    res = sl.paired_differences(standard())
    c, w = res.comparison("cosine"), res.comparison("wsd")
    assert f"| proposed − cosine | -0.0100 | [{c.lo:+.4f}, {c.hi:+.4f}] | 5 | yes |" in report
    assert f"| proposed − best WSD | -0.0002 | [{w.lo:+.4f}, {w.hi:+.4f}] | 5 | no |" in report
    assert "- info NOT_SEPARATED (wsd)" in report
    assert "| proposed (MPL-optimal) | 0.5000 |" in report  # predicted vs measured stays
    saved = json.loads((tmp_path / "closed_loop.json").read_text())
    assert saved["kind"] == "PairedDifferences" and saved["params"] == res.params
    # no proposal runs: the report says why instead of failing the study, and keeps no
    # closed_loop.json of an earlier run
    only = standard().filter(pl.col("schedule") != "array")
    text = module.write_closed_loop(tmp_path, fit, prop, only)
    assert "No paired differences: runs: no completed run of schedule 'array'" in text
    assert not (tmp_path / "closed_loop.json").exists()


def test_the_schedules_study_holds_out_the_wsd_cooldown_family():
    from scalelab.study import load
    from scalelab.sweep import expand

    module = load(EXPERIMENTS / "schedules.py")
    specs = [t.spec for t in expand(module.SPEC)]
    runs = pl.DataFrame(
        [
            {"trial": s.name, "schedule": s.schedule.name, "total_steps": s.total_steps}
            for s in specs
        ]
    )
    fit = runs.filter(pl.sql_expr(module.WHERE))["trial"].to_list()
    test = runs.filter(pl.sql_expr(module.TEST_WHERE))["trial"].to_list()
    assert len(fit) == 3 and not set(fit) & set(test)
    cooldown = {
        (s.schedule.params["decay_frac"], s.schedule.params["shape"])
        for s in specs
        if s.name in test and s.schedule.name == "wsd"
    }
    family = {(f, s) for s in ("linear", "1-sqrt") for f in (0.1, 0.3, 0.5, 0.7, 0.9)}
    assert family <= cooldown and len(cooldown) == 12  # and the 20% linear and exp
    assert len(test) == 13  # every WSD and the 1.5x longer cosine
