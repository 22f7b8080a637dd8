"""Shared prefixes: which trials of a study agree on their first updates, and which trial trains
each shared stretch once (docs/training.md, "Shared prefixes").

Two trials share their first s updates when nothing that moves updates 1..s differs:

- the same identity apart from the schedule and total_steps (model, optimiser, data, batch,
  seq_len, seed, precision, ...; `trunk_key`),
- the same number-moving placement (`NUMERIC_RUN`: ranks, micro-batches, threads, the noise
  probe, the row and eval cadence, device, compile, activation checkpointing), because those
  change the gradient's summation order or the curve's rows,
- per-update LR arrays (TrialSpec.lr_array, the one schedule implementation) equal bit for
  bit for the first s updates.

The trials of one key form a trie over their LR arrays. At every branching point one child
path continues in the trial that trains it (the one with the most branchings below, so the
tree stays shallow; then the longest run; then the one keeping the higher LR) and every other
child forks: its trial starts from a checkpoint the
trunk saves at step s, and trains only its own updates. A fork is used when the shared stretch
is at least MIN_FORK_FRAC of the branch's steps (a few shared warmup steps are not worth a
checkpoint round trip and a scheduling wave). Every branch trains at least one update.

Example, the quickstart per model (600 steps): cosine shares only its 31 warmup updates
(< 10%: trains alone, 600); constant trains 600 and saves forks at 400 and 481; the step drop
forks at 400 (200 more), WSD at 481 (119 more): 1,519 of 2,400 steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from scalelab.config import Trial

MIN_FORK_FRAC = 0.1  # fork only when the shared stretch is >= 10% of the branch's updates
# RunConfig fields that change no number of a trial (its curve is bit-identical across them):
# everything else in RunConfig is part of the trunk key
NEUTRAL_RUN = ("checkpoint_every", "wandb_rows", "gpus_per_worker", "share_prefixes")


@dataclass(frozen=True)
class Fork:
    """Trial `name` starts from trial `parent`'s state after `step` updates."""

    name: str
    parent: str
    step: int


@dataclass(frozen=True)
class Plan:
    """The prefix tree of a list of trials: `forks` (branch name -> Fork), `fork_steps` (trunk
    name -> the steps it saves a fork checkpoint at), `depth` (name -> forks above it)."""

    forks: dict[str, Fork] = field(default_factory=dict)
    fork_steps: dict[str, list[int]] = field(default_factory=dict)
    depth: dict[str, int] = field(default_factory=dict)
    total_steps: dict[str, int] = field(default_factory=dict)

    def trained_steps(self, names=None) -> int:
        """Updates trained by `names` (all trials) under this plan."""
        names = self.total_steps if names is None else names
        return sum(self.total_steps[n] - self.start(n) for n in names)

    def scratch_steps(self, names=None) -> int:
        names = self.total_steps if names is None else names
        return sum(self.total_steps[n] for n in names)

    def start(self, name: str) -> int:
        f = self.forks.get(name)
        return f.step if f else 0

    def summary(self, names=None) -> str:
        """'trains 1,519 of 2,400 trial steps (63%); 2 forks, 1 trunk'."""
        names = list(self.total_steps if names is None else names)
        forks = [self.forks[n] for n in names if n in self.forks]
        trunks = len({f.parent for f in forks})
        done, full = self.trained_steps(names), self.scratch_steps(names)
        return savings(done, full, len(forks), trunks)

    def to_dict(self) -> dict:
        return {
            "forks": {n: {"parent": f.parent, "step": f.step} for n, f in self.forks.items()},
            "fork_steps": self.fork_steps,
            "trained_steps": self.trained_steps(),
            "scratch_steps": self.scratch_steps(),
        }


def savings(trained: int, full: int, forks: int, trunks: int) -> str:
    """'trains 1,519 of 2,400 trial steps (63%); 2 forks, 1 trunk'."""
    return (
        f"trains {trained:,} of {full:,} trial steps ({trained / max(full, 1):.0%}); "
        f"{forks} fork{'s' * (forks != 1)}, {trunks} trunk{'s' * (trunks != 1)}"
    )


def trunk_key(trial: Trial) -> str:
    """Everything but the schedule and total_steps that moves a trial's numbers or rows."""
    ident = trial.spec.identity()
    ident.pop("schedule")
    ident.pop("total_steps")
    run = {k: v for k, v in trial.run.to_dict().items() if k not in NEUTRAL_RUN}
    return json.dumps({"spec": ident, "run": run}, sort_keys=True, default=str)


def plan(trials: list[Trial], min_fork_frac: float = MIN_FORK_FRAC) -> Plan:
    """The prefix tree of `trials` (module doc). Trials with run.share_prefixes off, or under
    different trunk keys, never share."""
    p = Plan(total_steps={t.name: t.spec.total_steps for t in trials})
    groups: dict[str, list[Trial]] = {}
    for t in trials:
        if t.run.share_prefixes:
            groups.setdefault(trunk_key(t), []).append(t)
    for group in groups.values():
        if len(group) > 1:
            _plan_group(group, p, min_fork_frac)
    for f in p.forks.values():
        p.fork_steps.setdefault(f.parent, []).append(f.step)
    for steps in p.fork_steps.values():
        steps.sort()
    for n in p.total_steps:
        d, cur = 0, n
        while cur in p.forks:
            d, cur = d + 1, p.forks[cur].parent
        p.depth[n] = d
    return p


def _plan_group(group: list[Trial], p: Plan, min_fork_frac: float) -> None:
    """Sort the LR arrays so that arrays sharing a prefix are neighbours; the shared length of
    any two is then the minimum over the neighbour pairs between them (as in a suffix array),
    and the trie is built by splitting ranges at their smallest neighbour value."""
    arrays = {t.name: np.ascontiguousarray(t.spec.lr_array(), dtype=np.float64) for t in group}
    names = sorted(arrays, key=lambda n: (arrays[n].tobytes(), n))
    # shared updates of neighbours, capped so that every branch trains >= 1 update
    lcp = [_common(arrays[a], arrays[b]) for a, b in zip(names, names[1:], strict=False)]
    order = {t.name: i for i, t in enumerate(group)}  # study order breaks ties

    def build(lo: int, hi: int) -> tuple[str, int]:
        """Subtree of names[lo:hi]: (the trial that trains its path, its branching height)."""
        if hi - lo == 1:
            return names[lo], 0
        m = min(lcp[lo : hi - 1])
        cuts = [lo] + [i + 1 for i in range(lo, hi - 1) if lcp[i] == m] + [hi]
        kids = [build(a, b) for a, b in zip(cuts, cuts[1:], strict=False)]
        # the child with the most branchings below continues (ties: the longer run, then the
        # higher LR after m, i.e. the stable phase rather than a cooldown); the others fork
        main = min(kids, key=lambda k: (-k[1], -arrays[k[0]].size, -arrays[k[0]][m], order[k[0]]))
        for rep, _ in kids:
            if rep != main[0] and m >= max(1, min_fork_frac * arrays[rep].size):
                p.forks[rep] = Fork(rep, main[0], m)
        return main[0], 1 + max(k[1] for k in kids)

    build(0, len(names))


def _common(a: np.ndarray, b: np.ndarray) -> int:
    """Updates a and b share bit for bit, at most min(len) - 1 (a branch trains >= 1 update)."""
    n = min(a.size, b.size)
    diff = np.flatnonzero(a[:n].view(np.uint64) != b[:n].view(np.uint64))
    return int(min(diff[0] if diff.size else n, n - 1))
