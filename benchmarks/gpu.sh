#!/usr/bin/env bash
# Issue 10's GPU figures in one command, on a CUDA machine, within about 8 minutes: training memory and step
# time per method (full fine-tuning and LoRA) on a ≈0.7B Qwen-Image-architecture model, bf16, 512², batch 4,
# and the inference speed-up. Writes benchmarks/results/gpu/gpu.json and gpu.md. The CPU check of the same
# script: python benchmarks/gpu.py --device cpu --size tiny --resolution 32 --out /tmp/gpu_check
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
rm -rf runs/gpu
"$PYTHON" benchmarks/gpu.py --device cuda --out benchmarks/results/gpu "$@"
