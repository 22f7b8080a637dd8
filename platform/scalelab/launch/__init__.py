"""Run a study on Ray Tune: `run(spec)`. One job per module: folders.py (where a study writes),
ray_session.py (the Ray it runs on), resources.py (what fits at once), driver.py (the Tune
driver), trial.py (what runs inside a trial)."""

from scalelab.launch.driver import run
from scalelab.launch.folders import is_done, study_dir, trial_dir, write_study_json
from scalelab.launch.resources import bundles, concurrency, footprint

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
