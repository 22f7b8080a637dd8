"""How a trial runs fast on CUDA, applied around the single-device model (torchtitan order):
activation checkpointing, then torch.compile per block, then FSDP2 (`parallel.apply_fsdp`).
Plus, always on CUDA: fused AdamW, the flash SDPA backend first, TF32 for the fp32 matmuls
that remain, and batches copied to the GPU without a host sync.

None of it touches a CPU run with the default RunConfig (compile "auto" is off on CPU, no
activation checkpointing): there the trainer runs exactly the ops it always ran, so CPU curves
stay bit for bit what they were (tests/test_migrate.py).

What each switch changes (README "Speed"):
- compile: inductor fuses the block (norms, rotary, GELU, residual adds) into a few kernels;
  numbers change by rounding, never in meaning (tests/test_gpu.py holds the bf16 loss of a
  compiled run within 3% of the eager one, row by row).
- activation checkpointing: a block keeps only its input (B·T·d values) and recomputes the
  rest in backward, where it would keep ~34·B·T·d bytes in 16-bit (Korthikanti et al. 2022,
  without the attention matrix that flash attention never stores); the price is one more
  forward of the blocks: forward ≈ 1/3 of forward + backward, so ~1/3 more block compute.
  Same numbers on CPU (tests/test_speed.py).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

# SDPA backends in priority order on CUDA: flash (bf16/fp16), memory-efficient (fp32 too), the
# math fallback; torch 2.13's own order, cuDNN left out (pinned so flash stays first)
SDPA_PRIORITY = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")
COMPILE_BACKEND = "inductor"  # tests on CPU use "aot_eager": same wiring, no C++ build


def compile_on(setting: str | bool, device: torch.device) -> bool:
    """RunConfig.compile resolved: "auto" = on for CUDA, off on CPU."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def apply_ac(model: torch.nn.Module) -> None:
    """Wrap every block for activation checkpointing (non-reentrant). The wrapper drops its
    `_checkpoint_wrapped_module.` prefix from state-dict keys, so checkpoints stay loadable with
    it on or off. The model draws no random numbers (no dropout): no RNG state to keep."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for i, block in enumerate(model.blocks):
        model.blocks[i] = checkpoint_wrapper(block, preserve_rng_state=False)


def apply_compile(model: torch.nn.Module, backend: str | None = None) -> None:
    """torch.compile each block (torchtitan `apply_compile`): the blocks share one code object,
    so one compile serves them all. fullgraph: a graph break is a bug to fix, not to hide.
    dynamic=False: the few shapes (micro-batch, noise-probe half, eval share) each get a static
    graph. Checkpoint keys keep their names (torch DCP drops `_orig_mod.`).

    Dynamo's caches are reset first: a Ray actor trains trial after trial in one process, and
    each model size adds compiled entries to the same Block.forward, up to the recompile limit
    (8), past which dynamo would silently run new shapes eagerly."""
    torch._dynamo.reset()
    backend = backend or COMPILE_BACKEND
    for i, block in enumerate(model.blocks):
        model.blocks[i] = torch.compile(block, backend=backend, fullgraph=True, dynamic=False)


def enable_tf32(device: torch.device) -> None:
    """fp32 matmuls on CUDA through TF32 tensor cores (10-bit mantissa inputs, fp32 sums); bf16
    runs do almost none (the loss's logits.float() is not a matmul). No effect on CPU.

    Through set_float32_matmul_precision, which sets the legacy flag and the torch >= 2.9
    `fp32_precision` together: setting only `torch.backends.cuda.matmul.fp32_precision` makes
    torch.get_float32_matmul_precision() raise ("mix of the legacy and new APIs"), and
    inductor's cache key calls it, so every compile would fail (tests/test_speed.py)."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")


def adamw_kwargs(params) -> dict:
    """fused=True when every parameter lives on CUDA (FSDP2 DTensors too: their device is the
    local shard's); {} otherwise, which keeps torch's CPU default (the for-loop AdamW)."""
    params = list(params)
    if params and all(p.device.type == "cuda" for p in params):
        return {"fused": True}
    return {}


class Compute:
    """The context of every forward (train and eval), re-entered per micro-batch: bf16 autocast
    where FSDP2 does not already cast (as before), and on CUDA the SDPA backend priority."""

    def __init__(self, device: torch.device, bf16: bool, sharded: bool):
        self.device = device
        self.autocast_on = bf16 and not (sharded and device.type == "cuda")
        self._stack: list = []

    def __enter__(self):
        ctxs = []
        if self.autocast_on:
            ctxs.append(torch.autocast(self.device.type, dtype=torch.bfloat16))
        if self.device.type == "cuda":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            order = [getattr(SDPBackend, name) for name in SDPA_PRIORITY]
            ctxs.append(sdpa_kernel(order, set_priority=True))
        for c in ctxs:
            c.__enter__()
        self._stack.append(ctxs)
        return self

    def __exit__(self, *exc):
        for c in reversed(self._stack.pop()):
            c.__exit__(*exc)
        return False


def compute_context(device: torch.device, bf16: bool, sharded: bool):
    """On CPU exactly what the trainer always used: bf16 autocast or nothing."""
    if device.type == "cuda":
        return Compute(device, bf16, sharded)
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The batch on `device`. On CUDA through pinned memory, non-blocking: a plain .to() of
    pageable memory waits for the GPU's queue to drain (a host sync every step)."""
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def prepare(model: torch.nn.Module, run, device: torch.device) -> dict:
    """Activation checkpointing and compile (before FSDP2), TF32; returns what was applied."""
    compiled = compile_on(run.compile, device)
    if run.activation_checkpointing:
        apply_ac(model)
    if compiled:
        apply_compile(model)
    enable_tf32(device)
    return {
        "compile": compiled,
        "activation_checkpointing": run.activation_checkpointing,
        "tf32": device.type == "cuda",
        "sdpa_priority": list(SDPA_PRIORITY) if device.type == "cuda" else None,
    }
