#!/usr/bin/env bash
# Pretraining speed of the micro model on one GPU, eager and with --compile (device tool, kind nvidia-h100-x1,
# carry [".whl"]):  bash benchmarks/gpu_pretrain_speed.sh [STEPS] [BATCH]
# Both runs start from fresh weights with the same seed and data; the table compares milliseconds per step after
# the first 100 steps (compilation and warm-up), and the answer-token losses at the last step.
set -uo pipefail
source benchmarks/device_setup.sh
STEPS=${1:-400}; BATCH=${2:-384}; MODES=${3:-eager compile}; WORKERS=$(( $(nproc) - 2 ))
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/hardware.txt"
for mode in $MODES; do
    flag=$([ "$mode" = compile ] && echo --compile)
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True python3 -m fastslow micro pretrain --out "/tmp/speed-$mode" \
        --steps "$STEPS" --batch-size "$BATCH" --warmup 100 --workers "$WORKERS" $flag 2>&1 | grep -v Warning \
        | tee "$OUT/pretrain_speed_$mode.log"
done
MODES="$MODES" python3 - <<'PY' | tee "$OUT/pretrain_speed.md"
import json, os
print("| forward | ms/step after step 100 | examples/s | first 100 steps (s) | loss instruct / generic / reflect at the end |")
print("|---|---|---|---|---|")
for mode in os.environ["MODES"].split():
    log = json.load(open(f"/tmp/speed-{mode}/pretrain_log.json"))
    rows = log["log"]
    ms = (rows[-1]["seconds"] - rows[0]["seconds"]) / (rows[-1]["step"] - rows[0]["step"]) * 1000
    losses = " / ".join(str(rows[-1][f"loss_{k}"]) for k in ("instruct", "generic", "reflect"))
    print(f"| {mode} | {ms:.0f} | {log['batch_size'] / ms * 1000:.0f} | {rows[0]['seconds']} | {losses} |")
PY
