#!/usr/bin/env bash
# Smoke test of `accelerate launch` with 2 processes (one per GPU) on a tiny random model, rl and fst modes, and rl
# on a task where no problem has reward variance (every process trains on one zero-weight row and must not hang);
# then, under DDP on the GPUs, the update's gradient with shared prompt prefixes against TRL's whole-row pass
# (full fine-tuning and LoRA).
# Device tool: kind nvidia-h100-x2, carry [".whl"], command: bash benchmarks/gpu_ddp.sh
set -uo pipefail
source benchmarks/device_setup.sh
export PYTHONPATH=$PYTHONPATH:$PWD/tests NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c "from tiny_model import build_tiny_model; build_tiny_model('/tmp/tiny')"
for run in ${RUNS:-rl:ShortAnswerTask fst:ShortAnswerTask rl:ConstantRewardTask}; do
  mode=${run%%:*}; task=${run#*:}; name=$mode-$task
  cat > /tmp/ddp_$name.yaml <<YAML
name: ddp-$name
mode: $mode
output_dir: /tmp/runs
model: {path: /tmp/tiny, max_new_tokens: 8}
task: {name: "doubles:$task", train_size: 64, val_size: 8}
loop: {steps: 4, steps_per_cycle: 2, problems_per_step: 4, rollouts_per_problem: 4, population_size: 2}
rl: {learning_rate: 1.0e-3, warmup_steps: 0}
gepa: {budget_passes: 2}
reflection: {kind: self, max_new_tokens: 16}
eval: {every: 2, samples: 2, kl_prompts: 4}
YAML
  (cd tests && timeout 240 python3 -m accelerate.commands.launch --num_processes 2 --multi_gpu -m fastslow run /tmp/ddp_$name.yaml) 2>&1 | grep -v Warning | tail -8
  echo "== $name exit ${PIPESTATUS[0]}"; wc -l /tmp/runs/ddp-$name/metrics.jsonl; tail -1 /tmp/runs/ddp-$name/metrics.jsonl | cut -c1-400
done
for flags in "" --lora; do
  (timeout 240 python3 -m accelerate.commands.launch --num_processes 2 --multi_gpu tests/ddp_shared_prefix_worker.py \
    $flags) 2>&1 | grep -v Warning | grep -v "Loading weights" | tail -4
  echo "== shared-prefix gradient check $flags exit ${PIPESTATUS[0]}"
done
