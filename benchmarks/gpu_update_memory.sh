#!/usr/bin/env bash
# Memory of the RL update on one GPU (docs/DESIGN.md, "The update fits a GPU"): first the shape probe of
# configs/qwen3-math.yaml (Qwen3-4B's shape, random weights, the recipe's sizes, sampling included), then the update's
# peak memory and time against rows x tokens at Qwen3-1.7B's shape. About 9 minutes on one H200; logs in $OUT.
# trl, gepa, datasets and pydantic travel as wheels in .whl/ (benchmarks/device_setup.sh).
# Device tool: kind nvidia-h200, carry [".whl"], command: bash benchmarks/gpu_update_memory.sh
set -uo pipefail
source benchmarks/device_setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
quiet() { grep --line-buffered -v -E "Warning|warnings.warn|Loading weights|Writing model|it/s\]"; }
timeout 370 python3 benchmarks/recipe_shape_probe.py --budget-s 320 2>&1 | quiet | tee "$OUT/recipe_shape_probe.log"
echo "== recipe_shape_probe exit ${PIPESTATUS[0]}"
timeout 170 python3 benchmarks/update_memory.py --budget-s 140 2>&1 | quiet | tee "$OUT/update_memory.log"
echo "== update_memory exit ${PIPESTATUS[0]}"
