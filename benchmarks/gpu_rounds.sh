#!/usr/bin/env bash
# Issue 14 on micro world v4: what FST costs per RL step against RL, with and without rollout reuse, as the fast
# phase's rounds per cycle change (gepa.proposals_per_iteration 1, 4, 16), and what that does to accuracy.
# On a GPU the micro models' generation is latency-bound (a call costs about the same for 3 rows as for 128), the
# regime of long completions at real scale, where the fast phase's wall clock follows its rounds (docs/DESIGN.md,
# "What FST costs").
#   time INDEX (~2 min)      wall clock per step, each run alone on the card (benchmarks/reuse_step_time.py, full
#                            preset, 12 steps): rl, fst, fst + reuse at 4 proposals, then at 1 and at 16
#   accuracy INDEX [LIMIT_S] accuracy at matched samples, 3 seeds, 36 steps, 15 runs sharing the card
#                            (benchmarks/confident_prompts.py: rl, fst, and fst-reuse at 4, 1 and 16 proposals)
# INDEX: a task of micro-v4's suite (docs/logs/suite/task_suite_v4_2026-12-01_h200.json: 1 strings 22, 3 cipher
# shift:1, 5 code on held-out programs). Device call: kind nvidia-h200, carry [".whl"], command e.g.
#   bash benchmarks/gpu_rounds.sh time 1; bash benchmarks/gpu_rounds.sh accuracy 3 270
# Back in $OUT: hardware.txt, step_time_INDEX.md, accuracy_INDEX.md, runs_INDEX.tgz (metrics and populations).
set -uo pipefail
source benchmarks/device_setup.sh
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True PYTHONPATH=$PYTHONPATH:$PWD/benchmarks
PART=$1; INDEX=$2; LIMIT=${3:-330}
TASK=$(python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["suite"][int(sys.argv[2])]))' \
       docs/logs/suite/task_suite_v4_2026-12-01_h200.json "$INDEX")
V4=(--set model.path=micro-v4 --set model.max_new_tokens=48 --set reflection.kind=local --set reflection.model=micro)
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; echo "cores $(nproc)"; date -u; echo "$PART $TASK"; } \
  | tee -a "$OUT/hardware.txt"
quiet() { grep --line-buffered -v -E "Warning|warnings.warn|Loading weights|Writing model|it/s\]"; }

case "$PART" in
  time) timeout 200 python3 benchmarks/reuse_step_time.py --preset full --steps 12 --proposals 1 16 "${V4[@]}" \
          --set "task=$TASK" --out "/tmp/step_time_$INDEX" 2>&1 | quiet | tail -n 30
        cp "/tmp/step_time_$INDEX/results.md" "$OUT/step_time_$INDEX.md" ;;
  accuracy) timeout "$LIMIT" python3 benchmarks/confident_prompts.py --out "/tmp/acc_$INDEX" --seeds 3 --workers 15 \
              --arms rl fst fst-reuse fst-reuse-n1 fst-reuse-n16 --task "$TASK" "${V4[@]}" --set loop.steps=36 2>&1 \
              | quiet | tail -n 60 > "$OUT/accuracy_$INDEX.log"
            cp "/tmp/acc_$INDEX/confident_prompts.md" "$OUT/accuracy_$INDEX.md" || cp "$OUT/accuracy_$INDEX.log" "$OUT/accuracy_$INDEX.md"
            tar czf "$OUT/runs_$INDEX.tgz" -C /tmp --exclude='step-*' --exclude='checkpoints' --exclude='gepa' \
              --exclude='trl' "acc_$INDEX" 2>/dev/null
            cat "$OUT/accuracy_$INDEX.md" ;;
  *) echo "usage: gpu_rounds.sh time|accuracy INDEX [LIMIT_S]"; exit 2 ;;
esac
