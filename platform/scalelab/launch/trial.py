"""What runs inside a Tune trial: a bundle of one-worker trials, one after another in the trial
process, or one multi-worker trial through a TorchTrainer."""

from __future__ import annotations

from pathlib import Path

from scalelab import status
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


def _run_bundle(items: list[dict]) -> None:
    """Train each trial of the bundle in this process. A trial that fails does not stop the
    others; the bundle then raises, Tune retries it, and the retry skips what finished."""
    from scalelab.train import train

    failed = []
    for cfg in items:
        trial = Trial.from_json(cfg["spec"])
        if status.is_done(Path(cfg["dir"]), trial.content_hash()):
            continue  # a retried bundle: this one finished before
        try:
            train(
                trial,
                cfg["dir"],
                wandb_mode=cfg["wandb"],
                flush_curve=cfg["asha"],
                record_extra={"driver_node": cfg["driver_node"]},
                on_log=_report_to_tune if cfg["asha"] else None,
                fork_steps=cfg.get("fork_steps", ()),
                fork_from=cfg.get("fork_from"),
            )
        except Exception as e:  # trial.json already says failed, with the error
            failed.append(f"{trial.name}: {type(e).__name__}: {e}")
        finally:
            _release_memory()  # the actor runs the next trial
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(items)} trials failed: " + "; ".join(failed))


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
        record_extra={"driver_node": cfg["driver_node"], "rank_nodes": _rank_nodes()},
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
