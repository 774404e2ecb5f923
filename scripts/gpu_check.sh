#!/usr/bin/env bash
# The GPU check in one command: every GPU path (PyTorch CUDA, ONNX Runtime CUDA, TensorRT fp32/fp16/int8) against the
# CPU's fp32 outputs, one table (ros2_monodepth/tools/gpu_check.py). Skipped, with the reason, where there is no GPU.
#   scripts/gpu_check.sh [--checkpoint DIR] [--network-size 640x192] [--out gpu_check.json]
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$HERE/.venv/bin/python}
[ -x "$PY" ] || PY=python3
cd "$HERE" && exec "$PY" -m ros2_monodepth.tools.gpu_check "$@"
