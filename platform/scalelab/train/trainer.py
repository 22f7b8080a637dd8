"""The per-worker training loop of one trial; rank 0 writes the trial's curve and trial.json.

Runs the same in a plain process, under torchrun, and inside a Ray Train worker. World size
> 1 means FSDP2 (gloo on CPU, NCCL on GPU). The pieces: `setup` (process group, device, data,
model, optimizer, record), `resume` (latest checkpoint), `Loop` (one update per step, the
rows it logs, evals, checkpoints), `Recorder` (what is written), `step.py` (the update
itself) and `noise.py` (the gradient noise scale).
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from scalelab import checkpoint, files, knowledge, parallel, speed
from scalelab import data as datasets
from scalelab.config import RunConfig, Trial, TrialSpec
from scalelab.model import GPT, args_from_spec, flops_per_token, param_counts
from scalelab.status import HEARTBEAT
from scalelab.train.noise import NoiseScale
from scalelab.train.recorder import Recorder, new_record, touch
from scalelab.train.step import StepStats, apply_update, forward_backward, micro_chunks, read_all


class Diverged(Exception):
    pass


class Stopped(Exception):
    """Raised by an on_log callback when a scheduler (ASHA) ends the trial early."""


def build(spec: TrialSpec, device: torch.device):
    """Data source and model (single-device code) for a spec."""
    source = datasets.build(spec.data.name, seed=spec.data.seed, **spec.data.params)
    seq_len = spec.seq_len or source.seq_len
    if source.seq_len and seq_len != source.seq_len:
        raise ValueError(f"seq_len: {spec.data.name!r} needs seq_len={source.seq_len} (or 0)")
    args = args_from_spec(spec.model, source.vocab_size, seq_len)
    torch.manual_seed(spec.seed)  # same init on every rank before sharding
    model = GPT(args).to(device)
    return source, model, seq_len


def make_optimizer(model, spec: TrialSpec):
    """AdamW; weight decay on 2-D weights only (nanoGPT); fused on CUDA (speed.py)."""
    o = spec.optim
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": o.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kw = speed.adamw_kwargs(model.parameters())
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, **kw)


@dataclass
class Setup:
    """Everything a trial's loop needs, built once per process."""

    trial: Trial
    rank: int
    world: int
    device: torch.device
    source: object
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    seq_len: int
    autocast: object
    params: list = field(default_factory=list)
    ewa: list = field(default_factory=list)


def setup(trial: Trial) -> tuple[Setup, dict]:
    """Process group, device, data, model (sharded if FSDP), optimizer; the starting record."""
    spec, run = trial.spec, trial.run
    rank, world, local_rank = parallel.init_distributed(run.device, force=run.fsdp)
    if world != run.workers:
        raise ValueError(f"workers: run asks for {run.workers} ranks but {world} are running")
    device = parallel.pick_device(run.device, local_rank)
    parallel.keep_freed_memory()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(run.cpus_per_worker)))
    source, model, seq_len = build(spec, device)
    a = model.args
    facts = {
        "shape": {
            "d_model": a.d_model,
            "n_layers": a.n_layers,
            "n_heads": a.n_heads,
            "mlp_hidden": a.hidden,
            "vocab_size": a.vocab_size,
        },
        "params": param_counts(model.args),
        "flops_per_token": flops_per_token(model.args),
        "seq_len": seq_len,
        "data": source.describe(),
        "world_size": world,
        "device": str(device),
        "torch": torch.__version__,
    }
    bf16 = spec.precision == "bf16"
    sharded = world > 1 or run.fsdp
    facts["speed"] = speed.prepare(model, run, device)  # AC, compile: before FSDP2 (torchtitan)
    if sharded:
        parallel.apply_fsdp(model, device, world, bf16=bf16)
    # bf16: FSDP2 mixed precision on CUDA; autocast everywhere else (+ SDPA backends on CUDA)
    autocast = speed.compute_context(device, bf16, sharded)
    params = list(model.parameters())
    opt = make_optimizer(model, spec)
    facts["speed"]["fused_adamw"] = bool(opt.defaults.get("fused"))
    ewa = [p.detach().clone() for p in params] if spec.ewa_decay else []
    s = Setup(trial, rank, world, device, source, model, opt, seq_len, autocast, params, ewa)
    return s, facts


