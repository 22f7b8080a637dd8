"""Resource planning: what one trial holds, how many fit at once, and which one-worker trials
share a Tune trial (bundles)."""

from __future__ import annotations

from scalelab.config import SpecError, Trial


def footprint(trial: Trial) -> dict[str, float]:
    """Logical resources one trial holds: the trial actor plus its Train workers, if any."""
    r = trial.run
    if r.workers == 1:
        return {"CPU": r.cpus_per_worker, "GPU": r.gpus_per_worker}
    return {"CPU": 1 + r.workers * r.cpus_per_worker, "GPU": r.workers * r.gpus_per_worker}


def concurrency(trials: list[Trial], resources: dict, driver: dict | None = None) -> int:
    """Trials that fit at once, from the cluster's resources and the largest trial footprint
    (each trial actor also holds `driver`, the study's custom driver_resources).

    Counted in Ray's units of 1/10,000 (it rounds fractions to 4 decimals): in floats
    1 // 0.2 is 4.0, while Ray fits 5 trials of 0.2 GPU on one GPU; 1 GPU / 0.25 = 4 trials.
    """
    fits = []
    need_all = {k: max((footprint(t)[k] for t in trials), default=0) for k in ("CPU", "GPU")}
    need_all.update(driver or {})
    for kind, need in need_all.items():
        if need > 0:
            fits.append(_ray_units(resources.get(kind, 0)) // _ray_units(need))
    n = min(fits) if fits else 1
    if n < 1:
        short = [k for k, v in need_all.items() if v > 0 and resources.get(k, 0) < v]
        raise SpecError(
            f"resources: no node can hold one trial: it needs {', '.join(short)} = "
            f"{', '.join(str(need_all[k]) for k in short)}, the cluster has "
            f"{', '.join(str(resources.get(k, 0)) for k in short)}; lower gpus_per_worker / "
            "cpus_per_worker / driver_resources, or add nodes that provide them"
        )
    return n


def _ray_units(x: float) -> int:
    return round(x * 10_000)


def check_devices(trials: list[Trial], resources: dict) -> None:
    """device='cuda' on a cluster with no GPU fails every trial: refuse it before any starts."""
    if resources.get("GPU", 0) == 0 and any(t.run.device == "cuda" for t in trials):
        raise SpecError(
            "device: 'cuda' but the cluster has no GPU; use device='auto' (CUDA when there "
            "is one) or 'cpu', or run on GPU nodes"
        )


BUNDLE_WAVES = 4  # bundles per slot: enough to balance the load, few Tune round trips


def bundles(pending: list[Trial], slots: int, asha: bool) -> list[list[Trial]]:
    """Groups of one-worker trials that one Tune trial runs back to back (one runner process
    keeps torch, the data and W&B loaded; no Tune round trip between them). About
    BUNDLE_WAVES bundles per slot, each a stride through the list so long and short trials
    mix. Multi-worker trials and studies under ASHA (which stops trials one by one) are not
    bundled."""
    if asha:
        return [[t] for t in pending]
    groups: dict[tuple, list[Trial]] = {}
    alone = []
    for t in pending:
        if t.run.workers == 1:
            groups.setdefault((t.run.cpus_per_worker, t.run.gpus_per_worker), []).append(t)
        else:
            alone.append([t])
    out = []
    for group in groups.values():
        k = max(1, min(len(group), BUNDLE_WAVES * slots))
        out += [group[i::k] for i in range(k)]
    return out + alone


def _trial_resources(config: dict) -> dict:
    """The trial actor's own resources; a multi-worker trial's Train workers ask for theirs."""
    cfg = config["trial"]
    r = Trial.from_json(cfg["trials"][0]["spec"]).run  # a bundle's trials share a footprint
    own = {"cpu": r.cpus_per_worker, "gpu": r.gpus_per_worker} if r.workers == 1 else {"cpu": 1}
    return {**own, **cfg["driver_resources"]}
