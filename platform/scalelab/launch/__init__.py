"""Run a study on Ray Tune: `run(spec)`, and the study-folder helpers callers use."""

from scalelab.launch.driver import (
    bundles,
    concurrency,
    footprint,
    is_done,
    run,
    study_dir,
    trial_dir,
    write_study_json,
)

__all__ = [
    "bundles",
    "concurrency",
    "footprint",
    "is_done",
    "run",
    "study_dir",
    "trial_dir",
    "write_study_json",
]
