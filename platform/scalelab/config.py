"""Trial specs: frozen, typed dataclasses; JSON only as their serialisation.

A trial is two things (README, "Trial identity"):
- `TrialSpec`, its identity: everything that changes what is measured (model shape, optimiser,
  schedule, data, batch, steps, seed, evaluation set, numeric precision). Its content hash and
  the trial's name come from it alone.
- `RunConfig`, its placement and cadence: workers, CPUs/GPUs, device, micro-batching, how often
  to log, evaluate, probe the gradient noise and checkpoint. Not hashed: the same study moves
  from a laptop to a cluster without renaming or rerunning a trial.
Units are in the field comments. `validate()` raises SpecError, a one-line message that names
the field and the fix, before any trial starts.
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
    size: str = "150K"  # preset in model.SIZES ("" = give the shape below in full)
    d_model: int = 0  # residual width; 0 = the preset's
    n_layers: int = 0  # transformer blocks; 0 = the preset's
    n_heads: int = 0  # attention heads (head_dim = d_model / n_heads, even); 0 = the preset's
    mlp: str = "gelu"  # "gelu" (GPT-2, 4x) or "gated" (LLaMA SwiGLU)
    mlp_hidden: int = 0  # MLP hidden width; 0 = 4·d_model (gelu) or ~8/3·d_model (gated)
    norm: str = "layernorm"  # "layernorm" or "rmsnorm"
    vocab_size: int = 0  # embedding rows; 0 = the data's vocabulary (larger pads it)
    # round the vocabulary up to a multiple of this (128: 50,257 -> 50,304 rows, faster
    # matmuls); the extra rows are real softmax outputs, so it is identity; 0 = no padding
    vocab_multiple: int = 0

    def shape(self) -> dict[str, int]:
        """The resolved shape {d_model, n_layers, n_heads}: explicit fields over the preset."""
        from scalelab.presets import SIZES

        base = dict(SIZES.get(self.size, {}))
        for k in ("d_model", "n_layers", "n_heads"):
            if getattr(self, k):
                base[k] = getattr(self, k)
        return base

    @property
    def label(self) -> str:
        """Preset name, or `d64L3H4` when any shape field is set."""
        if self.size and not (self.d_model or self.n_layers or self.n_heads):
            return self.size
        s = self.shape()
        return f"d{s.get('d_model')}L{s.get('n_layers')}H{s.get('n_heads')}"


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
    name: str = "cosine"  # a name in scalelaws.schedules.REGISTRY
    warmup_steps: int = 0  # optimizer steps of linear warmup (included in total_steps)
    params: dict[str, Any] = field(default_factory=dict)  # see scalelaws/schedules.py

    @property
    def label(self) -> str:
        """`cosine(final_lr=0.0003)`: the name and every parameter, sorted (arrays elided)."""
        parts = [f"{k}={_short_value(v)}" for k, v in sorted(self.params.items()) if k != "values"]
        return f"{self.name}({','.join(parts)})" if parts else self.name


@dataclass(frozen=True)
class DataSpec:
    name: str = "pcfg"  # a name in data.REGISTRY
    seed: int = 0  # data seed (the language / the people), independent of the init seed
    params: dict[str, Any] = field(default_factory=dict)


PRECISIONS = ("fp32", "bf16")
# Input bounds: far above any study here; each is a typo or a unit mistake (tokens for steps)
MAX_STEPS = 100_000_000  # optimizer steps of one trial
MAX_SEQ_LEN = 32_768  # tokens per sequence
MAX_BATCH = 1_048_576  # sequences per step


@dataclass(frozen=True)
class TrialSpec:
    """What one trial measures. `name`, `study` and `grid` are labels, not hashed."""

    name: str = "trial"  # stable, readable name (sweep.py builds it from the grid point)
    study: str = ""  # study name (W&B group, results folder)
    model: ModelSpec = field(default_factory=ModelSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    data: DataSpec = field(default_factory=DataSpec)
    batch_size: int = 32  # sequences per optimizer step, global (all workers together)
    seq_len: int = 64  # tokens per sequence (0 = the data source's fixed length)
    total_steps: int = 200  # optimizer steps, warmup included
    seed: int = 0  # init seed (model weights)
    eval_batch_size: int = 64  # sequences in the fixed held-out eval batch
    ewa_decay: float = 0.0  # EWA of the weights (Zhang et al. 2025), eval'd too; 0 = off
    knowledge_eval: bool = False  # measure per-fact losses at the end (bioS / bioD)
    diverge_loss: float = 0.0  # train loss above this = diverged; 0 = 2 x ln(vocab) + 1
    precision: str = "fp32"  # "fp32" or "bf16" (autocast / FSDP2 mixed precision)
    grid: dict[str, Any] = field(default_factory=dict)  # the grid point it came from (label)

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

    def identity(self) -> dict:
        """What the hash covers: every field but the labels, with the model as its resolved
        shape (a preset and the same shape written out are the same trial)."""
        d = self.to_dict()
        for label in LABELS:
            d.pop(label)
        model = d.pop("model")
        model.pop("size")
        if not model["vocab_multiple"]:  # added later: trials without it keep their hash
            model.pop("vocab_multiple")
        model.update(self.model.shape())
        d["model"] = model
        return d

    def content_hash(self) -> str:
        """Short hash of the identity (README: a trial's name and hash come from it alone)."""
        raw = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:8]

    # ---- derived ----
    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def total_tokens(self) -> int:
        return self.total_steps * self.tokens_per_step

    def lr_array(self) -> np.ndarray:
        """Per-update LR: lr[t] is used by optimizer update t (t = 0..total_steps-1)."""
        from scalelaws import schedules

        s = self.schedule
        return schedules.lr_array(
            s.name, self.optim.lr, self.total_steps, s.warmup_steps, **s.params
        )

    def validate(self) -> TrialSpec:
        """Check every field; raise SpecError naming the first bad one. Returns self."""
        _need(isinstance(self.name, str) and self.name != "", "name", "must be a non-empty string")
        _check_model(self.model)
        _check_optim(self.optim)
        _check_counts(self)
        _check_data(self)
        _check_schedule(self)
        return self


