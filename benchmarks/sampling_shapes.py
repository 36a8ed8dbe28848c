"""Seconds to sample one RL step's fresh rows when their number changes from step to step, as it does with rollout
reuse (loop.reuse_fast_rollouts), with SDPA's default kernels and with those fastslow.shared_prefix.decoding_attention
keeps for sampling (no cuDNN attention). Each arm runs in a fresh process; the policy samples as the trainer does
(float32 weights under bf16 autocast on a GPU, growing KV cache, no prefix sharing: the full preset).

    python benchmarks/sampling_shapes.py [--rows 128 128 57 57 45 71 45 57] [--model micro-v4] [--device cuda]

Prints, per call, its rows, whether that row count came before in the arm, and each arm's seconds, then which
attention kernels the default arm's last call ran (a torch profiler trace). On torch >= 2.11 on Hopper the default
tries cuDNN attention first, which builds a graph per new (rows, key length): expect a row count's first call to be
slow by default and not with the kept kernels.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from contextlib import nullcontext


def arm(args) -> dict:
    import torch

    from fastslow import shared_prefix
    from fastslow.policy import (Sampling, chat_messages, eos_token_ids, load_model, load_tokenizer,
                                 prompt_token_ids, sample_ids)
    from fastslow.tasks.micro import StringProgramTask

    if args.arm == "default":
        shared_prefix.decoding_attention = lambda device: nullcontext()
    torch.manual_seed(0)
    model, tokenizer = load_model(args.model, "float32", args.device).eval(), load_tokenizer(args.model)
    systems = ["Sort the letters, then shift each letter forward by 2, then move the first 3 letters to the end.",
               "Reverse the letters, then keep every other letter.",
               "Sort the letters, then double each letter, then rotate the letters by 2.",
               "Swap each pair of letters, then keep every other letter, then move the first 3 letters to the end."]
    problems = StringProgramTask(program_seed=7).problems("train", max(args.rows), 0)
    prompts = prompt_token_ids(tokenizer, [chat_messages(systems[i % len(systems)], p.prompt)
                                           for i, p in enumerate(problems)])
    sampling = Sampling(max_new_tokens=args.max_new_tokens, share_prefixes=False)
    bf16 = args.device == "cuda"

    def call(rows: int) -> float:
        start = time.perf_counter()
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=bf16):
            sample_ids(model, prompts[:rows], sampling, tokenizer.pad_token_id, eos_token_ids(model, tokenizer))
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    call(8)  # kernels, allocator: not measured
    seconds = [call(rows) for rows in args.rows]
    kernels = {}
    if args.device == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as trace:
            call(args.rows[-1] + 1)  # a row count not seen before
        for event in trace.key_averages():
            if any(word in event.key.lower() for word in ("attention", "cudnn", "fmha", "flash")):
                kernels[event.key[:90]] = event.count
    return {"seconds": seconds, "kernels": kernels,
            "cudnn": torch.backends.cudnn.version() if args.device == "cuda" else None, "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[128, 128, 57, 57, 45, 71, 45, 57, 64, 39])
    parser.add_argument("--model", default="micro-v4")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--arm", choices=["default", "no-cudnn"], help=argparse.SUPPRESS)  # one arm, in a child
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(arm(args)))
        return
    results = {}
    for name in ("default", "no-cudnn"):
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--arm", name], capture_output=True,
                               text=True, check=True)
        results[name] = json.loads(child.stdout.strip().splitlines()[-1])
    first = results["default"]
    print(f"torch {first['torch']}, cuDNN {first['cudnn']}, {args.device}, {args.model}, "
          f"{args.max_new_tokens} new tokens at most")
    print("| call | rows | seen before | default s | no cuDNN attention s |\n|---|---|---|---|---|")
    for i, rows in enumerate(args.rows):
        print(f"| {i + 1} | {rows} | {'yes' if rows in args.rows[:i] else 'no'} | "
              f"{results['default']['seconds'][i]:.3f} | {results['no-cudnn']['seconds'][i]:.3f} |")
    for name, result in results.items():
        print(f"{name}: attention kernels of a new row count's call: {result['kernels'] or '(none found)'}")


if __name__ == "__main__":
    main()
