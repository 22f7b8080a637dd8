"""GPU check: a GPT-2-small-shaped model (124M with a 50,257-token vocabulary) trained in bf16
with FSDP2 through our trainer; prints tokens/s and MFU (model FLOPs utilisation).

    python bench/gpu_train.py [--steps 300] [--batch 16] [--seq-len 1024] [--peak-tflops 989]

The corpus is the synthetic PCFG stream written to a nanoGPT-style uint16 .bin file and read
by the `tokens` source with vocab_size 50,257, so the embedding and LM head have GPT-2's
shape. MFU = tokens/s x flops_per_token / peak, with flops_per_token = 6N + 12 L d T (PaLM
App. B) and the peak dense bf16 rate of the GPU (H100 SXM: 989 TFLOP/s). The baseline in the
same process is the plain single-GPU loop (no FSDP) of the same model: the ratio shows what
FSDP2 costs on one GPU.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import torch

from scalelab import data as datasets
from scalelab.config import (
    DataSpec,
    ModelSpec,
    OptimSpec,
    RunConfig,
    ScheduleSpec,
    Trial,
    TrialSpec,
)
from scalelab.train import train


def corpus(path: Path, n_tokens: int) -> Path:
    src = datasets.build("pcfg", n_tokens=n_tokens)
    rows = src.batch(0, n_tokens // 1025, 1024).numpy().reshape(-1)
    rows.astype(np.uint16).tofile(path)
    return path


def run(spec: Trial) -> tuple[dict, pl.DataFrame]:
    with tempfile.TemporaryDirectory() as d:
        rec = train(spec, d)
        return rec, pl.read_parquet(Path(d) / "curve.parquet")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU")
    tmp = Path(tempfile.mkdtemp())
    path = corpus(tmp / "pcfg.bin", 8_000_000)
    spec = TrialSpec(
        name="gpt2-124M-bf16-fsdp2",
        model=ModelSpec("124M"),
        optim=OptimSpec(lr=6e-4),
        schedule=ScheduleSpec("cosine", 30),
        batch_size=a.batch,
        seq_len=a.seq_len,
        data=DataSpec("tokens", params={"path": str(path), "dtype": "uint16", "vocab_size": 50257}),
        total_steps=a.steps,
        eval_batch_size=16,
        precision="bf16",
    )
    trial = Trial(spec, RunConfig(eval_every=100, noise_every=0, fsdp=True, device="cuda"))
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    plain = trial.replace(fsdp=False, name="plain")
    for label, s in (("FSDP2 (1 rank)", trial), ("plain + autocast", plain)):
        rec, curve = run(s)
        steady = curve.filter(pl.col("step") > 20)["tokens_per_s"].median()
        mfu = steady * rec["flops_per_token"] / (a.peak_tflops * 1e12)
        print(
            f"{label:18s} params {rec['params']['total'] / 1e6:.1f}M  status {rec['status']}  "
            f"loss {curve['train_loss'][0]:.3f} -> {curve['train_loss'][-1]:.3f}  "
            f"eval {rec['final_eval_loss']:.3f}  {steady:,.0f} tokens/s  MFU {mfu:.3f}"
        )


if __name__ == "__main__":
    main()
