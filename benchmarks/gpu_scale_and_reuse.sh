#!/usr/bin/env bash
# Issues 14 and 15 on one H200, in the fewest device calls (each call pays the machine's start):
#   part 1 (~9 min): the shape probe of configs/qwen3-math.yaml, the update's memory at Qwen3-1.7B's shape
#                    (what gpu_update_memory.sh runs, with shorter budgets), and the wall clock per RL step of RL,
#                    FST and FST + reuse (gpu_reuse.sh time)
#   part 2 (~6 min): val accuracy of FST with and without reuse, RL for reference, full preset, 3 seeds
#                    (gpu_reuse.sh accuracy), then rollout throughput of the HF engines (gpu_rollout_throughput.sh)
# Device tool: kind nvidia-h200, carry [".whl"], command: bash benchmarks/gpu_scale_and_reuse.sh 1|2
set -uo pipefail
source benchmarks/device_setup.sh
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; echo "cores $(nproc)"; } | tee "$OUT/hardware.txt"
quiet() { grep --line-buffered -v -E "Warning|warnings.warn|Loading weights|Writing model|it/s\]"; }
export PYTHONPATH=$PYTHONPATH:$PWD/benchmarks
case "${1:-1}" in
  1) timeout 185 python3 benchmarks/recipe_shape_probe.py --budget-s 150 2>&1 | quiet | tee "$OUT/recipe_shape_probe.log"
     echo "== recipe_shape_probe exit ${PIPESTATUS[0]}"
     timeout 140 python3 benchmarks/update_memory.py --budget-s 110 2>&1 | quiet | tee "$OUT/update_memory.log"
     echo "== update_memory exit ${PIPESTATUS[0]}"
     timeout 200 python3 benchmarks/reuse_step_time.py --preset full --steps 12 --out "$OUT/reuse_step_time" 2>&1 | quiet \
       | tee "$OUT/reuse_step_time.log"
     echo "== reuse_step_time exit ${PIPESTATUS[0]}" ;;
  2) timeout 260 python3 benchmarks/reuse_accuracy.py --preset full --seeds 3 --out /tmp/reuse 2>&1 | quiet \
       | tee "$OUT/reuse_accuracy.log"
     echo "== reuse_accuracy exit ${PIPESTATUS[0]}"
     cp /tmp/reuse/reuse/results.md "$OUT/reuse_accuracy.md" 2>/dev/null
     timeout 110 python3 benchmarks/rollout_throughput.py --model qwen3-1.7b --problems 32 --rollouts 8 --members 4 \
       --system-tokens 300 --problem-tokens 100 --new-tokens 256 2>&1 | quiet | tee "$OUT/rollout_throughput_qwen3-1.7b.md"
     echo "== rollout_throughput exit ${PIPESTATUS[0]}" ;;
esac
