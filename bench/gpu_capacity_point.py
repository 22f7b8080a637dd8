"""GPU: the first point of the capacity study's cluster preset (Allen-Zhu & Li 2024 setting):
bioS N = 10,000 people, the "1M" GPT, 1000 exposures, trained in bf16 on one GPU, then
measured in fp32 / int8 / int4 (knowledge.json).

    python bench/gpu_capacity_point.py [--index 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import capacity  # noqa: E402  (the study file)

from scalelab.sweep import expand  # noqa: E402
from scalelab.train import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--out", default="/tmp/capacity_point")
    a = ap.parse_args()
    trial = expand(capacity.CLUSTER)[a.index]
    rec = train(trial, a.out)
    k = rec["knowledge"]
    keep = ("n_people", "params_used", "bits", "max_bits", "bits_int8", "bits_int4", "p1", "p2")
    print(
        trial.name,
        rec["status"],
        f"{rec['wall_s']:.0f}s",
        f"{rec['tokens_seen'] / 1e6:.0f}M tokens",
    )
    print(json.dumps({key: k.get(key) for key in keep}, indent=1))
    print(f"bits/param {k['bits'] / k['params_used']:.3f}  of max {k['bits'] / k['max_bits']:.1%}")


if __name__ == "__main__":
    main()
