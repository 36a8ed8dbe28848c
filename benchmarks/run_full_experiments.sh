#!/usr/bin/env bash
# The eight experiments with the `full` preset on the GPU machine (16 cores + 1 GPU), results back as results.tgz.
# trl, gepa and datasets travel as wheels in .whl/ (as in gpu_e2e.sh). Device tool: kind nvidia-h100-x1,
# carry [".whl"], command: bash benchmarks/run_full_experiments.sh [LIMIT_S]
# ($OUT returns at most 8 files, so the results come back as one tar: tar xzf results.tgz.)
# Every run process holds ~7 GiB of GPU memory at its peak (full preset, micro model): 16 processes on one 80 GB
# H100 ran out of memory, so the default is one worker per 7.5 GiB of GPU memory, at most one per core.
set -uo pipefail
source benchmarks/device_setup.sh
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
GPU_MIB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | awk '{s += $1} END {print s}')
FIT=$(( GPU_MIB / 7680 )); WORKERS=${WORKERS:-$(( FIT < $(nproc) ? FIT : $(nproc) ))}
{ nvidia-smi --query-gpu=name --format=csv,noheader; echo "cores $(nproc), workers $WORKERS"; } | tee "$OUT/hardware.txt"
timeout "${1:-540}" python3 benchmarks/run_experiments.py --preset full --seeds "${SEEDS:-3}" --out /tmp/experiments \
  --workers "$WORKERS" --collect /tmp/collect 2>&1 | grep -v -i warn > "$OUT/run_full_experiments.log"
grep -E "^== " "$OUT/run_full_experiments.log"
mkdir -p /tmp/collect  # experiments are collected as they finish, so a time limit keeps what finished
tar czf "$OUT/results.tgz" -C /tmp collect
