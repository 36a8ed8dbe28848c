"""Peak memory and time of one RL update against rows x tokens, for a Qwen3-1.7B shape with random weights: LoRA and
full weights, gradient checkpointing off and on, one pass over the rows and rl.micro_batch_rows micro-batches.
Prints a table, then the largest batch that fits the device (linear in rows, from the two largest measured).

    python benchmarks/update_memory.py [--tiny] [--shape qwen3-1.7b] [--rows 8 32 128] [--tokens 1024 2048]
                                       [--micro-batch-rows 8] [--budget-s 150]

Each configuration is a real SlowLearner (TRL's GRPOTrainer, bf16 weights and autocast, kl_coef 0.001, so full weights
have TRL's reference model and LoRA its adapters off), stepped by `SlowLearner.step` on problems under 4 system
prompts with G = 8. Only its sampling is replaced: every row gets random tokens of exactly the asked completion
length (sampling memory is measured by benchmarks/recipe_shape_probe.py); rewards alternate, so every row stays in
the update (the most memory). Peak memory is torch's allocated peak during the step (weights, optimizer state,
gradients, activations; not the allocator's cache). Each learner (LoRA or full, checkpointing off or on) takes one warm-up
step (it creates the optimizer state), then runs its points smallest first in micro-batches, then in one pass; a point
that would overrun its share of the time budget is skipped, one that runs out of memory ends the series. `--tiny`: a tiny shape, vocabulary and batch on CPU, to check the script before a GPU
run (its peaks are the process's resident set).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time

G, K = 8, 4
SYSTEMS = [f"Prompt {k}: solve the problem step by step, check the result, and put the final answer in \\boxed{{}}."
           for k in range(K)]


def fixed_length_sampling(completion_tokens: int, vocab: int):
    """Stands in for the trainer's `_generate_single_turn`: random tokens (never EOS or padding), all this long."""
    import torch

    generator = torch.Generator().manual_seed(0)

    def sample(prompt_ids, *args, **kwargs):
        return torch.randint(100, vocab, (len(prompt_ids), completion_tokens), generator=generator).tolist(), None

    return sample


