#!/usr/bin/env bash
# Micro model v4 on one GPU (issue 13): pretrain the fallible policy from scratch on v4's corpus, evaluate it with
# micro model v3 as its separate reflector, then screen the task suite's candidates with it (benchmarks/task_suite.py).
# Device call: kind nvidia-h200, carry [".whl"], command: bash benchmarks/gpu_micro_v4.sh [MINUTES]
# Back in $OUT: pretrain.log, eval.md, micro.tar.part-* (cat micro.tar.part-* | tar -x -C DIR), suite.md, suite.json.
set -uo pipefail
EVAL_ARGS="--reflector micro" bash benchmarks/gpu_pretrain.sh "${1:-4.5}" --version v4 --batch-size 512 --lr 0.002 \
    --warmup 200 --seed 0 --compile
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
( time python3 benchmarks/task_suite.py --model /tmp/micro --json "$OUT/suite.json" ) 2>&1 | grep -v -i warn \
    | tee "$OUT/suite.md" | tail -n 4