LABELS = ("name", "study", "grid")  # TrialSpec fields that are not part of the identity


@dataclass(frozen=True)
class RunConfig:
    """Where and how a trial runs; never part of its identity (README, "Trial identity")."""

    workers: int = 1  # data-parallel ranks (FSDP2 when > 1)
    fsdp: bool = False  # shard with FSDP2 even on one rank (e.g. one GPU)
    micro_batch_size: int = 0  # sequences per forward/backward per worker; 0 = whole share
    cpus_per_worker: float = 1.0  # Ray CPUs per worker (torch threads on CPU)
    gpus_per_worker: float = 0.0  # Ray GPUs per worker; a fraction <= 1 packs one-worker trials
    device: str = "auto"  # "auto" (cuda if there is one), "cpu" or "cuda"
    eval_every: int = 20  # steps between eval-loss measurements (and at the last step)
    log_every: int = 1  # steps between curve rows
    noise_every: int = 10  # steps between gradient-noise-scale measurements; 0 = off
    checkpoint_every: int = 0  # steps between distributed checkpoints; 0 = off
    # W&B history rows per trial, evenly spaced (on the eval steps where that fits), plus every
    # eval row and the last; 0 = every curve row. Each row costs ~0.5 ms of CPU
    # (tracking.runs.wandb_cadence); curve.parquet always has all of them.
    wandb_rows: int = 50
    # speed switches (README "Speed"); on CPU the defaults change no number
    compile: str | bool = "auto"  # torch.compile each block: "auto" = on for CUDA, off on CPU
    activation_checkpointing: bool = False  # recompute block activations in backward
    # train updates that trials share once, and fork the rest from a checkpoint (prefix.py)
    share_prefixes: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        return _from_dict(cls, d, "run.")

    def validate(self, spec: TrialSpec | None = None) -> RunConfig:
        _need(_int(self.workers) and self.workers >= 1, "workers", "must be an int >= 1")
        _need(isinstance(self.fsdp, bool), "fsdp", f"must be true or false, got {self.fsdp!r}")
        for f in ("eval_every", "log_every"):
            v = getattr(self, f)
            _need(_int(v) and v > 0, f, f"must be a positive int, got {v!r}")
        for f in ("noise_every", "checkpoint_every", "micro_batch_size", "wandb_rows"):
            v = getattr(self, f)
            _need(_int(v) and v >= 0, f, f"must be an int >= 0 (0 = off), got {v!r}")
        _need(self.device in ("auto", "cpu", "cuda"), "device", "must be 'auto', 'cpu' or 'cuda'")
        c, g = self.cpus_per_worker, self.gpus_per_worker
        _need(_num(c) and c > 0, "cpus_per_worker", "must be > 0")
        _need(_num(g) and g >= 0, "gpus_per_worker", "must be >= 0")
        _need(
            g <= 1 or g == int(g),
            "gpus_per_worker",
            f"{g} is above 1 and not whole; use a fraction <= 1 (0.25: 4 trials per GPU) "
            "or a whole number",
        )
        _need(
            g == int(g) or self.workers == 1,
            "gpus_per_worker",
            f"a fraction ({g}) packs one-worker trials onto a GPU; with workers={self.workers} "
            "use whole GPUs (NCCL needs one GPU per rank)",
        )
        _need(
            self.compile == "auto" or isinstance(self.compile, bool),
            "compile",
            f"must be 'auto', true or false, got {self.compile!r}",
        )
        _need(
            isinstance(self.share_prefixes, bool),
            "share_prefixes",
            f"must be true or false, got {self.share_prefixes!r}",
        )
        _need(
            isinstance(self.activation_checkpointing, bool),
            "activation_checkpointing",
            f"must be true or false, got {self.activation_checkpointing!r}",
        )
        if spec is not None:
            _check_split(spec.batch_size, self)
        return self


