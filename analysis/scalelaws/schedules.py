"""Learning-rate schedules: a small registry of pure functions of the step.

Step convention: lr[t] is the LR used by optimizer update t, t = 0 .. total_steps-1.
Warmup (every schedule but `array`): lr[0 .. W-1] = np.linspace(0, peak, W), so lr[0] = 0 and
lr[W-1] = peak (W = warmup_steps; W = 0 means no warmup). This is the rule of the multi-power
law reference runs (Luo et al. 2025, repo thu-yao-01-luo/MultiPowerLaw), so their schedules
are reproduced exactly. After warmup, s = step, P = peak_lr, E = final_lr, T = total_steps:

  constant  P
  cosine    E + (P-E)/2·(1 + cos(π·(s-W)/(T-W)))           (lr[T-1] is just above E)
  wsd       P until D = T - decay_steps, then with f = (s-D)/decay_steps (Hägele et al. 2024;
            the last step has f = 1 - 1/decay_steps, as in the refdata, so it stays above E):
              linear  P·(1-f) + E·f                        (refdata `wsdld`)
              cosine  E + (P-E)/2·(1 + cos(π·f))
              exp     P^(1-f)·E^f                          (refdata `wsd`; needs E > 0)
              1-sqrt  E + (P-E)·(1 - √f)
  step      P·factor^k, k = number of milestones <= s
  wsdcon    P for s < drop_step, then `value`              (refdata `wsdcon_X`, value X·1e-5)
  array     `values` (or the file at `path`, .npy or .json): one absolute LR per step,
            warmup included; warmup_steps is not applied.

`final_lr` None means peak_lr/10. Parameters that default to None without a rule
(`step.milestones`, `wsdcon.drop_step`, `wsdcon.value`) are required.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path

import numpy as np

WSD_SHAPES = ("linear", "cosine", "exp", "1-sqrt")


@dataclass(frozen=True)
class Schedule:
    fn: Callable[..., np.ndarray]  # (s, P, T, W, **params) -> lr at post-warmup steps s
    defaults: dict = field(default_factory=dict)  # every accepted parameter and its default
    warmup: bool = True  # False: fn covers every step (array)


def _constant(s, peak, total, warmup):
    return np.full(s.shape, peak)


def _cosine(s, peak, total, warmup, final_lr):
    e = final_lr
    return e + (peak - e) / 2 * (1 + np.cos(np.pi * (s - warmup) / (total - warmup)))


def _decay_len(total, decay_steps, decay_frac) -> int:
    # decay_frac is a fraction of total_steps, rounded to whole steps.
    return int(decay_steps) if decay_steps is not None else round(decay_frac * total)


def _wsd(s, peak, total, warmup, decay_steps, decay_frac, shape, final_lr):
    n = _decay_len(total, decay_steps, decay_frac)
    start, end, e = total - n, total, final_lr
    d = np.maximum(s, start)  # decay clock; stable steps are set by np.where (no exp overflow)
    f = (d - start) / n
    if shape == "linear":
        decay = peak * (1 - f) + e * f
    elif shape == "cosine":
        decay = e + (peak - e) / 2 * (1 + np.cos(np.pi * f))
    elif shape == "exp":  # written as in the refdata: P^((end-s)/len)·E^((s-start)/len)
        decay = peak ** ((end - d) / n) * e ** ((d - start) / n)
    else:  # "1-sqrt"
        decay = e + (peak - e) * (1 - np.sqrt(f))
    return np.where(s < start, peak, decay)


def _step(s, peak, total, warmup, milestones, factor):
    k = np.searchsorted(np.asarray(sorted(milestones)), s, side="right")  # milestones <= s
    return peak * float(factor) ** k


def _wsdcon(s, peak, total, warmup, drop_step, value):
    return np.where(s < drop_step, peak, value)


def _array(s, peak, total, warmup, values):
    return values[s.astype(np.int64)]


REGISTRY: dict[str, Schedule] = {
    "constant": Schedule(_constant),
    "cosine": Schedule(_cosine, dict(final_lr=None)),
    "wsd": Schedule(_wsd, dict(decay_steps=None, decay_frac=0.2, shape="linear", final_lr=None)),
    "step": Schedule(_step, dict(milestones=None, factor=0.1)),
    "wsdcon": Schedule(_wsdcon, dict(drop_step=None, value=None)),
    "array": Schedule(_array, dict(values=None, path=None), warmup=False),
}


def param_defaults(name: str) -> dict:
    """Accepted parameters of schedule `name` and their defaults (None: see module doc)."""
    _check_name(name)
    return dict(REGISTRY[name].defaults)


def _check_name(name: str) -> None:
    if name not in REGISTRY:
        raise ValueError(
            f"schedule.name: unknown schedule {name!r}; choose one of {', '.join(REGISTRY)}"
        )


def _load_values(values, path) -> np.ndarray:
    if (values is None) == (path is None):
        raise ValueError("schedule.values: give exactly one of values (list of LRs) or path")
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"schedule.path: no file at {str(p)!r}")
        if p.suffix == ".npy":
            values = np.load(p)
        elif p.suffix == ".json":
            values = json.loads(p.read_text())
            if isinstance(values, dict):  # {"values": [...]} or a SCHED.json from `propose`
                values = values["values"] if "values" in values else values["lr"]
        else:
            raise ValueError(f"schedule.path: {p.name!r} must end in .npy or .json")
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"schedule.values: must be a flat list of LRs, got shape {arr.shape}")
    return arr


def _resolve(name, peak_lr, total_steps, warmup_steps, params) -> dict:
    """Validate everything and return the full parameter dict (defaults filled in)."""
    _check_name(name)
    if not isinstance(peak_lr, Real) or not math.isfinite(peak_lr) or peak_lr <= 0:
        raise ValueError(f"schedule.peak_lr: must be a positive number, got {peak_lr!r}")
    if not isinstance(total_steps, Integral) or total_steps <= 0:
        raise ValueError(f"schedule.total_steps: must be a positive int, got {total_steps!r}")
    if not isinstance(warmup_steps, Integral) or not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"schedule.warmup_steps: must be an int in [0, total_steps={total_steps}), "
            f"got {warmup_steps!r}"
        )
    defaults = REGISTRY[name].defaults
    for key in params:
        if key not in defaults:
            allowed = ", ".join(defaults) or "none"
            raise ValueError(f"schedule.{key}: unknown parameter for {name!r}; allowed: {allowed}")
    p = dict(defaults)
    p.update({k: v for k, v in params.items() if v is not None})
    post = total_steps - warmup_steps  # steps after warmup
    for key in ("final_lr", "decay_frac", "factor", "value"):
        if p.get(key) is not None and not isinstance(p[key], Real):
            raise ValueError(f"schedule.{key}: must be a number, got {p[key]!r}")

    if "final_lr" in p:
        if p["final_lr"] is None:
            p["final_lr"] = peak_lr / 10
        if not 0 <= p["final_lr"] <= peak_lr:
            raise ValueError(
                f"schedule.final_lr: must lie in [0, peak_lr={peak_lr}], got {p['final_lr']}"
            )
    if name == "wsd":
        if p["shape"] not in WSD_SHAPES:
            raise ValueError(f"schedule.shape: unknown {p['shape']!r}; choose one of {WSD_SHAPES}")
        if p["shape"] == "exp" and p["final_lr"] <= 0:
            raise ValueError("schedule.final_lr: must be > 0 for shape 'exp' (P^(1-f)·E^f)")
        if params.get("decay_steps") is not None and params.get("decay_frac") is not None:
            raise ValueError("schedule.decay_steps: give decay_steps or decay_frac, not both")
        if p["decay_steps"] is not None:
            n = p["decay_steps"]
            if not isinstance(n, Integral) or not 0 < n <= post:
                raise ValueError(
                    f"schedule.decay_steps: must be an int in [1, total_steps - warmup_steps = "
                    f"{post}], got {n!r}"
                )
        else:
            n = _decay_len(total_steps, None, p["decay_frac"])
            if not 0 < p["decay_frac"] <= 1 or not 0 < n <= post:
                raise ValueError(
                    f"schedule.decay_frac: {p['decay_frac']} of total_steps gives {n} decay "
                    f"steps; need 1 .. {post} (the post-warmup part)"
                )
    elif name == "step":
        ms = p["milestones"]
        if ms is None or isinstance(ms, str | int):
            raise ValueError("schedule.milestones: required for 'step': a list of steps")
        ms = list(ms)
        if any(not isinstance(m, Integral) or not warmup_steps <= m < total_steps for m in ms):
            raise ValueError(
                f"schedule.milestones: each must be an int step in "
                f"[warmup_steps={warmup_steps}, total_steps={total_steps}), got {ms}"
            )
        if ms != sorted(set(ms)):
            raise ValueError(f"schedule.milestones: must be strictly increasing, got {ms}")
        if not 0 < p["factor"] <= 1:
            raise ValueError(f"schedule.factor: must lie in (0, 1], got {p['factor']}")
        p["milestones"] = ms
    elif name == "wsdcon":
        d, v = p["drop_step"], p["value"]
        if not isinstance(d, Integral) or not warmup_steps <= d < total_steps:
            raise ValueError(
                f"schedule.drop_step: required int step in "
                f"[warmup_steps={warmup_steps}, total_steps={total_steps}), got {d!r}"
            )
        if v is None or not 0 <= v <= peak_lr:
            raise ValueError(f"schedule.value: required LR in [0, peak_lr={peak_lr}], got {v!r}")
    elif name == "array":
        arr = _load_values(p["values"], p["path"])
        if len(arr) != total_steps:
            raise ValueError(
                f"schedule.values: length {len(arr)} != total_steps {total_steps} "
                f"(give one LR per step, warmup included)"
            )
        if not np.all(np.isfinite(arr)) or arr.min() < 0:
            raise ValueError("schedule.values: LRs must be finite and >= 0")
        if arr.max() > peak_lr * (1 + 1e-9):
            raise ValueError(f"schedule.values: max {arr.max():g} exceeds peak_lr {peak_lr:g}")
        p = dict(values=arr)
    return p


def validate(name: str, peak_lr: float, total_steps: int, warmup_steps: int, **params) -> None:
    """Raise ValueError (one line, naming `schedule.<field>`) if the schedule is not valid."""
    _resolve(name, peak_lr, total_steps, warmup_steps, params)


def lr_array(
    name: str, peak_lr: float, total_steps: int, warmup_steps: int, **params
) -> np.ndarray:
    """Per-step LR, float64 of length total_steps (see module doc for the conventions)."""
    p = _resolve(name, peak_lr, total_steps, warmup_steps, params)
    sched = REGISTRY[name]
    w = warmup_steps if sched.warmup else 0
    lr = np.empty(total_steps, dtype=np.float64)
    lr[:w] = np.linspace(0.0, peak_lr, w)
    s = np.arange(w, total_steps, dtype=np.float64)
    lr[w:] = sched.fn(s, peak_lr, total_steps, warmup_steps, **p)
    return lr
