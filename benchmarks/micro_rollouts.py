"""Rollouts per second of the micro model on CPU: batched sampling with fastslow.policy.generate.

    python benchmarks/micro_rollouts.py [--batch-sizes 1 32 128] [--threads N]

Each rollout is one completion (temperature 1, at most 32 new tokens) for a held-out string-program problem
under its instruction, the way the RL and GEPA phases sample.
"""

from __future__ import annotations

import argparse
import os
import time


def rollouts_per_second(model, tokenizer, batch_size: int, rollouts: int) -> tuple[float, float]:
    import torch

    from fastslow.policy import Sampling, chat_messages, generate
    from fastslow.tasks.micro import StringProgramTask

    task = StringProgramTask(program_seed=1)
    problems = task.problems("val", rollouts, seed=0)
    conversations = [chat_messages(task.instruction, p.prompt) for p in problems]
    sampling = Sampling(max_new_tokens=32, temperature=1.0)
    generate(model, tokenizer, conversations[:2], sampling)  # warm-up
    torch.manual_seed(0)
    start = time.perf_counter()
    outputs = generate(model, tokenizer, conversations, sampling, batch_size=batch_size)
    seconds = time.perf_counter() - start
    return rollouts / seconds, sum(task.score(p, o).reward for p, o in zip(problems, outputs)) / rollouts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="micro")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    import torch  # after the arguments: --help answers at once

    from fastslow.policy import load_model, load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model, dtype="float32"), load_tokenizer(args.model)
    print(f"model {args.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
          f"CPU threads {torch.get_num_threads()} of {os.cpu_count()} cores")
    print(f"{'batch':>6} {'rollouts/s':>11} {'reward':>7}")
    for batch_size in args.batch_sizes:
        speed, reward = rollouts_per_second(model, tokenizer, batch_size, rollouts=max(16, 2 * batch_size))
        print(f"{batch_size:>6} {speed:>11.1f} {reward:>7.2f}")


if __name__ == "__main__":
    main()
