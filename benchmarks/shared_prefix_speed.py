"""Speed of computing shared prompt prefixes once (fastslow.shared_prefix) against whole rows, for one RL batch of
FST: P problems x G rollouts, the G split over K system prompts. Prints a table of seconds per pass.

    python benchmarks/shared_prefix_speed.py [--model micro|qwen3-0.6b] [--device cpu|cuda] [--bf16]

--model micro is the shipped model on real micro-task prompts; qwen3-0.6b is Qwen3-0.6B's architecture with random
weights (no download) on random tokens: a system prompt of --system tokens, a problem of --problem tokens, and
--completion sampled tokens (forced: random weights rarely stop on their own).
"""

from __future__ import annotations

import argparse
import time


def micro_batch(args):
    from fastslow.policy import chat_messages, load_model, load_tokenizer
    from fastslow.tasks.micro import StringProgramTask

    model, tokenizer = load_model("micro"), load_tokenizer("micro")
    systems = ["Keep every other letter, then move the first 3 letters to the end, then swap each pair of letters.",
               "Reverse the letters, then keep every other letter.",
               "Sort the letters, then double each letter, then rotate the letters by 2.",
               "Swap each pair of letters, then keep every other letter, then move the first 3 letters to the end."]
    problems = StringProgramTask(program_seed=20).problems("train", args.problems, 0)
    texts = [tokenizer.apply_chat_template(chat_messages(systems[g % args.members], p.prompt), tokenize=False,
                                           add_generation_prompt=True) for p in problems for g in range(args.G)]
    return model, [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], tokenizer.pad_token_id


def random_batch(args):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                         num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config)
    systems = [torch.randint(10, 1000, (args.system,)).tolist() for _ in range(args.members)]
    problems = [torch.randint(10, 1000, (args.problem,)).tolist() for _ in range(args.problems)]
    return model, [systems[g % args.members] + p for p in problems for g in range(args.G)], 0


def timed(fn, device, repeats):
    import torch

    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="micro", choices=["micro", "qwen3-0.6b"])
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda where there is one")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on CPU")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--G", type=int, default=8)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--system", type=int, default=400, help="system prompt tokens (random model)")
    parser.add_argument("--problem", type=int, default=100, help="problem tokens (random model)")
    parser.add_argument("--completion", type=int, default=24, help="sampled tokens per rollout")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torch  # after the arguments: --help answers at once

    from fastslow import shared_prefix

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    model, prompts, pad_id = micro_batch(args) if args.model == "micro" else random_batch(args)
    model.to(args.device).eval()
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.bf16)

    sample = dict(max_new_tokens=args.completion, min_new_tokens=args.completion, do_sample=True, top_k=0,
                  pad_token_id=pad_id)
    completions = torch.randint(10, 90, (len(prompts), args.completion), device=args.device)
    mask = torch.ones_like(completions)

    def whole_rows(backward: bool):
        ids, attention = (t.to(args.device) for t in shared_prefix.left_pad(prompts, pad_id))
        ids, attention = torch.cat([ids, completions], 1), torch.cat([attention, mask], 1)
        logits = model(input_ids=ids, attention_mask=attention, logits_to_keep=args.completion + 1).logits
        if backward:
            logits[:, :-1].float().logsumexp(-1).sum().backward()

    def shared_rows(backward: bool):
        rows = shared_prefix.prefill(model, prompts, pad_id)
        logits = shared_prefix.forward_rest(model, rows, completions, mask, logits_to_keep=args.completion + 1).logits
        if backward:
            logits[:, :-1].float().logsumexp(-1).sum().backward()

    passes = {
        "sampling": (lambda: shared_prefix.generate(model, prompts, pad_id, share=False, **sample),
                     lambda: shared_prefix.generate(model, prompts, pad_id, **sample)),
        "log-probs, no gradient (reference pass)": (lambda: torch.no_grad()(whole_rows)(False),
                                                    lambda: torch.no_grad()(shared_rows)(False)),
        "log-probs, forward + backward (policy pass)": (lambda: whole_rows(True), lambda: shared_rows(True)),
    }
    plan = shared_prefix.plan_prefixes(prompts)
    whole = sum(map(len, prompts))
    shared = sum(length + sum(len(prompts[r]) - length for r in g) for g, length in zip(plan.groups, plan.lengths))
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} threads"
    print(f"{args.model}, {name}, {'bf16 autocast' if args.bf16 else 'float32'}: {len(prompts)} rows "
          f"({args.problems} problems x G={args.G}, K={args.members} system prompts), prompt tokens "
          f"{whole} whole / {shared} shared ({len(plan.groups)} groups), {args.completion} completion tokens per row\n")
    print("| pass | whole rows (s) | shared prefixes (s) | speed-up |")
    print("|---|---|---|---|")
    with autocast:
        for label, (baseline, ours) in passes.items():
            model.zero_grad(set_to_none=True)
            base_s, ours_s = timed(baseline, args.device, args.repeats), timed(ours, args.device, args.repeats)
            print(f"| {label} | {base_s:.3f} | {ours_s:.3f} | {base_s / ours_s:.2f}x |")


if __name__ == "__main__":
    main()
