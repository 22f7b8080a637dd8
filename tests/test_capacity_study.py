"""Knowledge capacity end to end: RTN quantizer, knowledge.json from train(), `fit capacity`.

Allen-Zhu & Li 2024 (arXiv 2404.05405); formulas in docs/laws.md §3.
"""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
import typer
from typer.testing import CliRunner

import scalelab.commands.capacity  # noqa: F401  (registers `fit capacity`)
from scalelab import data as datasets
from scalelab import knowledge, results
from scalelab.commands import fit_app
from scalelab.config import (
    DataSpec,
    ModelSpec,
    OptimSpec,
    RunConfig,
    ScheduleSpec,
    Trial,
    TrialSpec,
)
from scalelab.model import GPT, model_args
from scalelab.quantize import channel_scales, qmax, quantize_model_, quantize_rtn, quantized
from scalelab.train import train
from scalelaws.capacity.fit import trial_table
from scalelaws.capacity.law import biod_bits

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# ---- quantizer ------------------------------------------------------------------------------


def test_levels_and_per_channel_scales():
    assert (qmax(8), qmax(4), qmax(2)) == (127, 7, 1)
    with pytest.raises(ValueError, match="bits"):
        qmax(1)
    w = torch.tensor([[1.1, -2.0, 0.5], [0.0, 0.0, 0.0], [3.0, 1.0, -1.0]])
    # one scale per row: max|row| / qmax; a zero row keeps scale 1
    assert channel_scales(w, 8).tolist() == pytest.approx([2 / 127, 1.0, 3 / 127])
    assert channel_scales(w, 4).tolist() == pytest.approx([2 / 7, 1.0, 3 / 7])
    q = quantize_rtn(w, 4)
    # row 0 at scale 2/7: 1.1 -> round(3.85) = 4 -> 8/7; -2 -> -7 -> -2; 0.5 -> round(1.75) = 2
    assert q[0].tolist() == pytest.approx([8 / 7, -2.0, 4 / 7])
    assert q[1].tolist() == [0.0, 0.0, 0.0]
    assert q[2].tolist() == pytest.approx([3.0, 6 / 7, -6 / 7])  # 1 / (3/7) = 2.33 -> 2
    with pytest.raises(ValueError, match="ndim"):
        channel_scales(torch.ones(3), 8)


def test_rtn_error_int8_small_int4_larger():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(256, 512, generator=g)
    w[:8] *= 1000.0  # rows at wildly different scales: per-channel scales keep the others exact
    rel = {}
    for b in (8, 4):
        q = quantize_rtn(w, b)
        scale = channel_scales(w, b)[:, None]
        k = (q / scale).round()
        assert torch.allclose(q, k * scale)  # integer multiples of the row's scale
        assert k.abs().max() == qmax(b)  # the largest |w| of each row maps to ±qmax
        assert ((q - w).abs() <= scale / 2 + 1e-6 * scale).all()  # round-to-nearest
        assert max(len(torch.unique(row)) for row in k) <= 2 * qmax(b) + 1
        row_err = (q - w).norm(dim=1) / w.norm(dim=1)
        rel[b] = float(row_err[8:].mean())  # the ordinary rows
        assert float(row_err.max()) < 3 * rel[b]  # the x1000 rows do not swamp the others
    # uniform rounding error: |e|/|w| ≈ (amax/qmax)/√12 / σ with amax ≈ 3.3σ for 512 Gaussians
    assert rel[8] == pytest.approx(3.3 / 127 / math.sqrt(12), rel=0.15)
    assert rel[4] == pytest.approx(3.3 / 7 / math.sqrt(12), rel=0.15)
    assert rel[8] < 0.01 < 0.1 < rel[4] < 0.2
    assert rel[4] / rel[8] == pytest.approx(127 / 7, rel=0.08)  # step sizes 127/7 apart


def test_quantized_context_restores_weights_bit_for_bit():
    torch.manual_seed(0)
    net = GPT(model_args("6K", vocab_size=40, seq_len=12))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with quantized(net, 4) as stats:
        assert stats["matrices"] == 1 + 2 * 4  # embedding + per block qkv, proj, fc, proj
        for name, p in net.named_parameters():
            if p.ndim == 1:  # norm gains stay fp32
                assert torch.equal(p, before[name])
            else:
                assert not torch.equal(p, before[name])
                levels = (p / channel_scales(before[name], 4)[:, None]).round()
                assert levels.abs().max() <= 7
                assert torch.allclose(p, levels * channel_scales(before[name], 4)[:, None])
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert quantize_model_(net, 8)["rel_error"] < 0.01  # in place, int8


# ---- a tiny bioD study through train() and `fit capacity` -------------------------------------

N_PEOPLE = 64
BATCH = 64


