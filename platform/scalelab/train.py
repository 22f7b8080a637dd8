"""The per-worker training loop of one trial; rank 0 writes the trial's curve and trial.json.

Runs the same in a plain process, under torchrun, and inside a Ray Train worker. World size
> 1 means FSDP2 (gloo on CPU, NCCL on GPU). Output, written atomically:
    DIR/curve.parquet   one row per logged step (schema in README)
    DIR/trial.json      spec, parameter counts, status completed/diverged/failed, timings
    DIR/progress.json   live step counter for `scalelab status` (rank 0, throttled)
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from scalelab import checkpoint, files, knowledge, parallel
from scalelab import data as datasets
from scalelab.config import TrialSpec
from scalelab.model import GPT, flops_per_token, model_args, param_counts
from scalelab.tracking import Tracker

STATUS_DONE = ("completed", "diverged", "stopped")  # final: a rerun skips these


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
    args = model_args(
        spec.model.size, source.vocab_size, seq_len, mlp=spec.model.mlp, norm=spec.model.norm
    )
    torch.manual_seed(spec.seed)  # same init on every rank before sharding
    model = GPT(args).to(device)
    return source, model, seq_len


def make_optimizer(model, spec: TrialSpec):
    """AdamW; weight decay on 2-D weights only (nanoGPT)."""
    o = spec.optim
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": o.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)


def grad_sq_norm(params) -> float:
    """|g|^2 over all (possibly sharded) gradients."""
    grads = [p.grad for p in params if p.grad is not None]
    n = torch.nn.utils.get_total_norm(grads, 2.0)
    n = n.full_tensor() if hasattr(n, "full_tensor") else n
    return float(n) ** 2


class NoiseScale:
    """Gradient noise scale B_simple (McCandlish et al. 2018, App. A.1; laws.md §2).

    From |G|^2 at two batch sizes B_small < B_big:
        |G|^2  ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
        tr(S)  ~ (|G_small|^2 - |G_big|^2) / (1/B_small - 1/B_big)
    numerator and denominator smoothed separately (EMA), then B_simple = tr(S) / |G|^2.
    Here B_small = half the global batch (the first half of the micro-batches; with 2 ranks and
    no accumulation that is exactly one rank's batch) and B_big = the global batch, in sequences.
    """

    def __init__(self, decay: float = 0.9):
        self.decay, self.g2, self.tr = decay, 0.0, 0.0

    def update(self, b_small: int, b_big: int, g2_small: float, g2_big: float) -> float:
        g2 = (b_big * g2_big - b_small * g2_small) / (b_big - b_small)
        tr = (g2_small - g2_big) / (1 / b_small - 1 / b_big)
        self.g2 = self.decay * self.g2 + (1 - self.decay) * g2
        self.tr = self.decay * self.tr + (1 - self.decay) * tr
        return self.tr / self.g2 if self.g2 > 0 else float("nan")


def train(
    spec: TrialSpec,
    out_dir: str | Path,
    *,
    on_log: Callable[[dict], None] | None = None,
    wandb_mode: str | None = None,
    resume: bool = True,
    flush_curve: bool = False,
    record_extra: dict | None = None,
) -> dict:
    """Train one trial; return its trial.json record (on every rank).

    on_log(row) is called on every rank at each eval step and at the end (Ray reporting).
    flush_curve rewrites curve.parquet at every eval, for trials a scheduler may stop early.
    """
    spec.validate()
    out = Path(out_dir)
    t_start = time.time()
    rank, world, local_rank = parallel.init_distributed(spec.device, force=spec.fsdp)
    if world != spec.workers:
        raise ValueError(f"workers: spec asks for {spec.workers} ranks but {world} are running")
    device = parallel.pick_device(spec.device, local_rank)
    parallel.keep_freed_memory()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(spec.cpus_per_worker)))

    source, model, seq_len = build(spec, device)
    counts = param_counts(model.args)
    record = {
        "name": spec.name,
        "study": spec.study,
        "spec": spec.to_dict(),
        "content_hash": spec.content_hash(),
        "params": counts,
        "flops_per_token": flops_per_token(model.args),
        "seq_len": seq_len,
        "data": source.describe(),
        "status": "running",
        "world_size": world,
        "device": str(device),
        "torch": torch.__version__,
    }
    record.update(record_extra or {})  # e.g. the Ray node of the trial's driver
    if world > 1 or spec.fsdp:
        parallel.apply_fsdp(model, device, world)
    opt = make_optimizer(model, spec)
    params = list(model.parameters())
    ewa = [p.detach().clone() for p in params] if spec.ewa_decay else []
    lrs = spec.lr_array()

    noise = NoiseScale()
    noise_value = None
    crash_at = int(os.environ.get("SCALELAB_KILL_AT_STEP", "0"))  # fault injection (tests)

    # ---- resume ----
    start, rows = 0, []
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.clear_partial(out)
    parallel.barrier()
    ckpt = checkpoint.latest(out) if resume else None
    if ckpt is not None:
        meta, rows = checkpoint.load(ckpt, model, opt, {"ewa": ewa} if ewa else None)
        start = meta["step"]
        noise.g2, noise.tr, noise_value = meta["noise"]
        record["resumed_from"] = start
    tracker = Tracker(spec, out, wandb_mode) if rank == 0 else None
    if rank == 0:  # "running" until the end; only completed/diverged count as done
        files.write_json(out / "trial.json", record)

    per_rank = spec.batch_size // world
    micro = spec.micro_batch_size or per_rank
    n_micro = per_rank // micro
    eval_tokens = source.eval_batch(spec.eval_batch_size, seq_len)
    eval_rows = torch.tensor_split(eval_tokens, world)[rank].to(device)
    diverge_at = spec.diverge_loss or 2 * math.log(source.vocab_size) + 1
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and world == 1
        else nullcontext()
    )

    def evaluate() -> float:
        model.eval()
        with torch.no_grad(), autocast:
            _, tok = model(*datasets.inputs_targets(eval_rows), reduction="none")
            mask = eval_rows[:, 1:] != -100
            s, n = parallel.all_reduce_sum([float(tok[mask].sum()), float(mask.sum())], device)
        model.train()
        return s / n

    def evaluate_ewa() -> float:
        backup = [p.detach().clone() for p in params]
        torch._foreach_copy_([p.data for p in params], ewa)
        loss = evaluate()
        torch._foreach_copy_([p.data for p in params], backup)
        return loss

    status, error, diverged_step = "completed", None, None
    t_log, tok_log = time.time(), start * spec.tokens_per_step
    model.train()
    try:
        for step in range(start, spec.total_steps):
            lr = float(lrs[step])
            for g in opt.param_groups:
                g["lr"] = lr
            batch = source.batch(step, spec.batch_size, seq_len, rank, world).to(device)
            chunks = 2 if n_micro == 1 and per_rank % 2 == 0 else n_micro
            measure = spec.noise_every and step % spec.noise_every == 0 and chunks % 2 == 0
            chunks = chunks if measure else n_micro
            loss_sum, g2_small = 0.0, None
            for i, mb in enumerate(torch.tensor_split(batch, chunks)):
                with autocast:
                    _, loss = model(*datasets.inputs_targets(mb))
                (loss / chunks).backward()
                loss_sum += float(loss.detach()) / chunks
                if measure and i == chunks // 2 - 1:  # gradient of the first half-batch
                    g2_small = grad_sq_norm(params) * 4  # grads hold half of the mean: x2, squared
            if spec.optim.grad_clip:
                gn = torch.nn.utils.clip_grad_norm_(params, spec.optim.grad_clip)
                gn = float(gn.full_tensor() if hasattr(gn, "full_tensor") else gn)
            else:
                gn = grad_sq_norm(params) ** 0.5
            if g2_small is not None:  # gn is measured before clipping
                noise_value = noise.update(spec.batch_size // 2, spec.batch_size, g2_small, gn**2)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if ewa:  # exponentially weighted average of the weights
                torch._foreach_lerp_(ewa, [p.detach() for p in params], 1 - spec.ewa_decay)
            (train_loss,) = parallel.all_reduce_sum([loss_sum], device)
            train_loss /= world
            done = step + 1
            last = done == spec.total_steps
            bad = not math.isfinite(train_loss) or train_loss > diverge_at
            if done % spec.log_every and done % spec.eval_every and not last and not bad:
                continue
            now = time.time()
            tokens = done * spec.tokens_per_step
            row = {
                "step": done,
                "tokens": tokens,
                "lr": lr,
                "train_loss": train_loss,
                "eval_loss": None,
                "ewa_eval_loss": None,
                "grad_norm": gn,
                "noise_scale": noise_value,
                "tokens_per_s": (tokens - tok_log) / max(now - t_log, 1e-9),
                "elapsed_s": now - t_start,
            }
            t_log, tok_log = now, tokens
            if bad:
                rows.append(row)
                raise Diverged(f"train loss {train_loss:.4g} at step {done}")
            if done % spec.eval_every == 0 or last:
                row["eval_loss"] = evaluate()
                if ewa:
                    row["ewa_eval_loss"] = evaluate_ewa()
            rows.append(row)
            if rank == 0:
                tracker.log(row)
                tracker.progress(done, spec.total_steps, row)
            if row["eval_loss"] is not None:
                if flush_curve and rank == 0:
                    files.write_parquet(out / "curve.parquet", files.curve_frame(rows))
                if on_log and not last:  # the last row is reported once trial.json is written
                    on_log(row)
            if spec.checkpoint_every and done % spec.checkpoint_every == 0 and not last:
                extra = {"meta": {"noise": [noise.g2, noise.tr, noise_value]}}
                if ewa:
                    extra["tensors"] = {"ewa": ewa}
                checkpoint.save(out, done, model, opt, extra, rows, rank)
            if done == crash_at and rank == 0:  # as if the OOM killer or a preemption hit
                os.kill(os.getpid(), signal.SIGKILL)
    except Diverged as e:
        status, error, diverged_step = "diverged", str(e), rows[-1]["step"]
    except Stopped as e:
        status, error = "stopped", str(e)
    except Exception as e:
        status, error = "failed", f"{type(e).__name__}: {e}"
        _finish(out, record, rows, status, error, None, t_start, tracker, rank)
        raise
    if status == "completed" and spec.knowledge_eval:
        record["knowledge"] = knowledge.measure(model, source, device, out, rank)
    _finish(out, record, rows, status, error, diverged_step, t_start, tracker, rank)
    if rank == 0:
        checkpoint.clear(out)
    if on_log and status == "completed":
        on_log(rows[-1])
    parallel.barrier()
    return record


def _finish(out, record, rows, status, error, diverged_step, t_start, tracker, rank) -> None:
    """Fill in the record on every rank; rank 0 writes curve.parquet, then trial.json."""
    evals = [r["eval_loss"] for r in rows if r["eval_loss"] is not None]
    record.update(
        status=status,
        error=error,
        diverged_step=diverged_step,
        steps_done=rows[-1]["step"] if rows else 0,
        tokens_seen=rows[-1]["tokens"] if rows else 0,
        final_train_loss=rows[-1]["train_loss"] if rows else None,
        final_eval_loss=evals[-1] if evals else None,
        best_eval_loss=min(evals) if evals else None,
        wall_s=time.time() - t_start,
        finished_at=time.time(),
    )
    if rank != 0:
        return
    files.write_parquet(out / "curve.parquet", files.curve_frame(rows))
    files.write_json(out / "trial.json", record)
    if tracker:
        tracker.finish(record)
