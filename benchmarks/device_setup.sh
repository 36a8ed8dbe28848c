# Sourced by the benchmarks/gpu_*.sh and run_full_experiments.sh device scripts. The GPU machine has no registry
# access: trl, gepa, datasets and pydantic travel as wheels in .whl/ (carry [".whl"]; /work/.library/device/README.md).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
