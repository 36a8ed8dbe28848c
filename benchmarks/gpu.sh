#!/usr/bin/env bash
# The one entry script of the GPU machine (the device tool: carry [".whl"], $OUT set):
#
#   bash benchmarks/gpu.sh BENCHMARK [ARGS...]
#
# BENCHMARK is a file benchmarks/BENCHMARK.py (run as `python3 benchmarks/BENCHMARK.py ARGS`; each answers --help),
# or `fastslow`, `pytest`, `torchrun` or `accelerate` (python3 -m fastslow / pytest / torch.distributed.run /
# accelerate.commands.launch ARGS). Around it, this script
# - installs the wheels that travel in .whl/ (benchmarks/gpu_wheels.txt; the machine has no registry: fetch them here
#   once with `bash benchmarks/fetch_gpu_wheels.sh`) into /tmp/site, once per machine; skipped where .whl/ (or
#   $WHEELS, the folder to take them from) holds none;
# - sets the environment (PYTHONPATH with the repository and benchmarks/, unbuffered output, expandable CUDA segments,
#   NVLink multicast off);
# - starts $OUT/BENCHMARK.log with the hardware lines: GPU, memory and driver, cores, date, git commit (COMMIT=...
#   where the machine's copy of the tree has no .git), package versions, the command;
# - runs the command under `timeout $LIMIT_S` (default 540 s, inside the device's 600 s per call, so that what it
#   wrote still comes back), its output teed into that log without warnings and progress bars (QUIET='' keeps
#   every line);
# - leaves in $OUT at most two files, the log and one more, so that four runs in one device call (OUT=$OUT/a, ...)
#   still fit what the device returns (8 files of 16 MiB, 2 folders down): anything more is packed into
#   $OUT/results.tgz (run directories' checkpoints and scratch left out; `tar xzf results.tgz`), split into 15 MB
#   parts when larger (`cat results.tgz.part-* | tar xz`).
# Exits with the command's exit code (124: it ran past LIMIT_S).
set -uo pipefail
cd "$(dirname "$0")/.."
USAGE="usage: bash benchmarks/gpu.sh BENCHMARK [ARGS...]  (a benchmarks/BENCHMARK.py, or fastslow, pytest, torchrun, accelerate)"
[ $# -ge 1 ] || { echo "$USAGE" >&2; exit 2; }
NAME=$1; shift
case "$NAME" in
  fastslow) CMD=(python3 -m fastslow) ;;
  pytest) CMD=(python3 -m pytest -p no:cacheprovider) ;;
  torchrun) CMD=(python3 -m torch.distributed.run) ;;
  accelerate) CMD=(python3 -m accelerate.commands.launch) ;;
  *) if [ ! -f "benchmarks/$NAME.py" ]; then echo "gpu.sh: no benchmarks/$NAME.py; $USAGE" >&2; exit 2; fi
     CMD=(python3 "benchmarks/$NAME.py") ;;
esac
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; export OUT

# --- wheels and environment
SITE=/tmp/site WHEELS=${WHEELS:-.whl}
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  stamp=$(ls "$WHEELS"/*.whl | sha1sum | cut -c1-16)
  if [ "$(cat "$SITE/.wheels" 2>/dev/null)" != "$stamp" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
      || { echo "gpu.sh: installing $WHEELS/*.whl failed" >&2; exit 1; }
    echo "$stamp" > "$SITE/.wheels"
  fi
  export PYTHONPATH=$SITE:$PWD:$PWD/benchmarks
else
  export PYTHONPATH=$PWD:$PWD/benchmarks
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error NCCL_NVLS_ENABLE=0 \
  PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}

# --- the hardware line
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
  echo "cores $(nproc), memory $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
  date -u "+%Y-%m-%d %H:%M UTC"
  commit=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}
  dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | head -1)
  echo "commit ${commit:-unknown (no .git here: pass COMMIT=...)}${dirty:+ with uncommitted changes}"
  python3 - <<'PY'
from importlib.metadata import PackageNotFoundError, version
found = []
for name in ("torch", "transformers", "trl", "gepa", "peft", "accelerate", "vllm"):
    try:
        found.append(f"{name} {version(name)}")
    except PackageNotFoundError:
        pass
print(", ".join(found))
PY
  echo "command: bash benchmarks/gpu.sh $NAME $*"
} > "$OUT/$NAME.log"
cat "$OUT/$NAME.log"

# --- the benchmark
QUIET=${QUIET-Warning|warnings.warn|Loading weights|Writing model|it/s\]}
timeout --kill-after=30 "${LIMIT_S:-540}" "${CMD[@]}" "$@" 2>&1 | { if [ -n "$QUIET" ]; then grep --line-buffered -v -E "$QUIET"; else cat; fi; } \
  | tee -a "$OUT/$NAME.log"
rc=${PIPESTATUS[0]}

# --- what comes back: the log and one more file of at most 16 MiB, no deeper than $OUT/a/b/file
cd "$OUT"
files=$(find . -type f | wc -l)
too_deep=$(find . -mindepth 4 -type f | head -1)
too_big=$(find . -type f -size +16M | head -1)
odd_name=$(find . -mindepth 1 | grep -E '[^A-Za-z0-9._/-]' | head -1)
if [ "$files" -gt 2 ] || [ -n "$too_deep$too_big$odd_name" ]; then
  mapfile -t entries < <(find . -mindepth 1 -maxdepth 1 ! -name "$NAME.log" -printf '%P\n')
  tar czf /tmp/gpu_results.tgz --exclude=checkpoints --exclude=.lock \
    --exclude=gepa --exclude=trl --exclude=export "${entries[@]}"
  rm -rf -- "${entries[@]}"
  if [ "$(stat -c %s /tmp/gpu_results.tgz)" -gt $((15 * 1024 * 1024)) ]; then
    split -b 15M /tmp/gpu_results.tgz results.tgz.part-
  else
    mv /tmp/gpu_results.tgz results.tgz
  fi
  rm -f /tmp/gpu_results.tgz
  [ "$(du -cb results.tgz* | tail -1 | cut -f1)" -le $((60 * 1024 * 1024)) ] \
    || echo "gpu.sh: results.tgz is over 60 MiB; the device returns 64 MiB at most" >&2
  echo "gpu.sh: packed ${#entries[@]} entries of \$OUT into $(ls results.tgz* | tr '\n' ' ')($(du -ch results.tgz* | tail -1 | cut -f1))"
fi
exit "$rc"
