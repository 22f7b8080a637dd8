"""Knowledge measurement after training on bioS / bioD (Allen-Zhu & Li 2024, arXiv 2404.05405).

Per-fact losses p1/p2/p3 (docs/laws.md §3) on the training facts, in fp32, for the trained weights
and for int8 and int4 per-channel symmetric round-to-nearest copies of them (quantize.py; the
fp32 weights are restored afterwards). Written flat to knowledge.json beside curve.parquet, so
results.run_row turns every number into a `knowledge.<key>` column of runs.parquet:

    p1, p2, p3                   fp32 weights (nats, summed over a name's / value's tokens)
    p1_int8 .. p3_int4           the same with RTN int8 / int4 weights
    quant_error_int8 / _int4     |W_q - W| / |W| over the weight matrices
    bits, bits_int8, bits_int4   scalelaws.capacity.law.knowledge_bits of the losses above
    max_bits                     the data's maximum (docs/laws.md §3)
    params_used                  non-embedding + used_token_ids x d_model (tied: counted once)
    params_non_embedding, d_model, n_used_tokens, tokens_per_epoch, and the data's metadata
"""

from __future__ import annotations

from pathlib import Path

import torch

from scalelab import data as datasets
from scalelab import files, model
from scalelab.quantize import quantized

QUANT_BITS = (8, 4)  # int8, int4


def fact_losses(net, source, fe, device) -> dict:
    """p1/p2/p3 (and p2_by_attribute) of `net` in fp32 on the fact rows `fe`."""
    net.eval()
    losses = []
    with torch.no_grad():
        for rows in torch.split(fe.tokens, 256):
            rows = rows.to(device)
            _, tok = net(*datasets.inputs_targets(rows), reduction="none")
            losses.append(tok.float().cpu())
    return dict(source.fact_losses(torch.cat(losses), facts=fe))


def used_params(net, n_used_tokens: int) -> dict:
    """Parameter counts of the capacity law: embedding rows of unused tokens not counted."""
    args = net.args
    counts = model.param_counts(args)
    return {
        "params_used": counts["non_embedding"] + n_used_tokens * args.d_model,
        "params_non_embedding": counts["non_embedding"],
        "d_model": args.d_model,
        "n_used_tokens": n_used_tokens,
    }


def measure(net, source, device, out: Path, rank: int) -> dict:
    """fp32 / int8 / int4 fact losses, bits and parameter counts; rank 0 writes knowledge.json."""
    from scalelaws.capacity.law import knowledge_bits

    fe = source.fact_eval()
    meta = source.knowledge_meta()
    result = fact_losses(net, source, fe, device)
    for b in QUANT_BITS:
        with quantized(net, b) as stats:
            q = fact_losses(net, source, fe, device)
        result.update({f"{k}_int{b}": q[k] for k in ("p1", "p2", "p3")})
        result[f"quant_error_int{b}"] = stats["rel_error"]
    for suffix in ("", *(f"_int{b}" for b in QUANT_BITS)):
        p = [result[f"{k}{suffix}"] for k in ("p1", "p2", "p3")]
        result[f"bits{suffix}"] = float(knowledge_bits(meta, *p))
    result.update(meta)
    result.update(used_params(net, len(meta["used_token_ids"])))
    result["tokens_per_epoch"] = source.tokens_per_epoch
    result = {k: (sorted(v) if isinstance(v, set) else v) for k, v in result.items()}
    if rank == 0:
        files.write_json(Path(out) / "knowledge.json", result)
    return result
