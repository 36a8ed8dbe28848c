#!/usr/bin/env bash
# Issue 12's remedy on the GPU machine, at the same time: the confident-prompt task (benchmarks/confident_prompts.py,
# arms fst-member and fst-remedy, 3 seeds, cores 0-5) and tasks it was not designed on: the efficiency, continual and
# zero-reward experiments, full preset, 3 seeds, with the remedy on in every run (cores 6-15).
# Device call: kind nvidia-h200, carry [".whl"], bash benchmarks/gpu_remedy.sh [LIMIT_S]
# Back in $OUT: confident_prompts.md, anatomy.md, experiments.tgz (results.md etc.), runs.tgz (metrics, populations).
set -uo pipefail
source benchmarks/device_setup.sh
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
LIMIT=${1:-470}
REMEDY=(--set rl.advantage_baseline=member --set loop.rollout_allocation=signal --set loop.keep_signal_member=true)
pin() { python3 -c 'import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(",")}); os.execvp(sys.argv[2], sys.argv[2:])' "$@"; }
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; echo "cores $(nproc)"; date -u; } | tee "$OUT/hardware.txt"
pin 0,1,2,3,4,5 timeout "$LIMIT" python3 benchmarks/confident_prompts.py --out /tmp/confident --seeds 3 --workers 6 \
  --arms fst-member fst-remedy 2>&1 | grep -v -i warn > "$OUT/confident_prompts.log" &
pin "$(seq -s, 6 $(( $(nproc) - 1 )))" timeout "$LIMIT" python3 benchmarks/run_experiments.py --preset full --seeds 3 \
  --only efficiency continual zero-reward --workers 12 --out /tmp/experiments --collect /tmp/collect "${REMEDY[@]}" \
  2>&1 | grep -v -i warn > "$OUT/run_experiments.log"
wait
cp /tmp/confident/confident_prompts.md "$OUT/" 2>/dev/null
run() { ls -d /tmp/confident/runs/$1-s$2-* 2>/dev/null | head -1; }
for seed in 0 1; do
  r=$(run fst-remedy-fst $seed)
  [ -n "$r" ] && python3 benchmarks/signal_anatomy.py "$r" --population 9 --weights final 2>&1 | grep -v -i warn
done > "$OUT/anatomy.md"
mkdir -p /tmp/collect; tar czf "$OUT/experiments.tgz" -C /tmp collect
tar czf "$OUT/runs.tgz" -C /tmp --exclude='step-*' --exclude='gepa' --exclude='trl' --exclude='export' \
  confident/runs experiments/runs 2>/dev/null
grep -E "^== " "$OUT/run_experiments.log"; tail -n 30 "$OUT/confident_prompts.md" 2>/dev/null || tail "$OUT/confident_prompts.log"
