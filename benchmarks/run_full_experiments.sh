#!/usr/bin/env bash
# The eight experiments with the `full` preset on the GPU machine (16 cores + 1 GPU), results collected in $OUT.
# trl, gepa and datasets travel as wheels in .whl/ (as in gpu_e2e.sh). Device tool: carry [".whl"],
# command: bash benchmarks/run_full_experiments.sh
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
nvidia-smi --query-gpu=name,memory.total --format=csv
OUT=${OUT:-/tmp/out}
python3 benchmarks/run_experiments.py --preset full --seeds "${SEEDS:-3}" --out /tmp/experiments \
  --workers "${WORKERS:-$(nproc)}" --collect "$OUT/experiments" 2>&1 | tee "$OUT/run_full_experiments.log"
