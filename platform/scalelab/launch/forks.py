"""Shared prefixes at run time (scalelab.prefix builds the tree): one Tuner runs every pending
trial, trunks first; a branch waits in its slot until its trunk's fork checkpoint exists and
starts from it while the trunk trains on. A trunk that ended before the fork ends its branches
with a status that says so, and fork checkpoints go once every branch is done
(docs/training.md, "Shared prefixes").

Why waiting in a slot cannot deadlock: Tune generates the trials in the grid's order and holds
at most `max_concurrent_trials` live at once, all of which fit (driver.concurrency), and the
grid lists every trunk's bundle before its branches' bundles. So whatever a waiting branch
waits on has started, and the trunks at the root of the tree wait on nothing.

A branch whose trunk checkpoint is missing or damaged trains its prefix itself: the same
numbers, only slower. A rerun rebuilds the tree from the specs: finished trials are skipped,
and a pending branch of a finished trunk forks from the checkpoint that is still on disk.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from scalelab import checkpoint, files, status
from scalelab.config import Trial
from scalelab.launch.folders import is_done, trial_dir
from scalelab.prefix import Fork, Plan


def waves(pending: list[Trial], plan: Plan) -> list[list[Trial]]:
    """`pending` by depth: a branch comes one level after its trunk when the trunk is pending;
    within a level, branches in their trunks' order, then by fork step."""
    names = {t.name for t in pending}

    def depth(name: str) -> int:
        f = plan.forks.get(name)
        return 0 if f is None or f.parent not in names else 1 + depth(f.parent)

    out: dict[int, list[Trial]] = {}
    for t in pending:
        out.setdefault(depth(t.name), []).append(t)
    levels, seen = [], {}
    for k in sorted(out):
        level = sorted(out[k], key=lambda t: _trunk_order(t, plan, seen))
        seen |= {t.name: i for i, t in enumerate(level)}
        levels.append(level)
    return levels


def _trunk_order(t: Trial, plan: Plan, seen: dict[str, int]) -> tuple[int, int]:
    f = plan.forks.get(t.name)
    return (seen.get(f.parent, -1), f.step) if f else (-1, 0)


def trained_steps(
    pending: list[Trial], plan: Plan, root: Path, by_name: dict[str, Trial]
) -> tuple[int, int]:
    """(updates this run trains, updates the pending trials would train from scratch)."""
    names = {t.name for t in pending}
    full = sum(t.spec.total_steps for t in pending)
    saved = 0
    for t in pending:
        f = plan.forks.get(t.name)
        if f and (f.parent in names or _fork_ready(root, f, by_name)):
            saved += f.step
    return full - saved, full


def fork_config(
    root: Path,
    trial: Trial,
    plan: Plan,
    by_name: dict[str, Trial],
    running: set[str] = frozenset(),
    launch_id: str = "",
    keep: bool = False,
) -> dict:
    """The trainer's fork arguments for `trial`: the steps to save a fork checkpoint at (for
    branches not done yet) and the trunk checkpoint to start from, when there is one. A branch
    whose trunk is among `running` (this Tuner's trials) gets `fork_wait`: the checkpoint to
    wait for, and the trunk's folder and launch id to tell when it ended without one. Unless
    `keep`, a branch also gets its fork's branches (`fork_siblings`): the last to finish removes
    the checkpoint, so disk stays bounded while the study runs."""
    steps = sorted(
        {
            f.step
            for f in plan.forks.values()
            if f.parent == trial.name and not is_done(root, by_name[f.name])
        }
    )
    cfg: dict = {"fork_steps": steps, "fork_from": None, "fork_wait": None}
    f = plan.forks.get(trial.name)
    if f is None:
        return cfg
    parent = by_name[f.parent]
    fork = {
        "path": str(_fork_path(root, f, by_name)),
        "trial": parent.name,
        "content_hash": parent.content_hash(),
        "step": f.step,
    }
    if not keep:
        cfg["fork_siblings"] = [
            {
                "dir": str(trial_dir(root, by_name[k.name])),
                "content_hash": by_name[k.name].content_hash(),
            }
            for k in plan.forks.values()
            if (k.parent, k.step) == (f.parent, f.step)
        ]
    if _fork_ready(root, f, by_name):
        cfg["fork_from"] = fork
    elif f.parent in running:
        cfg["fork_wait"] = {**fork, "trunk_dir": str(trial_dir(root, parent)),
                            "launch_id": launch_id}  # fmt: skip
    return cfg