class Loop:
    """The optimizer steps of one trial, from `start` to total_steps."""

    def __init__(self, s: Setup, rec: Recorder, noise: NoiseScale, on_log, flush_curve: bool):
        self.s, self.rec, self.noise = s, rec, noise
        self.on_log, self.flush = on_log, flush_curve
        spec, run = s.trial.spec, s.trial.run
        self.spec, self.run = spec, run
        self.lrs = spec.lr_array()
        self.per_rank = spec.batch_size // s.world
        self.micro = run.micro_batch_size or self.per_rank
        eval_tokens = s.source.eval_batch(spec.eval_batch_size, s.seq_len)
        self.eval_rows = torch.tensor_split(eval_tokens, s.world)[s.rank].to(s.device)
        self.diverge_at = spec.diverge_loss or 2 * math.log(s.source.vocab_size) + 1
        self.noise_value: float | None = None
        self.fork_steps: set[int] = set()  # other trials start from this one's state there
        self.crash_at = int(os.environ.get("SCALELAB_KILL_AT_STEP", "0"))  # fault injection

    def loss_fn(self, mb: torch.Tensor) -> torch.Tensor:
        return self.s.model(*datasets.inputs_targets(mb))[1]

    def evaluate(self) -> float:
        """Mean loss per token on the fixed held-out batch (all ranks' shares)."""
        s = self.s
        s.model.eval()
        with torch.no_grad(), s.autocast:
            _, tok = s.model(*datasets.inputs_targets(self.eval_rows), reduction="none")
            mask = self.eval_rows[:, 1:] != -100
            total, n = parallel.all_reduce_sum(
                [float(tok[mask].sum()), float(mask.sum())], s.device
            )
        s.model.train()
        return total / n

    def evaluate_ewa(self) -> float:
        params = self.s.params
        backup = [p.detach().clone() for p in params]
        torch._foreach_copy_([p.data for p in params], self.s.ewa)
        loss = self.evaluate()
        torch._foreach_copy_([p.data for p in params], backup)
        return loss

    def step(self, step: int) -> StepStats:
        """Update `step` (0-based). Its scalars stay on the device until a row reads them."""
        s, spec, run = self.s, self.spec, self.run
        lr = float(self.lrs[step])
        batch = s.source.batch(step, spec.batch_size, s.seq_len, s.rank, s.world)
        batch = speed.to_device(batch, s.device)
        probe = bool(run.noise_every) and step % run.noise_every == 0
        chunks = micro_chunks(self.per_rank, self.micro, probe)
        stats = forward_backward(
            self.loss_fn, batch, s.params, chunks, probe, spec.optim.grad_clip, s.autocast
        )
        apply_update(s.opt, s.params, lr, s.ewa, spec.ewa_decay)
        parallel.all_reduce_(stats.loss_sum)  # summed over ranks, on the device
        return stats

    def run_steps(self, start: int) -> None:
        """One host sync per logged row: the steps since the last row are read then, in order,
        moving the noise scale and checking divergence step by step. A diverging trial so runs
        up to log_every - 1 updates past its first bad step, and records that step as before.
        At a fork step (another trial starts from here) the steps are read too, and the state
        saved, whether or not a row is due: reading early changes no number."""
        spec, run = self.spec, self.run
        t_log, tok_log = time.time(), start * spec.tokens_per_step
        self.s.model.train()
        pending: list[tuple[int, StepStats]] = []
        for step in range(start, spec.total_steps):
            pending.append((step, self.step(step)))
            last = step + 1 == spec.total_steps
            due = not ((step + 1) % run.log_every and (step + 1) % run.eval_every and not last)
            fork = step + 1 in self.fork_steps
            if not (due or fork):
                continue
            read_all([st for _, st in pending])  # one device -> host copy
            for at, st in pending:
                if st.g2_small is not None:  # grad norm is measured before clipping
                    b = spec.batch_size
                    self.noise_value = self.noise.update(b // 2, b, st.g2_small, st.grad_norm**2)
                done, train_loss, gn = at + 1, st.loss / self.s.world, st.grad_norm
                bad = not math.isfinite(train_loss) or train_loss > self.diverge_at
                if bad:
                    break
            pending.clear()
            if due or bad:
                now = time.time()
                tokens = done * spec.tokens_per_step
                row = {
                    "step": done,
                    "tokens": tokens,
                    "lr": float(self.lrs[done - 1]),
                    "train_loss": train_loss,
                    "eval_loss": None,
                    "ewa_eval_loss": None,
                    "grad_norm": gn,
                    "noise_scale": self.noise_value,
                    "tokens_per_s": (tokens - tok_log) / max(now - t_log, 1e-9),
                    "elapsed_s": now - self.rec.t_start,
                }
                t_log, tok_log = now, tokens
                if bad:
                    self.rec.rows.append(row)
                    raise Diverged(f"train loss {train_loss:.4g} at step {done}")
                self.log_row(row, done, last)
            if fork:
                self.save(step + 1, fork=True)

    def log_row(self, row: dict, done: int, last: bool) -> None:
        spec, run = self.spec, self.run
        if done % run.eval_every == 0 or last:
            row["eval_loss"] = self.evaluate()
            if self.s.ewa:
                row["ewa_eval_loss"] = self.evaluate_ewa()
        self.rec.add(row, spec.total_steps)
        if row["eval_loss"] is not None:
            if self.flush:
                self.rec.flush_curve()
            if self.on_log and not last:  # the last row is reported once trial.json is written
                self.on_log(row)
        if run.checkpoint_every and done % run.checkpoint_every == 0 and not last:
            self.save(done)
        if done == self.crash_at and self.s.rank == 0:  # as if the OOM killer hit
            os.kill(os.getpid(), signal.SIGKILL)

    def save(self, done: int, fork: bool = False) -> None:
        """The resume checkpoint (the newest only), or a fork checkpoint (kept) with `fork`."""
        s = self.s
        extra = {"meta": {"noise": [*self.noise.state(), self.noise_value]}}
        if "forked_from" in self.rec.record:  # provenance survives a resume
            extra["meta"]["forked_from"] = self.rec.record["forked_from"]
        if s.ewa:
            extra["tensors"] = {"ewa": s.ewa}
        where = {"keep": None, "folder": checkpoint.FORKS} if fork else {}
        checkpoint.save(self.rec.out, done, s.model, s.opt, extra, self.rec.rows, s.rank, **where)


def resume_state(s: Setup, out: Path, noise: NoiseScale, record: dict, fork: dict | None = None):
    """(first step, curve rows so far, noise value) from the newest good checkpoint. One whose
    files do not match its manifest is moved aside (recorded in `record`), and the next older
    one is tried; then the trunk's checkpoint at the fork step (`fork`: its "path", "trial",
    "content_hash", "step"), recorded as `forked_from`; else the trial starts from step 0. A
    damaged fork checkpoint is left for the driver and recorded: the trial trains its prefix
    itself, with the same numbers."""
    for ckpt in reversed(checkpoint.candidates(out)):
        try:
            checkpoint.verify(ckpt)
        except checkpoint.BadCheckpoint as e:
            record.setdefault("bad_checkpoints", []).append(str(e))
            parallel.barrier()  # every rank has verified before rank 0 moves it
            if s.rank == 0:
                checkpoint.move_aside(ckpt)
            parallel.barrier()
            continue
        meta, rows = _load(s, ckpt, noise)
        if "forked_from" in meta:
            record["forked_from"] = meta["forked_from"]
        return meta["step"], rows, meta["noise"][2]
    if fork:
        try:
            meta, rows = _load(s, Path(fork["path"]), noise)
        except (checkpoint.BadCheckpoint, OSError) as e:
            record["fork_checkpoint_bad"] = f"{type(e).__name__}: {e}"
        else:
            record["forked_from"] = {k: fork[k] for k in ("trial", "content_hash", "step")}
            return meta["step"], rows, meta["noise"][2]
    return 0, [], None


def _load(s: Setup, ckpt: Path, noise: NoiseScale) -> tuple[dict, list[dict]]:
    meta, rows = checkpoint.load(ckpt, s.model, s.opt, {"ewa": s.ewa} if s.ewa else None)
    noise.load(meta["noise"])
    return meta, rows


def train(
    spec: TrialSpec | Trial,
    out_dir: str | Path,
    run: RunConfig | None = None,
    *,
    on_log: Callable[[dict], None] | None = None,
    wandb_mode: str | None = None,
    resume: bool = True,
    flush_curve: bool = False,
    record_extra: dict | None = None,
    fork_steps: tuple[int, ...] | list[int] = (),
    fork_from: dict | None = None,
) -> dict:
    """Train one trial; return its trial.json record (on every rank).

    on_log(row) is called on every rank at each eval step and at the end (Ray reporting).
    flush_curve rewrites curve.parquet at every eval, for trials a scheduler may stop early.
    fork_steps: save a fork checkpoint after these updates (DIR/forks/, kept at the end).
    fork_from: start from a trunk's fork checkpoint ({"path", "trial", "content_hash",
    "step"}) unless the trial has a checkpoint of its own (prefix.py).
    """
    t_start = time.time()
    trial = spec if isinstance(spec, Trial) else Trial(spec, run or RunConfig())
    trial.validate()
    out = Path(out_dir)
    first = int(os.environ.get("RANK", "0")) == 0
    if first:  # `status` shows it running from now on
        touch(out / HEARTBEAT)
    try:
        s, facts = setup(trial)
    except Exception as e:  # failed before it could train: say so in trial.json, then raise
        if first:
            failed = new_record(trial, **(record_extra or {}))
            failed.update(status="failed", error=f"{type(e).__name__}: {e}", steps_done=0)
            files.write_json(out / "trial.json", failed)
        raise
    rec = Recorder(out, new_record(trial, **facts, **(record_extra or {})), s.rank, t_start)
    try:  # anything after the start ends the trial as failed (never "running"), then re-raises
        status, error, diverged_step = _run(
            s, rec, out, resume, wandb_mode, on_log, flush_curve, fork_steps, fork_from
        )
    except Exception as e:
        rec.finish("failed", f"{type(e).__name__}: {e}")
        raise
    record = rec.finish(status, error, diverged_step)
    if s.rank == 0:
        checkpoint.clear(out)
    if on_log and status == "completed":
        on_log(rec.rows[-1])
    parallel.barrier()
    return record


def _run(s: Setup, rec, out, resume, wandb_mode, on_log, flush_curve, fork_steps, fork_from):
    """Resume (or fork), train, measure knowledge: (status, error, diverged step)."""
    if s.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.clear_partial(out)
    parallel.barrier()
    noise = NoiseScale()
    start, rows, noise_value = (
        resume_state(s, out, noise, rec.record, fork_from) if resume else (0, [], None)
    )
    forked = rec.record.get("forked_from")
    if start and not (forked and forked["step"] == start):
        rec.record["resumed_from"] = start
    rec.rows = rows
    rec.start(s.trial, wandb_mode)
    loop = Loop(s, rec, noise, on_log, flush_curve)
    loop.noise_value = noise_value
    loop.fork_steps = {k for k in fork_steps if start < k < s.trial.spec.total_steps}
    try:
        loop.run_steps(start)
    except Diverged as e:
        return "diverged", str(e), rec.rows[-1]["step"]
    except Stopped as e:
        return "stopped", str(e), None
    if s.trial.spec.knowledge_eval:
        rec.record["knowledge"] = knowledge.measure(s.model, s.source, s.device, out, s.rank)
    return "completed", None, None
