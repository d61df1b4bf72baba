#!/usr/bin/env bash
# The GPU check in one command, for a machine with a CUDA device and the stack installed with a CUDA
# build of torch (e.g. `TORCH_SPEC=torch==2.5.1 make install`):
#   1. every layer runner with a GPU path on the device against the torch runner on the CPU: "torch"
#      for every exit policy (tests/models/device_test.py), "cuda" in fp32 (layers within 1e-4,
#      the same exits; packed, padded, carried) and fp16/bf16 (the same labels)
#      (tests/modules/layer_runners/cuda_runner_device_test.py); then the model, engine and module
#      tests (on the CPU of that machine);
#   2. bench/exit_speed.py on the device: the first-head exit against the full model, batch 1 and 32.
# Usage: bash bench/gpu_check.sh [OUTPUT_DIR]   (default: build/gpu_check)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-build/gpu_check}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')"
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
"$PY" -m pytest -q -p no:warnings -rs tests/models/device_test.py \
    tests/modules/layer_runners/cuda_runner_device_test.py tests/models/inference_engine_test.py \
    tests/models/batch_stream_test.py tests/modules 2>&1 | tee "$OUT/tests.log"
"$PY" bench/exit_speed.py --device cuda --output "$OUT/exit_speed.md"
echo "written: $OUT/tests.log, $OUT/exit_speed.md"
