#!/usr/bin/env bash
# The engine's end-to-end tests on the GPU machine (device tool). trl, gepa, datasets and pydantic are not
# installed there and it has no registry access: they travel as wheels in .whl/ (see /work/.library/device/README.md).
# Usage (device tool): carry [".whl"], command: bash benchmarks/gpu_e2e.sh
set -uo pipefail
source benchmarks/device_setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, trl, gepa, peft, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)"
python3 -m pytest tests/test_loop.py tests/test_trl_seam.py tests/test_gepa_seam.py tests/test_objective.py -q -p no:cacheprovider --durations=8 2>&1 | tee "${OUT:-/tmp}/gpu_e2e.log"
