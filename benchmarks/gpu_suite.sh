#!/usr/bin/env bash
# FST against RL on every task of micro-v4's suite (issue 13 items 2-3, issue 12's bar on more than one task), all
# tasks at once on one GPU: benchmarks/confident_prompts.py per task (full-preset sizes, 3 seeds), the policy
# micro-v4 with the reflector as its separate reflection LM. Needs fastslow/micro/model-v4 and the reflector in the
# tree, and the suite JSON that benchmarks/gpu_micro_v4.sh's screen wrote.
# Device call: kind nvidia-h200, carry [".whl"], command: bash benchmarks/gpu_suite.sh SUITE_JSON [LIMIT_S] [ARMS...]
# ONLY="0 1 2" runs those tasks of the suite alone: 7 tasks x 6 runs on one card (2026-12-01) left every FST run at
# 23-48 of its 60 steps after 400 s, so give each call at most ~18 runs.
# Back in $OUT: hardware.txt, suite.md (each task's tables), runs.tgz (metrics and populations of every run).
set -uo pipefail
source benchmarks/device_setup.sh
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
SUITE=$1; LIMIT=${2:-480}; shift 2 || shift $#
ARMS=${*:-rl fst}
MODEL=${MODEL:-micro-v4}  # or a checkpoint left in /tmp by benchmarks/gpu_micro_v4.sh on a still-warm machine
REFLECTOR=${REFLECTOR:-micro}
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; echo "cores $(nproc)"; date -u; } | tee "$OUT/hardware.txt"
mapfile -t TASKS < <(python3 -c 'import json, sys; [print(json.dumps(t)) for t in json.load(open(sys.argv[1]))["suite"]]' "$SUITE")
per_task=$(( $(echo $ARMS | wc -w) * 3 ))
CHOSEN=${ONLY:-${!TASKS[@]}}
for i in $CHOSEN; do
  timeout "$LIMIT" python3 benchmarks/confident_prompts.py --out /tmp/suite/$i --seeds 3 --workers "$per_task" \
      --arms $ARMS --task "${TASKS[$i]}" --set model.path="$MODEL" --set model.max_new_tokens=48 \
      --set reflection.kind=local --set reflection.model="$REFLECTOR" 2>&1 | grep -v -i warn > /tmp/suite_$i.log &
done
wait
for i in $CHOSEN; do  # one file: a call returns only a few files
  echo "# task $i: ${TASKS[$i]}"; cat /tmp/suite/$i/confident_prompts.md 2>/dev/null || tail -n 20 /tmp/suite_$i.log
done > "$OUT/suite.md"
tar czf "$OUT/runs.tgz" -C /tmp --exclude='step-*' --exclude='checkpoints' --exclude='gepa' --exclude='trl' \
    --exclude='export' suite 2>/dev/null
grep -E "^# task|running best >=" "$OUT/suite.md"
