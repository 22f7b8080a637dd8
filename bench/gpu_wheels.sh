#!/usr/bin/env bash
# Wheels the GPU machine lacks, for bench/gpu_check.sh (run HERE, on the host with pip access).
# The device image has python3.12 with torch, numpy, pyarrow, scipy, rich, typer, pytest; of our
# dependencies the trainer's path needs only polars (files.py, checkpoint.py). Ray and W&B are
# not needed there (the benches run trials as plain processes, W&B off).
# Usage: bench/gpu_wheels.sh   -> .gpuwheels/*.whl (git-ignored); carry ".gpuwheels" in the call
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VER=$($PY -c "import polars; print(polars.__version__)")
mkdir -p .gpuwheels
plat=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
    manylinux2014_x86_64 manylinux1_x86_64; do plat+=(--platform "$p"); done
# polars >= 1.34 ships its compiled part as polars-runtime-32 (same version)
pkgs=("polars==$VER")
if $PY -m pip show polars-runtime-32 >/dev/null 2>&1; then pkgs+=("polars-runtime-32==$VER"); fi
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d .gpuwheels "${pkgs[@]}"
ls -la .gpuwheels
du -sh .gpuwheels
