#!/usr/bin/env bash
# The prepared GPU run of the 2:4 runtime benchmark (ViT-B/16 and ViT-L/16, batch 64 and 256,
# fp16 and bf16, ToMe r = 0 and 8, eager and CUDA-graph). Needs one CUDA GPU with torch;
# JAX is optional (without it the Flax parity check is skipped: it also runs in the CPU tests).
# Stops starting new measurements after BUDGET_S seconds (default 240) and is killed after
# 290 s, so it finishes in under 5 minutes on an H100/H200.
# Writes notebooks/results/gpu_runtime_<device>.json; commit that file, and
# notebooks/05_gpu_runtime.ipynb plots it.
#
#   bash scripts/gpu_runtime.sh            # uses $PYTHON, else .venv/bin/python, else python3
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
DEV=$("$PY" -c "import re, torch; print(re.sub(r'[^A-Za-z0-9]+', '_', torch.cuda.get_device_name(0)).strip('_'))")
OUT=notebooks/results/gpu_runtime_${DEV}.json
mkdir -p notebooks/results
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv || true
# The Flax parity check runs on the CPU: keep JAX off the GPU that torch is timing.
export JAX_PLATFORMS=cpu XLA_PYTHON_CLIENT_PREALLOCATE=false
# `import mpjax` is light and the runtime imports no JAX: where JAX is missing, only the
# parity check is skipped (recorded in the JSON).
rc=0
timeout 290 "$PY" -m mpjax bench runtime --arch vit-b16,vit-l16 --batch 64,256 \
  --tome 0,8 --dtype fp16,bf16 --modes eager,graph --iters 50 --warmup 10 \
  --budget-s "${BUDGET_S:-240}" --json "$OUT" || rc=$?
if [[ $rc -ne 0 ]]; then echo "benchmark ended with exit code $rc; partial results (if any) in $OUT"; fi
echo "results: $OUT"
exit $rc
