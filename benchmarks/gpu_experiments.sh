#!/usr/bin/env bash
# All eight experiments on the GPU machine (results for docs/RESULTS.md), and at the same time each experiment's
# small preset run alone on 2 pinned cores with the GPU hidden (the "<= 15 minutes on 2 CPU cores" bound).
# Usage: kind nvidia-h100-x2 (or x1), carry [".whl"], command: bash benchmarks/gpu_experiments.sh [PRESET] [LIMIT_S]
# Needs >= 24 cores: the 2-core runs take the last 16, the GPU run the rest. Results come back as results.tgz.
set -uo pipefail
source benchmarks/device_setup.sh
PRESET=${1:-small}; LIMIT=${2:-540}; NCPU=$(nproc)
pin() { python3 -c 'import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(",")}); os.execvp(sys.argv[2], sys.argv[2:])' "$@"; }
{ nvidia-smi --query-gpu=name --format=csv,noheader; echo "cores $NCPU"; python3 -c "import platform; print(platform.processor())"; } | tee "$OUT/hardware.txt"
i=0
for name in efficiency asymptote kl decomposition ood plasticity continual zero-reward; do
  a=$((NCPU - 2 * i - 2)); b=$((a + 1)); i=$((i + 1))
  ( start=$(date +%s)
    CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=2 pin "$a,$b" timeout "$LIMIT" python3 -m fastslow experiment "$name" \
        --preset small --out "/tmp/cpu2/$name" > "/tmp/cpu2_$name.log" 2>&1
    echo "$name exit=$? seconds=$(( $(date +%s) - start )) cores=$a,$b" >> "$OUT/cpu2_timings.txt" ) &
done
pin "$(seq -s, 0 $((NCPU - 17)))" timeout "$LIMIT" python3 benchmarks/run_experiments.py --preset "$PRESET" --seeds 3 \
    --out /tmp/experiments --collect /tmp/collect 2>&1 | tee "$OUT/run_experiments.log"
wait
tar czf "$OUT/results.tgz" -C /tmp collect
tail -n 5 /tmp/cpu2_*.log > "$OUT/cpu2_tails.txt"
cat "$OUT/cpu2_timings.txt"