def deferred(root: Path, left: list[Trial], plan: Plan, launch_id: str) -> list[Trial]:
    """Branches among `left` (not done after a Tuner) that never started: their trunk ended
    before the fork, so they stepped aside for the driver to end them or run them again."""
    out = []
    for t in left:
        rec = status.read_record(trial_dir(root, t)) or {}
        if t.name in plan.forks and rec.get("launch_id") != launch_id:
            out.append(t)
    return out


def _fork_path(root: Path, f: Fork, by_name: dict[str, Trial]) -> Path:
    """The trunk's checkpoint that branch `f` starts from."""
    return checkpoint.fork_path(trial_dir(root, by_name[f.parent]), f.step)


def _fork_ready(root: Path, f: Fork, by_name: dict[str, Trial]) -> bool:
    return (_fork_path(root, f, by_name) / "meta.json").is_file()  # written last: complete


def end_orphans(root: Path, todo: list[Trial], plan: Plan, by_name: dict[str, Trial]) -> list:
    """Branches in `todo` whose trunk is not in `todo` and ended before their fork step,
    leaving no checkpoint there: a trunk that diverged at or before it ends the branch as
    diverged at the same step (the branch's own updates up to there are the trunk's), with the
    trunk's curve up to it; a trunk that failed ends it as failed, saying so. Returns the
    trials still to run."""
    keep, names = [], {t.name for t in todo}
    for t in todo:
        f = plan.forks.get(t.name)
        if f is None or f.parent in names or _fork_ready(root, f, by_name):
            keep.append(t)
            continue
        pdir = trial_dir(root, by_name[f.parent])
        rec = status.read_record(pdir) or {}
        st, at = rec.get("status"), rec.get("diverged_step")
        if st == "diverged" and at is not None and at <= f.step:
            _write_branch(root, t, rec, "diverged", f, pdir, at)
        elif st in ("completed", "diverged", "stopped"):
            keep.append(t)  # the trunk passed the fork, its checkpoint is gone: train it all
        else:
            _write_branch(root, t, rec, "failed", f, pdir, None)
    return keep


def _write_branch(root, t: Trial, trunk: dict, st: str, f, pdir: Path, at) -> None:
    """trial.json (and for a divergence, curve.parquet) of a branch ended by its trunk."""
    from scalelab.train.recorder import new_record

    out = trial_dir(root, t)
    out.mkdir(parents=True, exist_ok=True)
    rec = new_record(t)
    facts = ("params", "flops_per_token", "shape", "seq_len", "data", "world_size", "device")
    rec |= {k: trunk[k] for k in facts if k in trunk}
    rec["forked_from"] = {"trial": f.parent, "content_hash": trunk.get("content_hash"),
                          "step": f.step}  # fmt: skip
    if st == "diverged":
        curve = pl.read_parquet(pdir / "curve.parquet").filter(pl.col("step") <= at)
        files.write_parquet(out / "curve.parquet", curve)
        evals = curve["eval_loss"].drop_nulls()
        rec |= {
            "status": "diverged",
            "error": f"diverged at step {at}, in the prefix it shares with {f.parent} "
            f"(trained once there; fork at step {f.step})",
            "diverged_step": at,
            "steps_done": at,
            "tokens_seen": at * t.spec.tokens_per_step,
            "final_eval_loss": evals[-1] if len(evals) else None,
            "best_eval_loss": evals.min() if len(evals) else None,
        }
    else:
        why = trunk.get("error") or f"ended {trunk.get('status', 'without a trial.json')}"
        rec |= {
            "status": "failed",
            "steps_done": 0,
            "error": f"its trunk {f.parent} failed before the fork at step {f.step}: {why} "
            "(rerun the study to retry both)",
        }
    files.write_json(out / "trial.json", rec)


def clean(root: Path, plan: Plan, by_name: dict[str, Trial]) -> int:
    """Remove every fork checkpoint whose branches are all done; returns how many went."""
    gone = 0
    for trunk, steps in plan.fork_steps.items():
        for step in steps:
            kids = [f.name for f in plan.forks.values() if f.parent == trunk and f.step == step]
            path = checkpoint.fork_path(trial_dir(root, by_name[trunk]), step)
            if path.exists() and all(is_done(root, by_name[k]) for k in kids):
                checkpoint.clear_fork(trial_dir(root, by_name[trunk]), step)
                gone += 1
    return gone
