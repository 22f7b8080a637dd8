"""Weights & Biases, all of it: trial runs (runs.py), the study's analysis run (analysis_run.py),
its saved view (dashboard.py) and the CLI's after-command hook (hooks.py)."""
