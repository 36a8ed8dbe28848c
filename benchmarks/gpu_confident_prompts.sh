#!/usr/bin/env bash
# Issue 12 on the GPU machine: benchmarks/confident_prompts.py (arms x 3 seeds in parallel processes on one GPU), then
# benchmarks/signal_anatomy.py on the trained runs. Device call: kind nvidia-h200, carry [".whl"],
#   bash benchmarks/gpu_confident_prompts.sh [LIMIT_S] [ARMS...]
# Results come back in $OUT: confident_prompts.md, anatomy.md, runs.tgz (metrics and populations of every run).
set -uo pipefail
source benchmarks/device_setup.sh
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
LIMIT=${1:-480}; shift || true
ARMS=${*:-rl fst fst-keep rl-T1.3 fst-T1.3 fst-signal}
WORK=/tmp/confident
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; echo "cores $(nproc)"; date -u; } | tee "$OUT/hardware.txt"
n=$(( $(echo $ARMS | wc -w) * 3 ))
timeout "$LIMIT" python3 benchmarks/confident_prompts.py --out $WORK --seeds 3 --workers "$n" --arms $ARMS \
  2>&1 | grep -v -i warn > "$OUT/confident_prompts.log"
cp $WORK/confident_prompts.md "$OUT/" 2>/dev/null
run() { ls -d $WORK/runs/$1-s$2-* 2>/dev/null | head -1; }
{
  for seed in 0 1; do
    fst=$(run fst-fst $seed); rl=$(run rl-rl $seed); sig=$(run fst-signal-fst $seed)
    [ -n "$fst" ] && python3 benchmarks/signal_anatomy.py "$fst" --population 0 --weights base
    [ -n "$fst" ] && python3 benchmarks/signal_anatomy.py "$fst" --population 9 --weights final
    [ -n "$rl" ] && python3 benchmarks/signal_anatomy.py "$rl" --population seed --weights final
    [ -n "$sig" ] && python3 benchmarks/signal_anatomy.py "$sig" --population 9 --weights final
  done
} 2>/dev/null > "$OUT/anatomy.md"
tar czf "$OUT/runs.tgz" -C $WORK --exclude='checkpoints' --exclude='gepa' --exclude='trl' --exclude='export' runs
tail -n 40 "$OUT/confident_prompts.md" 2>/dev/null || tail -n 20 "$OUT/confident_prompts.log"
