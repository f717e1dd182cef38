#!/usr/bin/env bash
# The real-size figure of benchmarks/speed.md on a GPU machine (no downloads): an SD3 pipeline folder whose
# text encoders and VAE have the widths of the 0.7b bench transformer, then `apexgen bench --inference` with
# the 0.7b transformer (bf16, 512²), then the GPU-marked must-show test. Usage: bash benchmarks/speed_gpu.sh [OUT]
set -euo pipefail
OUT=${1:-runs/speed_gpu}
export PYTHONPATH=src:. HF_HUB_OFFLINE=1
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"
[ -f "$OUT/sd3_0.7b/model_index.json" ] || "$PYTHON" benchmarks/tiny_pipeline.py --backbone sd3 --widths 0.7b --out "$OUT/sd3_0.7b"
"$PYTHON" -m apexgen.cli bench --inference --backbone sd3 --model "$OUT/sd3_0.7b" --size 0.7b --device cuda \
    --repeats 10 --out "$OUT/bench_sd3_0.7b_$(date +%Y%m%d_%H%M%S)"
"$PYTHON" -m pytest -q -m gpu tests/run/test_bench_inference.py
