"""results.collect on hand-made trial folders: schema, stale folders, lazy scan of curves."""

from __future__ import annotations

import polars as pl
import pytest

from scalelab import files, results
from scalelab.config import Trial, TrialSpec
from scalelab.train.recorder import new_record


def _trial(root, name: str, steps: int, status: str = "completed") -> None:
    d = root / "trials" / name
    rows = [
        {
            "step": s,
            "tokens": s * 64,
            "lr": 1e-3,
            "train_loss": 3.0 / s,
            "eval_loss": None,
            "ewa_eval_loss": None,
            "grad_norm": 1.0,
            "noise_scale": None,
            "tokens_per_s": 1e4,
            "elapsed_s": s * 0.1,
        }
        for s in range(1, steps + 1)
    ]
    files.write_parquet(d / "curve.parquet", files.curve_frame(rows))
    rec = new_record(Trial(TrialSpec(name=name, total_steps=steps)))
    rec |= {"status": status, "seq_len": 64, "params": {"total": 100, "non_embedding": 90}}
    files.write_json(d / "trial.json", rec | {"steps_done": steps, "final_eval_loss": 1.0})


def test_collect_takes_the_trials_of_the_current_study_only(tmp_path):
    _trial(tmp_path, "a", 5)
    _trial(tmp_path, "b", 7, status="diverged")
    _trial(tmp_path, "old", 3)  # a grid point edited away since
    files.write_json(
        tmp_path / "study.json", {"name": "s", "trials": [{"name": "a"}, {"name": "b"}]}
    )
    with pytest.warns(UserWarning, match="ignoring 1 trial folder"):
        runs, curves = results.collect(tmp_path)
    assert sorted(runs["trial"]) == ["a", "b"]
    assert dict(zip(runs["trial"], runs["status"], strict=True)) == {
        "a": "completed",
        "b": "diverged",
    }
    assert curves.group_by("trial").len().sort("trial")["len"].to_list() == [5, 7]
    assert curves.columns[0] == "trial" and "noise_scale" in curves.columns
    assert pl.read_parquet(tmp_path / "runs.parquet").equals(runs)
    assert runs["spec.total_steps"].to_list() == [5, 7]  # every spec field is a column
