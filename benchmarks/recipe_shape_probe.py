"""Does a recipe fit one GPU? Builds the real SlowLearner from a config (default configs/qwen3-math.yaml), with the
model replaced by random weights of its shape (Qwen3-4B: no download) and the task by synthetic problems whose
rewards always vary, then runs RL steps at the config's own sizes: its problems x rollouts per step, sampling up to
its max_new_tokens (random weights almost never stop, so every rollout runs the full length), its LoRA, bf16,
gradient checkpointing and rl.micro_batch_rows. Prints, per step, the peak memory of sampling and of the whole step,
and the seconds of each phase.

    python benchmarks/recipe_shape_probe.py [--config configs/qwen3-math.yaml] [--steps 2] [--budget-s 220] [--tiny]

A step is not started when the last one says it would end after --budget-s (counted from the start, model building
included). `--tiny`: the same config at a tiny shape and size on CPU, to check the script before a GPU run.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/qwen3-math.yaml")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=220.0)
    parser.add_argument("--prompt-chars", type=int, default=200, help="problem length (characters = tokens)")
    parser.add_argument("--tiny", action="store_true", help="a tiny shape and size on CPU")
    args = parser.parse_args()
    import torch  # after the arguments: --help answers at once
    from random_model import SHAPES, TINY_VOCAB, VOCAB, AlternatingRewardTask, PeakMemory, device_name, random_qwen3

    from fastslow.config import load_config
    from fastslow.fast.population import Member
    from fastslow.policy import chat_messages, load_tokenizer

    started = time.perf_counter()
    overrides = {"loop.steps": args.steps}
    if args.tiny:
        overrides |= {"loop.problems_per_step": 2, "model.max_new_tokens": 8}
    config = load_config(args.config, overrides)
    shape = "tiny" if args.tiny else config.model.path.split("/")[-1].lower()
    if shape not in SHAPES:
        raise SystemExit(f"no random shape for {config.model.path}; known: {sorted(SHAPES)}")
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"

    from fastslow.slow.trainer import SlowLearner

    tokenizer, task = load_tokenizer("micro"), AlternatingRewardTask(args.prompt_chars)
    model = random_qwen3(shape, tokenizer, getattr(torch, config.model.dtype, torch.float32), device,
                         TINY_VOCAB if args.tiny else VOCAB)
    learner = SlowLearner(config, model, tokenizer, task, tempfile.mkdtemp())
    seed = config.task.seed_prompt or task.seed_prompt
    population = [Member(f"m{k}", f"{seed} (variant {k})") for k in range(config.loop.population_size)]
    prompt = tokenizer.apply_chat_template(chat_messages(population[0].text, task.problems("train", 1, 0)[0].prompt),
                                           tokenize=False, add_generation_prompt=True)
    prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    rows = config.loop.problems_per_step * config.loop.rollouts_per_problem
    lora = config.model.lora
    print(f"{args.config} at shape {shape} (random weights), {device_name(device)}, torch {torch.__version__}: "
          f"{rows} rows ({config.loop.problems_per_step} problems x G={config.loop.rollouts_per_problem}, "
          f"K={config.loop.population_size}), ~{prompt_tokens} prompt tokens + up to {config.model.max_new_tokens} "
          f"sampled per row; {'LoRA r' + str(lora.r) if lora else 'full weights'}, dtype {config.model.dtype}, "
          f"rl.bf16 {config.rl.bf16}, gradient checkpointing {config.rl.gradient_checkpointing}, "
          f"micro_batch_rows {config.rl.micro_batch_rows}; built in {time.perf_counter() - started:.0f} s\n")

    sampling_peak, sampled = PeakMemory(device), []
    sample = learner.trainer._generate_single_turn

    def measured_sampling(*a, **k):
        start = time.perf_counter()
        with sampling_peak:
            completions, logprobs = sample(*a, **k)
        sampled[:] = [len(c) for c in completions]
        print(f"(sampled {len(completions)} rows, {sum(sampled) / len(sampled):.0f} tokens each on average: peak "
              f"{sampling_peak.peak.gib:.1f} GiB, {time.perf_counter() - start:.1f} s)", flush=True)
        return completions, logprobs

    learner.trainer._generate_single_turn = measured_sampling
    print("| step | kept problems | sampled tokens/row (mean) | sampling peak (GiB) | step peak (GiB) | sampling (s) | "
          "update (s) | step (s) |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    peaks, last_seconds = [], 0.0
    for step in range(1, args.steps + 1):
        if time.perf_counter() - started + last_seconds > args.budget_s:
            print(f"| {step} | not run: the last step says it would end after the {args.budget_s:.0f} s budget |")
            break
        start = time.perf_counter()
        with PeakMemory(device) as peak:
            stats = learner.step(task.problems("train", config.loop.problems_per_step, step), population)
        last_seconds = time.perf_counter() - start
        peaks.append(max(peak.gib, sampling_peak.peak.gib))
        print(f"| {step} | {stats.kept_problems} | {sum(sampled) / len(sampled):.0f} | {sampling_peak.peak.gib:.1f} | {peak.gib:.1f} | "
              f"{stats.seconds_generate:.1f} | {stats.seconds_update:.1f} | {last_seconds:.1f} |", flush=True)
    if peaks:
        print(f"\n{args.config}: peak {max(peaks):.1f} GiB on {device_name(device)} "
              f"({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
