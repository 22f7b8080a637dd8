"""Trial specs: frozen, typed dataclasses; JSON only as their serialisation.

Units are in the field comments. A TrialSpec is everything one training run needs; a sweep
(sweep.py) expands into a list of them. `validate()` raises SpecError, a one-line message
that names the field and the fix, before any trial starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class SpecError(ValueError):
    """Bad spec value: the message names the field (e.g. `optim.lr`) and the fix."""


@dataclass(frozen=True)
class ModelSpec:
    size: str = "150K"  # name in model.SIZES (approx. non-embedding parameter count)
    mlp: str = "gelu"  # "gelu" (GPT-2, 4x) or "gated" (LLaMA SwiGLU)
    norm: str = "layernorm"  # "layernorm" or "rmsnorm"


@dataclass(frozen=True)
class OptimSpec:
    lr: float = 3e-3  # peak learning rate
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1  # applied to 2-D weights only (nanoGPT)
    grad_clip: float = 1.0  # max global grad norm; 0 = off


@dataclass(frozen=True)
class ScheduleSpec:
    name: str = "cosine"  # a name in schedules.REGISTRY
    warmup_steps: int = 0  # optimizer steps of linear warmup (included in total_steps)
    params: dict[str, Any] = field(default_factory=dict)  # schedule-specific, see schedules.py


@dataclass(frozen=True)
class DataSpec:
    name: str = "pcfg"  # a name in data.REGISTRY
    seed: int = 0  # data seed (the language / the people), independent of the init seed
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialSpec:
    name: str = "trial"  # stable, readable name (sweep.py builds it from the grid point)
    study: str = ""  # study name (W&B group, results folder)
    model: ModelSpec = field(default_factory=ModelSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    data: DataSpec = field(default_factory=DataSpec)
    batch_size: int = 32  # sequences per optimizer step, global (all workers together)
    micro_batch_size: int = 0  # sequences per forward/backward per worker; 0 = batch_size / workers
    seq_len: int = 64  # tokens per sequence (0 = the data source's fixed length)
    total_steps: int = 200  # optimizer steps, warmup included
    seed: int = 0  # init seed (model weights)
    eval_every: int = 20  # steps between eval-loss measurements (and at the last step)
    eval_batch_size: int = 64  # sequences in the fixed held-out eval batch
    log_every: int = 1  # steps between curve rows
    noise_every: int = 10  # steps between gradient-noise-scale measurements; 0 = off
    checkpoint_every: int = 0  # steps between distributed checkpoints; 0 = off
    ewa_decay: float = 0.0  # EWA of the weights (Zhang et al. 2025), eval'd too; 0 = off
    knowledge_eval: bool = False  # measure per-fact losses at the end (bioS / bioD)
    diverge_loss: float = 0.0  # train loss above this = diverged; 0 = 2 x ln(vocab) + 1
    workers: int = 1  # data-parallel ranks (FSDP2 when > 1)
    fsdp: bool = False  # shard with FSDP2 even on one rank (e.g. one GPU)
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    device: str = "auto"  # "auto" (cuda if there is one), "cpu" or "cuda"

    # ---- serialisation ----
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> TrialSpec:
        return _from_dict(cls, d, "")

    @classmethod
    def from_json(cls, s: str) -> TrialSpec:
        return cls.from_dict(json.loads(s))

    def content_hash(self) -> str:
        """Short hash of everything that changes the result (not the name or study)."""
        d = self.to_dict()
        d.pop("name")
        d.pop("study")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]

    # ---- derived ----
    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def total_tokens(self) -> int:
        return self.total_steps * self.tokens_per_step

    def lr_array(self) -> np.ndarray:
        """Per-step LR, lr[t] used by optimizer update t (t = 0..total_steps-1)."""
        from scalelaws import schedules

        return schedules.lr_array(
            self.schedule.name,
            self.optim.lr,
            self.total_steps,
            self.schedule.warmup_steps,
            **self.schedule.params,
        )

    def validate(self) -> TrialSpec:
        """Check every field; raise SpecError naming the first bad one. Returns self."""
        from scalelab import data, model
        from scalelaws import schedules

        def need(ok: bool, fld: str, msg: str) -> None:
            if not ok:
                raise SpecError(f"{fld}: {msg}")

        need(isinstance(self.name, str) and self.name != "", "name", "must be a non-empty string")
        need(
            self.model.size in model.SIZES,
            "model.size",
            f"unknown size {self.model.size!r}; choose one of {', '.join(model.SIZES)}",
        )
        need(self.model.mlp in ("gelu", "gated"), "model.mlp", "must be 'gelu' or 'gated'")
        need(
            self.model.norm in ("layernorm", "rmsnorm"),
            "model.norm",
            "must be 'layernorm' or 'rmsnorm'",
        )
        o = self.optim
        need(_num(o.lr) and o.lr > 0, "optim.lr", f"must be a positive number, got {o.lr!r}")
        need(_num(o.beta1) and 0 <= o.beta1 < 1, "optim.beta1", "must be in [0, 1)")
        need(_num(o.beta2) and 0 <= o.beta2 < 1, "optim.beta2", "must be in [0, 1)")
        need(_num(o.weight_decay) and o.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        need(_num(o.grad_clip) and o.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 = off)")
        need(
            _int(self.total_steps) and self.total_steps > 0,
            "total_steps",
            f"must be a positive int, got {self.total_steps!r}",
        )
        need(_int(self.workers) and self.workers >= 1, "workers", "must be an int >= 1")
        need(
            _int(self.batch_size) and self.batch_size > 0,
            "batch_size",
            f"must be a positive int, got {self.batch_size!r}",
        )
        need(
            self.batch_size % self.workers == 0,
            "batch_size",
            f"{self.batch_size} is not divisible by workers={self.workers}; "
            "use a multiple of the worker count",
        )
        per_rank = self.batch_size // self.workers
        mb = self.micro_batch_size
        need(
            _int(mb) and mb >= 0 and (mb == 0 or per_rank % mb == 0),
            "micro_batch_size",
            f"must divide the per-worker batch {per_rank} (or be 0)",
        )
        need(_int(self.seq_len) and self.seq_len >= 0, "seq_len", "must be an int >= 0")
        for f in ("eval_every", "log_every"):
            v = getattr(self, f)
            need(_int(v) and v > 0, f, f"must be a positive int, got {v!r}")
        for f in ("noise_every", "checkpoint_every"):
            v = getattr(self, f)
            need(_int(v) and v >= 0, f, f"must be an int >= 0 (0 = off), got {v!r}")
        need(
            _int(self.eval_batch_size) and self.eval_batch_size > 0,
            "eval_batch_size",
            "must be a positive int",
        )
        need(
            _num(self.ewa_decay) and 0 <= self.ewa_decay < 1,
            "ewa_decay",
            "must be in [0, 1) (0 = off)",
        )
        need(self.device in ("auto", "cpu", "cuda"), "device", "must be 'auto', 'cpu' or 'cuda'")
        need(
            _num(self.cpus_per_worker) and self.cpus_per_worker > 0,
            "cpus_per_worker",
            "must be > 0",
        )
        need(
            _num(self.gpus_per_worker) and self.gpus_per_worker >= 0,
            "gpus_per_worker",
            "must be >= 0",
        )
        need(
            self.data.name in data.REGISTRY,
            "data.name",
            f"unknown source {self.data.name!r}; choose one of {', '.join(data.REGISTRY)}",
        )
        allowed = data.param_defaults(self.data.name)
        for k in self.data.params:
            need(
                k in allowed,
                f"data.params.{k}",
                f"unknown parameter for {self.data.name!r}; allowed: {', '.join(allowed)}",
            )
        w = self.schedule.warmup_steps
        need(_int(w) and w >= 0, "schedule.warmup_steps", "must be an int >= 0")
        need(
            w < self.total_steps,
            "schedule.warmup_steps",
            f"warmup ({w}) must be shorter than total_steps ({self.total_steps})",
        )
        try:
            schedules.validate(
                self.schedule.name, o.lr, self.total_steps, w, **self.schedule.params
            )
        except ValueError as e:
            raise SpecError(str(e)) from None
        return self


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and np.isfinite(x)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _from_dict(cls: type, d: dict, prefix: str):
    """Build a (nested) spec dataclass from a dict; unknown keys are an error."""
    if not isinstance(d, dict):
        raise SpecError(f"{prefix.rstrip('.') or 'spec'}: expected a mapping, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in d.items():
        if k not in fields:
            raise SpecError(f"{prefix}{k}: unknown field; allowed: {', '.join(fields)}")
        sub = _NESTED.get(fields[k].name) if cls is TrialSpec else None
        kwargs[k] = _from_dict(sub, v, f"{prefix}{k}.") if sub else v
    return cls(**kwargs)


_NESTED = {"model": ModelSpec, "optim": OptimSpec, "schedule": ScheduleSpec, "data": DataSpec}
