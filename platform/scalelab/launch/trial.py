"""What runs inside a Tune trial: a bundle of one-worker trials, one after another in the trial
process, or one multi-worker trial through a TorchTrainer. A branch of a shared prefix first
waits for its trunk's fork checkpoint (launch/forks.py says why this cannot deadlock)."""

from __future__ import annotations

import time
from pathlib import Path

from scalelab import checkpoint, status
from scalelab.config import Trial


def _report_to_tune(row: dict) -> None:
    """tune.report, then honour a scheduler's stop (Tune sets the session's stop event)."""
    from ray import tune
    from ray.train._internal.session import get_session

    from scalelab.train import Stopped

    tune.report({k: v for k, v in row.items() if v is not None})
    session = get_session()
    if session is not None and session.stop_event.is_set():
        raise Stopped(f"stopped early by the scheduler at step {row['step']}")


def _trial_fn(config: dict) -> None:
    """Tune function trainable: a bundle of one-worker trials run here one after another, or
    one multi-worker trial through a TorchTrainer."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    bundle = config["trial"]
    shared = {k: v for k, v in bundle.items() if k != "trials"}
    items = [{**shared, **item, "driver_node": node} for item in bundle["trials"]]
    if Trial.from_json(items[0]["spec"]).run.workers == 1:
        _run_bundle(items)
        return
    cfg = items[0]
    if not _await_fork(cfg):
        return  # its trunk ended before the fork: the driver takes it from here
    trial = Trial.from_json(cfg["spec"])
    spec, run = trial.spec, trial.run
    from ray import train as ray_train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        _worker_fn,
        train_loop_config=cfg,
        scaling_config=ray_train.ScalingConfig(
            num_workers=run.workers,
            use_gpu=run.gpus_per_worker > 0,
            resources_per_worker={
                "CPU": run.cpus_per_worker,
                **({"GPU": run.gpus_per_worker} if run.gpus_per_worker else {}),
            },
        ),
        run_config=ray_train.RunConfig(
            name=spec.name,
            storage_path=cfg["storage"],
            callbacks=[TuneReportCallback()],
            failure_config=ray_train.FailureConfig(max_failures=cfg["max_failures"]),
        ),
    )
    trainer.fit()
    _drop_fork(cfg)


def _run_bundle(items: list[dict]) -> None:
    """Train each trial of the bundle in this process. A trial that fails does not stop the
    others; the bundle then raises, Tune retries it, and the retry skips what finished."""
    from scalelab.train import train

    failed = []
    for cfg in items:
        trial = Trial.from_json(cfg["spec"])
        if status.is_done(Path(cfg["dir"]), trial.content_hash()):
            continue  # a retried bundle: this one finished before
        if not _await_fork(cfg):
            continue  # its trunk ended before the fork: the driver takes it from here
        try:
            train(
                trial,
                cfg["dir"],
                wandb_mode=cfg["wandb"],
                flush_curve=cfg["asha"],
                record_extra={"driver_node": cfg["driver_node"], "launch_id": cfg["launch_id"]},
                on_log=_report_to_tune if cfg["asha"] else None,
                fork_steps=cfg.get("fork_steps", ()),
                fork_from=cfg.get("fork_from"),
            )
            _drop_fork(cfg)
        except Exception as e:  # trial.json already says failed, with the error
            failed.append(f"{trial.name}: {type(e).__name__}: {e}")
        finally:
            _release_memory()  # the actor runs the next trial
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(items)} trials failed: " + "; ".join(failed))


POLL_S = 0.25  # how often a waiting branch looks for its trunk's fork checkpoint


def _await_fork(cfg: dict) -> bool:
    """Wait until the trunk of a branch has written its fork checkpoint (meta.json is written
    last), then start from it (cfg["fork_from"]). True to train, False to step aside: the
    trunk's record from this launch says it diverged or failed before the fork. A trunk that
    passed the fork with no checkpoint there (one lost by hand) leaves the prefix to train."""
    wait = cfg.get("fork_wait")
    if not wait:
        return True
    ready = Path(wait["path"]) / "meta.json"
    while True:
        rec = status.read_record(Path(wait["trunk_dir"])) or {}
        if ready.is_file():  # looked at after the record: a checkpoint then a final status
            cfg["fork_from"] = {k: wait[k] for k in ("path", "trial", "content_hash", "step")}
            return True
        if rec.get("launch_id") == wait["launch_id"]:  # not a record left by an earlier run
            st, at = rec.get("status"), rec.get("diverged_step")
            if st in ("completed", "stopped") or (st == "diverged" and (at or 0) > wait["step"]):
                return True
            if st in ("failed", "diverged"):
                return False
        time.sleep(POLL_S)


def _drop_fork(cfg: dict) -> None:
    """Remove the fork checkpoint this branch started from once every branch of that fork is
    done (the driver's end-of-run cleanup catches any a crash left behind)."""
    fork, kids = cfg.get("fork_from"), cfg.get("fork_siblings")
    if fork and kids and all(status.is_done(Path(k["dir"]), k["content_hash"]) for k in kids):
        path = Path(fork["path"])
        checkpoint.clear_fork(path.parent.parent, fork["step"])


def _release_memory() -> None:
    """Between two trials of one runner: hand the finished trial's GPU memory back. A full
    gc.collect() costs ~0.13 s with torch, Ray and W&B loaded (half the gap between two short
    trials), and on CPU reference counting has already freed the trial: only CUDA needs it."""
    import gc

    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def _worker_fn(cfg: dict) -> None:
    """Ray Train worker: every rank trains; rank 0 writes; every rank reports (V2 contract)."""
    from ray import train as ray_train

    from scalelab.train import train

    train(
        Trial.from_json(cfg["spec"]),
        cfg["dir"],
        wandb_mode=cfg["wandb"],
        record_extra={
            "driver_node": cfg["driver_node"],
            "launch_id": cfg["launch_id"],
            "rank_nodes": _rank_nodes(),
        },
        on_log=lambda row: ray_train.report({k: v for k, v in row.items() if v is not None}),
        fork_steps=cfg.get("fork_steps", ()),
        fork_from=cfg.get("fork_from"),
    )


def _rank_nodes() -> list[str]:
    """The Ray node of every rank, in rank order (Ray has set up the process group)."""
    import ray
    import torch
    import torch.distributed as dist
    from ray.train.torch import get_device

    if torch.cuda.is_available():  # NCCL gathers objects through the current device
        torch.cuda.set_device(get_device())
    nodes = [None] * dist.get_world_size()
    dist.all_gather_object(nodes, ray.get_runtime_context().get_node_id())
    return nodes
