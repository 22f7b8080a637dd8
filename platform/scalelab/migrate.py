"""`scalelab migrate DIR`: convert a results folder written before the identity/placement split.

Old trial.json records hashed placement (workers, device, log_every, ...) with the experiment,
so the trial names and hashes of the new code differ. Migration recomputes nothing: for every
old trial folder it splits the recorded spec into TrialSpec + RunConfig, finds the trial of the
study with the same identity hash, renames the folder to that trial's name and rewrites its
trial.json (spec, run, grid point, new hash; the old name is kept as `migrated_from`). Curves,
knowledge files, checkpoints and W&B folders stay as they are. Then study.json and the tables
are rewritten. The study comes from DIR/study.json (its recorded sweep), or from a study file.
Rename first, rewrite second: a migration cut short is finished by running it again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from scalelab import files, status
from scalelab.config import RUN_FIELDS, RunConfig, SpecError, Trial, TrialSpec
from scalelab.launch import write_study_json
from scalelab.sweep import SweepSpec, expand


def legacy_trial(spec: dict, device: str = "") -> Trial:
    """Old spec dict (placement inside) -> Trial. Old code trained in bf16 on CUDA."""
    ident = {k: v for k, v in spec.items() if k not in RUN_FIELDS}
    ident.setdefault("precision", "bf16" if device.startswith("cuda") else "fp32")
    run = {k: spec[k] for k in RUN_FIELDS if k in spec}
    return Trial(TrialSpec.from_dict(ident), RunConfig.from_dict(run))


def sweep_from_record(rec: dict) -> SweepSpec:
    """The SweepSpec that study.json recorded (either layout)."""
    sweep = dict(rec["sweep"])
    base = sweep.pop("base")
    if "run" in sweep:  # already the new layout
        run = RunConfig.from_dict(sweep.pop("run"))
        base = TrialSpec.from_dict(base)
    else:
        t = legacy_trial(base)
        base, run = t.spec, t.run
    known = {f.name for f in dataclasses.fields(SweepSpec)}
    kwargs = {k: v for k, v in sweep.items() if k in known and k not in ("base", "run")}
    return SweepSpec(base=base, run=run, **kwargs)


def migrate(root: str | Path, study: SweepSpec | None = None) -> dict[str, list]:
    """Convert DIR in place. Returns {"renamed": [(old, new)], "unmatched": [old], "kept": [...]}."""
    root = Path(root)
    if not (root / "trials").is_dir():
        raise SpecError(f"migrate: {root} holds no trials/ folder; give a study results folder")
    if study is None:
        try:
            study = sweep_from_record(files.read_json(root / "study.json"))
        except (OSError, ValueError, KeyError) as e:
            raise SpecError(
                f"migrate: cannot read the sweep from {root / 'study.json'} ({e}); "
                "pass the study file with --study"
            ) from None
    trials = expand(study)
    by_hash = {t.content_hash(): t for t in trials}
    done: dict[str, list] = {"renamed": [], "unmatched": [], "kept": []}
    for tdir in sorted(p for p in (root / "trials").iterdir() if p.is_dir()):
        rec = status.read_record(tdir)
        if rec is None or not status.is_legacy(rec):
            done["kept"].append(tdir.name)
            continue
        old = legacy_trial(rec["spec"], str(rec.get("device", "")))
        target = by_hash.get(old.content_hash())
        if target is None:
            done["unmatched"].append(tdir.name)
            continue
        new_dir = root / "trials" / target.name
        if new_dir != tdir:
            if new_dir.exists():
                raise SpecError(
                    f"migrate: both {tdir.name} and {target.name} exist for one trial; "
                    "keep the one you want and remove the other"
                )
            tdir.rename(new_dir)
        files.write_json(new_dir / "trial.json", _new_record(rec, target))
        done["renamed"].append((tdir.name, target.name))
    write_study_json(root, study, trials)
    from scalelab import results

    results.collect(root)
    return done


def _new_record(rec: dict, trial: Trial) -> dict:
    out = {k: v for k, v in rec.items() if k not in ("spec", "name")}
    out.update(
        format=status.FORMAT,
        name=trial.name,
        spec=trial.spec.to_dict(),
        run=trial.run.to_dict(),
        grid=trial.spec.grid,
        content_hash=trial.content_hash(),
        migrated_from=rec.get("name"),
    )
    return out
