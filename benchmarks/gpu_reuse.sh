#!/usr/bin/env bash
# Rollout reuse on the GPU machine (issue #14), one H200: what for docs/RESULTS.md.
#   time:     wall clock per RL step of RL, FST and FST + reuse, full-preset sizes, one seed, one run at a time
#             (benchmarks/reuse_step_time.py, ~3 min)
#   accuracy: val accuracy of FST, FST + reuse and RL, full preset, 3 seeds, the 9 runs sharing the GPU
#             (benchmarks/reuse_accuracy.py, ~4 min)
# Usage (device tool): kind nvidia-h200, carry [".whl"], command: bash benchmarks/gpu_reuse.sh time|accuracy
# Further arguments go to the Python script (on a CPU, to check this script: `... time --tiny`, `... accuracy --steps 2 --seeds 1`).
set -uo pipefail
source benchmarks/device_setup.sh
WHAT=${1:-time}; shift || true
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"; echo "cores $(nproc)"; } | tee "$OUT/hardware.txt"
case "$WHAT" in
  time) timeout 290 python3 benchmarks/reuse_step_time.py --preset full --out "$OUT/reuse_step_time" "$@" 2>&1 \
          | grep -v "it/s\]" | tee "$OUT/reuse_step_time.log" ;;
  accuracy) timeout 290 python3 benchmarks/reuse_accuracy.py --preset full --seeds 3 --out /tmp/reuse "$@" 2>&1 \
              | tee "$OUT/reuse_accuracy.log"
            cp /tmp/reuse/reuse/results.md "$OUT/reuse_accuracy.md" ;;
  *) echo "usage: bash benchmarks/gpu_reuse.sh time|accuracy" >&2; exit 2 ;;
esac
