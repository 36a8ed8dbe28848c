#!/usr/bin/env bash
# The paper's experiments 1-4 (efficiency, asymptote, kl, decomposition) on tasks of micro-v4's suite (issue 13), one
# `benchmarks/run_experiments.py --preset full` per task, the tasks side by side on one GPU, the policy micro-v4
# with the reflector (`micro`) as its reflection LM; then the per-task and pooled tables (benchmarks/suite_pool.py).
# Device call: kind nvidia-h200, carry [".whl"], command:
#   ONLY="5 6" bash benchmarks/gpu_suite_experiments.sh docs/logs/suite/task_suite_v4_2026-12-01_h200.json [LIMIT_S]
# ONLY: suite task indices (default all; 7 tasks x 9 runs do not fit one call: give a call 2-3 tasks).
# EXPERIMENTS (default "efficiency asymptote kl decomposition"), STEPS (loop.steps; the issue asks for >= 100 unless
# RL's peak stops rising earlier; default the preset's 36), WORKERS (run processes in all, default the cores).
# Back in $OUT: hardware.txt, pooled.md, results.tgz (each task's task.json and results: cat pooled.md first).
set -uo pipefail
source benchmarks/device_setup.sh
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
SUITE=$1; LIMIT=${2:-540}
EXPERIMENTS=${EXPERIMENTS:-efficiency asymptote kl decomposition}
mapfile -t TASKS < <(python3 -c 'import json, sys; [print(json.dumps(t)) for t in json.load(open(sys.argv[1]))["suite"]]' "$SUITE")
CHOSEN=${ONLY:-${!TASKS[@]}}
PER_TASK=$(( ${WORKERS:-$(nproc)} / $(echo $CHOSEN | wc -w) )); PER_TASK=$(( PER_TASK > 0 ? PER_TASK : 1 ))
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; echo "cores $(nproc), $PER_TASK workers per task"; date -u; } \
    | tee "$OUT/hardware.txt"
for i in $CHOSEN; do
  mkdir -p /tmp/collect/$i && echo "${TASKS[$i]}" > /tmp/collect/$i/task.json
  timeout "$LIMIT" python3 benchmarks/run_experiments.py --preset full --seeds 3 --out /tmp/suite_exp/$i \
      --collect /tmp/collect/$i --workers "$PER_TASK" --only $EXPERIMENTS --set "task=${TASKS[$i]}" \
      --set model.path=micro-v4 --set model.max_new_tokens=48 --set reflection.kind=local --set reflection.model=micro \
      ${STEPS:+--set loop.steps=$STEPS} 2>&1 | grep -v -i warn > /tmp/collect/$i/run.log &
done
wait
python3 benchmarks/suite_pool.py /tmp/collect --out "$OUT/pooled.md" | head -n 60
tar czf "$OUT/results.tgz" -C /tmp collect
