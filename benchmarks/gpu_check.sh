#!/usr/bin/env bash
# The CUDA paths of edgevid end to end on a GPU machine, in well under 10 minutes:
#   1. a few training steps with AMP (fp16 and bf16) on CUDA,
#   2. the torch CUDA backend in fp32 and bf16 (autocast), with parity against the CPU,
#   3. ONNX Runtime's CUDA provider (when onnxruntime-gpu is installed), with parity,
#   4. a live run on the GPU whose report carries GPU memory,
#   5. TensorRT engines (fp32, fp16, int8 from the Q/DQ ONNX) where the tensorrt package imports.
# Needs a Python with a CUDA build of torch (NVIDIA's wheel on a Jetson). Usage, from the repository root:
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # results and logs under OUT_DIR (default runs/gpu_check)
# Each step prints PASS/FAIL/SKIP with its reason; the exit code is the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "FAIL setup: $PY has no CUDA build of torch (or sees no GPU); install one first" >&2
  exit 1
fi
if ! "$PY" -c "import edgevid" 2>/dev/null; then
  # the machine's CUDA torch stays: edgevid and its other dependencies only
  "$PY" -m pip install -q --no-deps -e . && "$PY" -m pip install -q numpy onnx onnxruntime onnxslim \
    onnxconverter-common openvino nncf torch-pruning opencv-python-headless av typer rich psutil pyyaml matplotlib \
    || { echo "FAIL setup: could not install edgevid's dependencies" >&2; exit 1; }
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
"$PY" -m benchmarks.gpu_check "$OUT" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
