# Sourced by the benchmarks/gpu_*.sh and run_full_experiments.sh device scripts. The GPU machine has no registry
# access: the wheels listed in benchmarks/gpu_wheels.txt travel in .whl/ (fetch them here once with
# `bash benchmarks/fetch_gpu_wheels.sh`, then carry [".whl"] in every device call).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
