#!/usr/bin/env bash
# The GPU check of issue 15 in ONE device call (H200 or H100; under 8 minutes of wall time:
# the three steps are cut at 150 + 200 + 105 s, and each keeps what it wrote before a cut):
#   1. tests/test_gpu.py: FSDP2 bf16 learns; compile + activation checkpointing + fused AdamW
#      match the eager run; no host sync inside a step; 4 trials packed on one GPU
#   2. bench/gpu_train.py: tokens/s and MFU, 124M and 350M at seq 1024 in bf16, plain and
#      FSDP2 (1 rank), compile off/on (FSDP2 over all GPUs too when there are several)
#   3. bench/gpu_pack.py: 4 concurrent 5M trials vs the same 4 one after another (then the
#      packed phase again under CUDA MPS, if the machine has it; the server is stopped after)
# Everything lands under $OUT (at most 8 files come back): env.txt, pytest_gpu.log,
# gpu_train.log, gpu_train.json, gpu_pack.log, gpu_pack.json, summary.txt.
#
# The device image has python3 (3.12) with torch, numpy, pyarrow, scipy, rich, typer and
# pytest, but not polars, ray or wandb; the GPU path needs only polars. So, HERE first:
#     bench/gpu_wheels.sh          # polars wheels into .gpuwheels/ (git-ignored, ~54 MB)
# then the device call:
#     run(command="bash bench/gpu_check.sh", carry=[".gpuwheels"], timeout_s=560)
# Nothing is installed from the network. Dry run on a CPU machine (tiny models, same steps):
#     OUT=out bench/gpu_check.sh --dry-run
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
mkdir -p "$OUT"
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
PY=${PY:-python3}
[ $DRY = 1 ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONUNBUFFERED=1 PYTHONPATH="platform:analysis${PYTHONPATH:+:$PYTHONPATH}"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/scalelab_inductor}
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*" | tee -a "$OUT/summary.txt"; }

if ls .gpuwheels/*.whl >/dev/null 2>&1 && ! $PY -c "import polars" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .gpuwheels/*.whl || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

{
    date -u
    nvidia-smi 2>&1 || echo "no nvidia-smi"
    $PY - <<'EOF'
import importlib, sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", torch.cuda.get_device_name(), "x", torch.cuda.device_count(), f"{p.total_memory / 2**30:.0f} GiB",
          "sm", f"{p.major}.{p.minor}", "SMs", p.multi_processor_count)
    print("flash sdp", torch.backends.cuda.flash_sdp_enabled(), "cudnn sdp", torch.backends.cuda.cudnn_sdp_enabled())
for m in ("numpy", "polars", "pyarrow", "scipy", "statsmodels", "rich", "typer", "pytest", "ray", "wandb", "triton"):
    try:
        print(f"  {m:12s}", getattr(importlib.import_module(m), "__version__", "?"))
    except Exception as e:
        print(f"  {m:12s} MISSING ({type(e).__name__})")
EOF
} > "$OUT/env.txt" 2>&1
stamp "env: $(grep -m1 '^python' "$OUT/env.txt"); $(grep -m1 '^gpu' "$OUT/env.txt" || echo 'no GPU')"

# 1. correctness on the GPU first: the speed numbers mean something only if these pass
timeout 150 $PY -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py -s > "$OUT/pytest_gpu.log" 2>&1
stamp "pytest tests/test_gpu.py: rc $? -- $(tail -n 1 "$OUT/pytest_gpu.log")"

# 2. trainer speed: the most useful rows first (a timeout keeps the rows already written)
if [ $DRY = 1 ]; then
    TRAIN_ARGS=(--device cpu --tiny)
    PACK_ARGS=(--device cpu --tiny)
else
    TRAIN_ARGS=(--sizes 124M,350M --modes fsdp,plain,fsdp-all --compile off,on --steps 40)
    PACK_ARGS=(--size 5M --steps 200 --mps)
fi
timeout 200 $PY bench/gpu_train.py "${TRAIN_ARGS[@]}" --json "$OUT/gpu_train.json" \
    > "$OUT/gpu_train.log" 2>&1
stamp "gpu_train: rc $?"
grep -E "^(device|peak|[0-9]+[KM]-|fsdp-all|  )" "$OUT/gpu_train.log" | tee -a "$OUT/summary.txt"

# 3. packing small trials on one GPU
timeout 105 $PY bench/gpu_pack.py "${PACK_ARGS[@]}" --json "$OUT/gpu_pack.json" \
    > "$OUT/gpu_pack.log" 2>&1
stamp "gpu_pack: rc $?"
grep -E "^(wall|ratio|sequential|packed|mps)" "$OUT/gpu_pack.log" | tee -a "$OUT/summary.txt"
stamp "done"