@dataclass(frozen=True)
class Trial:
    """One trial of a study: what it measures and where it runs."""

    spec: TrialSpec
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def name(self) -> str:
        return self.spec.name

    def content_hash(self) -> str:
        return self.spec.content_hash()

    def validate(self) -> Trial:
        self.spec.validate()
        self.run.validate(self.spec)
        return self

    def replace(self, **changes) -> Trial:
        """A copy with fields changed, each routed to the spec or the run by its name."""
        bad = [k for k in changes if k not in SPEC_FIELDS and k not in RUN_FIELDS]
        if bad:
            raise SpecError(f"{bad[0]}: unknown field of TrialSpec or RunConfig")
        spec = {k: v for k, v in changes.items() if k in SPEC_FIELDS}
        run = {k: v for k, v in changes.items() if k in RUN_FIELDS}
        return Trial(dataclasses.replace(self.spec, **spec), dataclasses.replace(self.run, **run))

    def to_dict(self) -> dict:
        return {"spec": self.spec.to_dict(), "run": self.run.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> Trial:
        """{"spec": ..., "run": ...}; a bare TrialSpec dict runs with the default RunConfig."""
        if not isinstance(d, dict):
            raise SpecError(f"trial: expected a mapping, got {type(d).__name__}")
        if "spec" in d:
            unknown = set(d) - {"spec", "run"}
            if unknown:
                raise SpecError(f"{sorted(unknown)[0]}: unknown key; a trial file has spec, run")
            return cls(TrialSpec.from_dict(d["spec"]), RunConfig.from_dict(d.get("run") or {}))
        return cls(TrialSpec.from_dict(d))

    @classmethod
    def from_json(cls, s: str) -> Trial:
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise SpecError(f"trial: not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d)


# ---- validation pieces (each raises SpecError naming the field) ----


def _need(ok: bool, fld: str, msg: str) -> None:
    if not ok:
        raise SpecError(f"{fld}: {msg}")


def _check_model(m: ModelSpec) -> None:
    from scalelab import presets as model

    if m.size:
        _need(
            m.size in model.SIZES,
            "model.size",
            f"unknown size {m.size!r}; choose one of {', '.join(model.SIZES)}, or set "
            "size='' and give d_model, n_layers, n_heads",
        )
    for f in ("d_model", "n_layers", "n_heads", "mlp_hidden", "vocab_size", "vocab_multiple"):
        v = getattr(m, f)
        _need(_int(v) and v >= 0, f"model.{f}", f"must be an int >= 0 (0 = default), got {v!r}")
    shape = m.shape()
    for f in ("d_model", "n_layers", "n_heads"):
        _need(
            shape.get(f, 0) > 0,
            f"model.{f}",
            "needed when model.size is '' (give the whole shape or a preset)",
        )
    d, h = shape["d_model"], shape["n_heads"]
    _need(d % h == 0, "model.n_heads", f"d_model {d} is not divisible by n_heads {h}")
    _need((d // h) % 2 == 0, "model.n_heads", f"head_dim {d // h} must be even (rotary)")
    _need(m.mlp in model.MLPS, "model.mlp", f"must be one of {', '.join(model.MLPS)}")
    _need(m.norm in model.NORMS, "model.norm", f"must be one of {', '.join(model.NORMS)}")


def _check_optim(o: OptimSpec) -> None:
    _need(_num(o.lr) and o.lr > 0, "optim.lr", f"must be a positive number, got {o.lr!r}")
    _need(_num(o.beta1) and 0 <= o.beta1 < 1, "optim.beta1", "must be in [0, 1)")
    _need(_num(o.beta2) and 0 <= o.beta2 < 1, "optim.beta2", "must be in [0, 1)")
    _need(_num(o.eps) and o.eps > 0, "optim.eps", f"must be a positive number, got {o.eps!r}")
    _need(_num(o.weight_decay) and o.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    _need(_num(o.grad_clip) and o.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 = off)")


def _check_counts(s: TrialSpec) -> None:
    for f, top in (
        ("total_steps", MAX_STEPS),
        ("batch_size", MAX_BATCH),
        ("eval_batch_size", MAX_BATCH),
    ):
        v = getattr(s, f)
        _need(_int(v) and v > 0, f, f"must be a positive int, got {v!r}")
        _need(v <= top, f, f"{v:,} is above the limit {top:,} (config.py); a unit mistake?")
    _need(_int(s.seq_len) and s.seq_len >= 0, "seq_len", "must be an int >= 0 (0 = the data's)")
    _need(
        s.seq_len <= MAX_SEQ_LEN,
        "seq_len",
        f"{s.seq_len:,} tokens is above the limit {MAX_SEQ_LEN:,} (config.py MAX_SEQ_LEN)",
    )
    _need(_int(s.seed) and s.seed >= 0, "seed", f"must be an int >= 0, got {s.seed!r}")
    _need(_num(s.ewa_decay) and 0 <= s.ewa_decay < 1, "ewa_decay", "must be in [0, 1) (0 = off)")
    _need(
        _num(s.diverge_loss) and s.diverge_loss >= 0,
        "diverge_loss",
        "must be >= 0 (0 = 2·ln(vocab) + 1)",
    )
    _need(isinstance(s.knowledge_eval, bool), "knowledge_eval", "must be true or false")
    _need(s.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
    _need(isinstance(s.grid, dict), "grid", "must be a dict (the grid point)")


def _check_data(s: TrialSpec) -> None:
    from scalelab import data

    _need(
        s.data.name in data.REGISTRY,
        "data.name",
        f"unknown source {s.data.name!r}; choose one of {', '.join(data.REGISTRY)}",
    )
    allowed = data.param_defaults(s.data.name)
    for k in s.data.params:
        _need(
            k in allowed,
            f"data.params.{k}",
            f"unknown parameter for {s.data.name!r}; allowed: {', '.join(allowed)}",
        )
    if s.knowledge_eval:
        _need(
            s.data.name in data.KNOWLEDGE,
            "knowledge_eval",
            f"needs a knowledge source ({', '.join(data.KNOWLEDGE)}), not {s.data.name!r}",
        )


def _check_schedule(s: TrialSpec) -> None:
    from scalelaws import schedules

    w = s.schedule.warmup_steps
    _need(_int(w) and w >= 0, "schedule.warmup_steps", "must be an int >= 0")
    _need(
        w < s.total_steps,
        "schedule.warmup_steps",
        f"warmup ({w}) must be shorter than total_steps ({s.total_steps})",
    )
    try:
        schedules.validate(s.schedule.name, s.optim.lr, s.total_steps, w, **s.schedule.params)
    except ValueError as e:
        raise SpecError(str(e)) from None


def _check_split(batch_size: int, run: RunConfig) -> None:
    """The global batch splits evenly over workers and micro-batches."""
    _need(
        batch_size % run.workers == 0,
        "batch_size",
        f"{batch_size} is not divisible by workers={run.workers}; "
        "use a multiple of the worker count",
    )
    per_rank, mb = batch_size // run.workers, run.micro_batch_size
    _need(
        mb == 0 or per_rank % mb == 0,
        "micro_batch_size",
        f"must divide the per-worker batch {per_rank} (or be 0)",
    )


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and bool(np.isfinite(x))


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _short_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(_short_value(x) for x in v) + "]"
    return str(v)


_NESTED = {"model": ModelSpec, "optim": OptimSpec, "schedule": ScheduleSpec, "data": DataSpec}


def _from_dict(cls: type, d: dict, prefix: str):
    """Build a (nested) spec dataclass from a dict; unknown keys are an error."""
    if not isinstance(d, dict):
        raise SpecError(f"{prefix.rstrip('.') or 'spec'}: expected a mapping, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in d.items():
        if k not in fields:
            hint = ""
            if cls is TrialSpec and k in RUN_FIELDS:
                hint = f" ({k!r} is placement: it belongs in the RunConfig)"
            raise SpecError(f"{prefix}{k}: unknown field{hint}; allowed: {', '.join(fields)}")
        sub = _NESTED.get(k) if cls is TrialSpec else None
        kwargs[k] = _from_dict(sub, v, f"{prefix}{k}.") if sub else v
    return cls(**kwargs)


SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(TrialSpec))
RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))
