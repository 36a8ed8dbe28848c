#!/usr/bin/env bash
# Micro world v4 on one GPU (issue 13), both models at once on the one card:
# - micro-v4, the fallible policy, pretrained from scratch on v4's corpus (fastslow.micro.slips, the code family);
# - its reflector, trained on from micro v3 (fastslow/micro/model) on the "reflector" corpus (v3's, mostly
#   reflections, half of them on what v4 answers, some on the code family).
# Then both evaluations (micro-v4 with the new reflector and with v3 as reflector; the reflector's own v3 abilities),
# and the task-suite screen with micro-v4 (benchmarks/task_suite.py).
# Device call: kind nvidia-h200, carry [".whl"], command: bash benchmarks/gpu_micro_v4.sh [MINUTES]  (~8 min at 5)
# Back in $OUT: hardware.txt, logs.tgz (pretrain, eval, suite logs, suite.json), models.tar.part-* (micro-v4 and
# reflector: cat models.tar.part-* | tar -x -C DIR).
set -uo pipefail
source benchmarks/device_setup.sh
MINUTES=${1:-5}
WORKERS=$(( $(nproc) / 2 - 2 ))
LOGS=/tmp/logs; mkdir -p $LOGS
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; echo "cores $(nproc)"; date -u; } \
    | tee "$OUT/hardware.txt"
quiet() { grep --line-buffered -v -i warn; }
python3 -m fastslow micro pretrain --out /tmp/micro-v4 --version v4 --minutes "$MINUTES" --batch-size 512 \
    --lr 0.002 --warmup 200 --seed 0 --workers "$WORKERS" --compile 2>&1 | quiet > $LOGS/pretrain_v4.log &
python3 -m fastslow micro pretrain --out /tmp/reflector --version reflector --init fastslow/micro/model \
    --minutes "$MINUTES" --batch-size 256 --lr 0.0005 --warmup 100 --seed 2 --workers "$WORKERS" --compile 2>&1 \
    | quiet > $LOGS/pretrain_reflector.log &
wait
tail -n 2 $LOGS/pretrain_v4.log $LOGS/pretrain_reflector.log
tar -C /tmp -cf - micro-v4 reflector | split -b 15M - "$OUT/models.tar.part-"
( time python3 -m fastslow micro eval --model /tmp/micro-v4 --reflector /tmp/reflector --device cuda ) 2>&1 | quiet \
    > $LOGS/eval_v4_reflector.md
( time python3 -m fastslow micro eval --model /tmp/micro-v4 --reflector micro --device cuda ) 2>&1 | quiet \
    > $LOGS/eval_v4_v3reflects.md
( time python3 -m fastslow micro eval --model /tmp/reflector --device cuda ) 2>&1 | quiet > $LOGS/eval_reflector.md
( time python3 benchmarks/task_suite.py --model /tmp/micro-v4 --json $LOGS/suite.json ) 2>&1 | quiet > $LOGS/suite.md
tar czf "$OUT/logs.tgz" -C /tmp logs
grep -h -E "code|entropy|near miss|reflector|reflection on held-out programs: proposal raises" $LOGS/eval_v4_*.md
tail -n 4 $LOGS/suite.md