def _spec(size: str, exposures: int, name: str) -> Trial:
    steps = exposures * N_PEOPLE // BATCH
    spec = TrialSpec(
        name=name,
        study="cap_test",
        model=ModelSpec(size),
        optim=OptimSpec(lr=2e-2, beta2=0.98),
        schedule=ScheduleSpec("cosine", steps // 20, {"final_lr": 2e-3}),
        data=DataSpec("biod", params={"n_people": N_PEOPLE}),
        batch_size=BATCH,
        seq_len=12,
        total_steps=steps,
        knowledge_eval=True,
        grid={"exposures": exposures},
    )
    return Trial(spec, RunConfig(eval_every=steps, log_every=steps, noise_every=0, device="cpu"))


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("capacity")
    for size, e in (("6K", 150), ("14K", 150), ("6K", 15)):
        name = f"{size}-E{e}"
        rec = train(_spec(size, e, name), root / "trials" / name, wandb_mode="disabled")
        assert rec["status"] == "completed"
    results.collect(root)
    return root


def test_knowledge_json_is_flat_and_consistent(study):
    src = datasets.build("biod", n_people=N_PEOPLE)
    meta = src.knowledge_meta()
    k = json.loads((study / "trials" / "6K-E150" / "knowledge.json").read_text())
    # P = non-embedding + used rows x d: 2·(12·16² + 2·16) + 16 = 6,224 + used x 16
    assert k["params_non_embedding"] == 6224
    assert k["params_used"] == 6224 + len(meta["used_token_ids"]) * 16
    assert k["n_used_tokens"] == len(meta["used_token_ids"]) < src.vocab_size
    for suffix in ("", "_int8", "_int4"):
        want = biod_bits(N_PEOPLE, 8, 1, 64, 1, 64, *(k[f"p{i}{suffix}"] for i in (1, 2, 3)), 64**3)
        assert k[f"bits{suffix}"] == pytest.approx(want, rel=1e-12)
    assert 0 < k["bits"] < k["max_bits"] == pytest.approx(meta["max_bits"])
    assert k["bits_int8"] == pytest.approx(k["bits"], rel=0.05)  # int8 keeps the facts
    assert k["bits_int4"] < k["bits_int8"]
    assert 0 < k["quant_error_int8"] < 0.02 < k["quant_error_int4"]
    runs = pl.read_parquet(study / "runs.parquet")
    row = runs.filter(pl.col("trial") == "6K-E150").row(0, named=True)
    for key in ("p1_int8", "p3_int4", "bits", "bits_int4", "params_used", "tokens_per_epoch"):
        assert row[f"knowledge.{key}"] == pytest.approx(k[key])
    # more exposures, more bits
    short = json.loads((study / "trials" / "6K-E15" / "knowledge.json").read_text())
    assert short["bits"] < k["bits"] - 1000


def test_measure_restores_fp32_weights(tmp_path):
    src = datasets.build("biod", n_people=N_PEOPLE)
    torch.manual_seed(1)
    net = GPT(model_args("6K", src.vocab_size, src.seq_len))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    got = knowledge.measure(net, src, torch.device("cpu"), tmp_path, rank=0)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    again = knowledge.fact_losses(net, src, src.fact_eval(), torch.device("cpu"))
    assert again["p1"] == got["p1"] and again["p2"] == got["p2"]
    # an untrained model: names near ln N0, values near ln(vocab) (no format learned yet)
    assert got["p1"] == pytest.approx(3 * math.log(src.vocab_size), rel=0.05)
    assert (tmp_path / "knowledge.json").exists()


FSDP_SCRIPT = """
import json, sys, torch
from scalelab import data as datasets, knowledge, parallel
from scalelab.model import GPT, model_args
rank, world, _ = parallel.init_distributed("cpu")
src = datasets.build("biod", n_people=64)
torch.manual_seed(0)
net = GPT(model_args("6K", src.vocab_size, src.seq_len))
with torch.no_grad():  # spread the weights so that rounding matters; same on every rank
    g = torch.Generator().manual_seed(1)
    for p in net.parameters():
        p.add_(torch.randn(p.shape, generator=g) * 0.3)
if world > 1:
    parallel.apply_fsdp(net, torch.device("cpu"), world)
r = knowledge.measure(net, src, torch.device("cpu"), sys.argv[1], rank)
again = knowledge.fact_losses(net, src, src.fact_eval(), torch.device("cpu"))
if rank == 0:
    json.dump({**r, "p1_again": again["p1"]}, open(sys.argv[1] + "/out.json", "w"))
"""


@pytest.mark.integration
def test_measure_under_fsdp_matches_one_process(tmp_path):
    """int8/int4 on FSDP2 shards (2 gloo ranks, row-sharded) = on the whole matrices."""
    script = tmp_path / "m.py"
    script.write_text(FSDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    subprocess.run([sys.executable, script, tmp_path / "one"], env=env, check=True, timeout=300)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run(
        [BIN / "torchrun", "--nproc-per-node", "2", "--master-port", str(port), script]
        + [tmp_path / "two"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "out.json").read_text())
    two = json.loads((tmp_path / "two" / "out.json").read_text())
    for k in ("p1", "p2", "p1_int8", "p2_int8", "p1_int4", "p2_int4", "bits_int4"):
        assert two[k] == pytest.approx(one[k], rel=1e-6), k
    assert abs(one["p1_int4"] - one["p1"]) > 1e-3  # rounding did change the losses
    assert two["p1_again"] == two["p1"]  # fp32 weights restored on the shards


def cli_app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(fit_app, name="fit")
    return app


def test_fit_capacity_cli(study, tmp_path):
    out, png = tmp_path / "cap.json", tmp_path / "cap.png"
    args = ["fit", "capacity", "--runs", str(study), "--out", str(out), "--plot", str(png)]
    res = CliRunner().invoke(cli_app(), [*args, "--bound-frac", "1.0"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    trials = {t["name"]: t for t in doc["trials"]}
    assert set(trials) == {"6K-E150", "14K-E150", "6K-E15"}
    k = json.loads((study / "trials" / "14K-E150" / "knowledge.json").read_text())
    t = trials["14K-E150"]
    assert (t["exposures"], t["n_people"], t["params"]) == (150, N_PEOPLE, k["params_used"])
    assert t["bits"] == pytest.approx(k["bits"], rel=1e-9)
    assert t["ratio"] == pytest.approx(k["bits"] / k["params_used"])
    assert t["ratio_max"] == pytest.approx(k["max_bits"] / k["params_used"])
    assert t["bits_int4"] == pytest.approx(k["bits_int4"], rel=1e-9)
    assert trials["6K-E15"]["exposures"] == 15
    # ratio: the 150-exposure group, OLS through the origin R = Σ P·b / Σ P² (bound_frac 1: both)
    r = doc["ratio"]
    sel = [trials["6K-E150"], trials["14K-E150"]]
    want = sum(x["params"] * x["bits"] for x in sel) / sum(x["params"] ** 2 for x in sel)
    assert (r["exposures"], r["n_bound"]) == (150, 2)
    assert r["estimate"] == pytest.approx(want, rel=1e-9)
    assert r["interval"][0] <= want <= r["interval"][1]
    assert r["peak"] == pytest.approx(max(x["ratio"] for x in sel))
    want8 = sum(x["params"] * x["bits_int8"] for x in sel) / sum(x["params"] ** 2 for x in sel)
    assert doc["quantized"]["int8"]["estimate"] == pytest.approx(want8, rel=1e-9)
    assert "round-to-nearest" in doc["quantized"]["method"]
    by_e = {g["exposures"]: g for g in doc["groups"]}
    # 15 exposures: the one trial is undertrained (fp32 bits < 0): said, and left out of R
    assert trials["6K-E15"]["bits"] < 0
    assert by_e[15]["estimate"] is None and "no trial with positive bits" in by_e[15]["error"]
    negative = [d for d in doc["diagnostics"] if d["code"] == "NEGATIVE_BITS"]
    assert [d["subject"] for d in negative] == ["6K-E15"]
    undefined = {d["subject"] for d in doc["diagnostics"] if d["code"] == "RETENTION_UNDEFINED"}
    assert undefined == {"6K-E15"} and trials["6K-E15"]["retained_int8"] is None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # errors: a folder without runs.parquet -> one line on the CLI's error path, exit 2
    from scalelab.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["fit", "capacity", "--runs", str(tmp_path), "--out", str(tmp_path / "x.json")])
    assert exit_.value.code == 2


def test_trial_table_needs_knowledge_columns():
    runs = pl.DataFrame({"trial": ["a"], "status": ["completed"], "data": ["pcfg"]})
    with pytest.raises(ValueError, match="knowledge_eval=True"):
        trial_table(runs)


def test_study_file_presets_expand():
    from scalelab import study as studies
    from scalelab.sweep import expand

    mod = studies.load(REPO / "experiments" / "capacity.py")
    assert mod.SPEC is mod.PRESETS["quick"]
    quick = expand(mod.PRESETS["quick"])
    assert len(quick) == 18
    assert {t.run.cpus_per_worker for t in quick} == {1}
    assert all(t.spec.knowledge_eval for t in quick)
    # 1000 exposures of N = 500 compact people: 500·12·1000 tokens / (128·12) = 3906 steps
    t = next(t for t in quick if "6K" in t.name and "npeople500-E1000" in t.name)
    assert t.spec.total_steps == 3906 and t.spec.schedule.warmup_steps == 195
    assert t.spec.grid["exposures"] == 1000
    cluster = expand(mod.PRESETS["cluster"])
    assert {t.spec.data.name for t in cluster} == {"bios"}
    assert min(t.spec.data.params["n_people"] for t in cluster) == 10_000
    assert all(t.run.gpus_per_worker == 1 and t.spec.precision == "bf16" for t in cluster)
