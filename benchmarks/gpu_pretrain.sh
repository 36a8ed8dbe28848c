#!/usr/bin/env bash
# Pretrain the micro model on the GPU machine and measure it there (device tool).
# Usage: kind nvidia-h100-x2 (or x1), carry [".whl"], command: bash benchmarks/gpu_pretrain.sh MINUTES [pretrain options]
# (MINUTES "-" when the options give --steps instead; EVAL_ARGS adds options to the evaluation, e.g. --reflector micro)
# One torchrun rank per GPU, each with (cores / GPUs - 2) corpus workers. The checkpoint comes back as a
# tar split into 15 MB parts ($OUT files are at most 16 MiB): cat micro.tar.part-* | tar -x -C DIR.
set -uo pipefail
source benchmarks/device_setup.sh
GPUS=$(nvidia-smi -L | wc -l)
WORKERS=$(( $(nproc) / GPUS - 2 ))
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/hardware.txt"
echo "cores $(nproc)" | tee -a "$OUT/hardware.txt"
python3 -m torch.distributed.run --nproc-per-node "$GPUS" -m fastslow micro pretrain --out /tmp/micro \
    $([ "${1:-7}" = - ] || echo --minutes "${1:-7}") --workers "$WORKERS" "${@:2}" 2>&1 | grep -v Warning | tee "$OUT/pretrain.log"
tar -C /tmp -cf - micro | split -b 15M - "$OUT/micro.tar.part-"
( time python3 -m fastslow micro eval --model /tmp/micro --device cuda ${EVAL_ARGS:-} ) 2>&1 | tee "$OUT/eval.md"
