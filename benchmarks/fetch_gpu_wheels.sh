#!/usr/bin/env bash
# Download the wheels the GPU machine needs (benchmarks/gpu_wheels.txt) into .whl/ (git-ignored), for its Python 3.12
# on x86_64. Then every device call carries [".whl"] and runs `bash benchmarks/gpu.sh BENCHMARK ...`, which installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -v '^\s*#' benchmarks/gpu_wheels.txt | grep -v '^\s*$' | while read -r spec; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$spec"
done
ls .whl