def build_learner(model_dir: str, tokenizer, task, work_dir: str, *, lora: bool, checkpointing: bool,
                  micro_batch_rows: int, max_rows: int, gpu: bool):
    from fastslow.config import parse_config
    from fastslow.policy import load_model
    from fastslow.slow.trainer import SlowLearner

    config = parse_config({
        "model": {"path": model_dir, "dtype": "bfloat16" if gpu else "float32",
                  "lora": {"r": 32, "alpha": 64} if lora else None},
        "loop": {"steps": 1000, "problems_per_step": max(1, max_rows // G), "rollouts_per_problem": G,
                 "population_size": K},
        "rl": {"bf16": gpu, "gradient_checkpointing": checkpointing, "micro_batch_rows": micro_batch_rows,
               "warmup_steps": 0},
    })
    return SlowLearner(config, load_model(model_dir, config.model.dtype), tokenizer, task, work_dir)


def step(learner, task, rows: int, completion_tokens: int, device: str) -> tuple[str, float, float]:
    """One RL step; returns (GiB held before it, peak GiB during it, seconds)."""
    import torch
    from random_model import PeakMemory

    from fastslow.fast.population import Member

    vocab = learner.policy.config.vocab_size
    learner.trainer._generate_single_turn = fixed_length_sampling(completion_tokens, vocab)
    population = [Member(f"m{k}", text) for k, text in enumerate(SYSTEMS)]
    held = f"{torch.cuda.memory_allocated() / 2**30:.1f}" if device == "cuda" else "—"
    with PeakMemory(device) as peak:
        start = time.perf_counter()
        learner.step(task.problems("train", rows // G, rows), population)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return held, peak.gib, seconds


def free(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny shape and batch on CPU")
    parser.add_argument("--shape", default="qwen3-1.7b")
    parser.add_argument("--rows", type=int, nargs="+", default=[8, 32, 128], help="rows per step (multiples of 8)")
    parser.add_argument("--tokens", type=int, nargs="+", default=[1024, 2048], help="prompt + completion per row")
    parser.add_argument("--prompt-chars", type=int, default=120, help="problem length (characters = tokens)")
    parser.add_argument("--micro-batch-rows", type=int, default=8)
    parser.add_argument("--budget-s", type=float, help="skip points that would end later (default 150; --tiny: none)")
    args = parser.parse_args()
    import torch  # after the arguments: --help answers at once
    from random_model import TINY_VOCAB, VOCAB, AlternatingRewardTask, device_name, random_qwen3

    from fastslow.policy import chat_messages, load_tokenizer

    if args.tiny:
        args.shape, args.rows, args.tokens, args.prompt_chars, args.micro_batch_rows = "tiny", [8, 16], [160], 10, 4
    budget = args.budget_s or (float("inf") if args.tiny else 150.0)
    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    tokenizer, task = load_tokenizer("micro"), AlternatingRewardTask(args.prompt_chars)
    prompt = tokenizer.apply_chat_template(chat_messages(SYSTEMS[0], task.problems("train", 1, 0)[0].prompt),
                                           tokenize=False, add_generation_prompt=True)
    prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    points = sorted(((r, t) for r in args.rows for t in args.tokens), key=lambda p: p[0] * p[1])
    builds = [(lora, checkpointing) for lora in (True, False) for checkpointing in (False, True)]
    capacity = torch.cuda.get_device_properties(0).total_memory / 2**30 if device == "cuda" else None
    vocab = TINY_VOCAB if args.tiny else VOCAB
    print(f"{args.shape} (random weights, vocabulary {vocab}), {device_name(device)}, torch {torch.__version__}; "
          f"G={G}, K={K} system prompts, {prompt_tokens} prompt tokens per row; one RL step per point\n")
    print("| weights | checkpointing | micro_batch_rows | rows | tokens/row | held before (GiB) | peak (GiB) | step (s) |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    fits, runs = [], 0
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = f"{scratch}/model"
        random_qwen3(args.shape, tokenizer, torch.bfloat16 if device == "cuda" else torch.float32, device,
                     vocab).save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        free(device)
        for index, (lora, checkpointing) in enumerate(builds):
            learner = build_learner(model_dir, tokenizer, task, f"{scratch}/trl-{index}", lora=lora,
                                    checkpointing=checkpointing, micro_batch_rows=args.micro_batch_rows,
                                    max_rows=max(args.rows), gpu=device == "cuda")
            step(learner, task, G, min(args.tokens) - prompt_tokens, device)  # warm-up: creates the optimizer state
            for micro_batch_rows in (args.micro_batch_rows, None):  # None: one pass over the rows
                runs += 1
                deadline = started + runs * budget / (2 * len(builds))
                learner.trainer.micro_batch_rows = micro_batch_rows or max(args.rows)
                label = f"| {'LoRA r32' if lora else 'full'} | {'on' if checkpointing else 'off'} | " \
                        f"{micro_batch_rows or 'one pass'} |"
                measured, last = {}, None
                for rows, tokens in points:
                    predicted = last[1] * rows * tokens / last[0] if last else 0.0
                    if time.perf_counter() + predicted > deadline:
                        print(f"{label} {rows} | {tokens} | | skipped (time budget) | |", flush=True)
                        continue
                    try:
                        held, peak, seconds = step(learner, task, rows, tokens - prompt_tokens, device)
                    except torch.OutOfMemoryError:
                        learner.model.zero_grad(set_to_none=True)
                        free(device)
                        print(f"{label} {rows} | {tokens} | | out of memory | |", flush=True)
                        measured[tokens] = measured.get(tokens, []) + [(rows, None)]
                        break
                    measured[tokens] = measured.get(tokens, []) + [(rows, peak)]
                    last = (rows * tokens, seconds)
                    print(f"{label} {rows} | {tokens} | {held} | {peak:.1f} | {seconds:.2f} |", flush=True)
                fits.append((label, measured))
            del learner
            free(device)
    if capacity:
        print(f"\nLargest batch that fits {capacity:.0f} GiB (rows at tokens/row; peak linear in rows from the two "
              "largest points measured):\n")
        print("| weights | checkpointing | micro_batch_rows | tokens/row | largest rows |")
        print("|---|---|---|---|---|")
        for label, measured in fits:
            for tokens, series in sorted(measured.items()):
                print(f"{label} {tokens} | {largest_rows(series, capacity)} |")
    print(f"\n{time.perf_counter() - started:.0f} s in all")


def largest_rows(series: list[tuple[int, float | None]], capacity: float) -> str:
    """From (rows, peak GiB or None for out of memory) at one tokens/row, rows ascending."""
    fitted = [(rows, peak) for rows, peak in series if peak is not None]
    failed = [rows for rows, peak in series if peak is None]
    if len(fitted) < 2:
        return f"< {failed[0]} (ran out of memory)" if failed else "not measured"
    (r1, p1), (r2, p2) = fitted[-2:]
    slope = (p2 - p1) / (r2 - r1)
    if slope <= 0.01:  # GiB per row: the update's memory does not grow with the batch
        return f"not bounded by the update (+{slope * 1024:.0f} MiB per row)"
    largest = r2 + int((capacity - p2) / slope)
    if failed and largest >= failed[0]:
        return f"< {failed[0]} (ran out of memory there)"
    return f"~{largest}" + (f" (ran out of memory at {failed[0]})" if failed else "")


if __name__ == "__main__":
    main()
