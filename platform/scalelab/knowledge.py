"""Knowledge measurement after training on bioS / bioD (Allen-Zhu & Li 2024, arXiv 2404.05405).

Per-fact losses p1/p2/p3 (laws.md §3) on the training facts, in fp32, written to knowledge.json
beside curve.parquet; the bits are computed on the analysis side (scalelaws.capacity).
"""

from __future__ import annotations

from pathlib import Path

import torch

from scalelab import data as datasets
from scalelab import files


def measure(model, source, device, out: Path, rank: int) -> dict:
    """p1/p2/p3 and the data's metadata; rank 0 writes knowledge.json."""
    fe = source.fact_eval()
    model.eval()
    losses = []
    with torch.no_grad():
        for rows in torch.split(fe.tokens, 256):
            rows = rows.to(device)
            _, tok = model(*datasets.inputs_targets(rows), reduction="none")
            losses.append(tok.float().cpu())
    result = dict(source.fact_losses(torch.cat(losses), facts=fe))
    result.update(source.knowledge_meta())
    result = {k: (sorted(v) if isinstance(v, set) else v) for k, v in result.items()}
    if rank == 0:
        files.write_json(Path(out) / "knowledge.json", result)
    return result
