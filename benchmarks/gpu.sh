#!/usr/bin/env bash
# Issue 10's GPU figures in one command, on a CUDA machine, within about 8 minutes (no downloads): the
# inference speed-up (an SD3 pipeline folder at the 0.7b widths, benchmarks/tiny_pipeline.py, its 0.7b
# transformer, bf16, 512²: the CFG teacher at 50 steps against the student at 1, 2, 4), then training memory
# and step time per method (full fine-tuning and LoRA) on a ≈0.7B Qwen-Image-architecture model, bf16,
# 512², batch 4, each method in a fresh process. Writes benchmarks/results/gpu/gpu.json and gpu.md.
# The CPU check of the same script: see the docstring of benchmarks/gpu.py.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src:. HF_HUB_OFFLINE=1
PYTHON=${PYTHON:-.venv/bin/python}
rm -rf runs/gpu
"$PYTHON" benchmarks/tiny_pipeline.py --backbone sd3 --widths 0.7b --out runs/gpu/sd3_0.7b
"$PYTHON" benchmarks/gpu.py --device cuda --inference-model runs/gpu/sd3_0.7b --out benchmarks/results/gpu "$@"
