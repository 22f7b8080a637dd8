"""GPU-only: bf16 + FSDP2 (NCCL) training of a real model. Skips cleanly without CUDA."""

from __future__ import annotations

import pytest
import torch

from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.train import train

pytestmark = pytest.mark.gpu

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_fsdp2_bf16_on_one_gpu_learns(tmp_path):
    spec = TrialSpec(
        name="gpu",
        model=ModelSpec("20M"),
        optim=OptimSpec(lr=1e-3),
        schedule=ScheduleSpec("cosine", 10),
        data=DataSpec("pcfg"),
        batch_size=32,
        seq_len=256,
        total_steps=60,
        precision="bf16",
    )
    rec = train(spec, tmp_path, RunConfig(eval_every=30, fsdp=True, device="cuda"))
    assert rec["status"] == "completed" and rec["device"].startswith("cuda")
    assert rec["final_eval_loss"] < 0.8 * rec["data"]["unigram_entropy"]
