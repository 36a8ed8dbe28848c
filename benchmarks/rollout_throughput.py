"""Rollout throughput of each generation engine on the same batch, against the memory roofline.

    python benchmarks/rollout_throughput.py --model micro      # the micro model, an RL batch of the micro presets
    python benchmarks/rollout_throughput.py --model qwen3-1.7b # Qwen3-1.7B's shape, random bf16 weights (GPU)
    python benchmarks/rollout_throughput.py --tiny             # a tiny random model, to check the script

The batch is an FST RL step's: `--problems` problems x G rollouts, whose system prompts cycle through K members
(`--system-tokens` each) followed by the problem (`--problem-tokens`); every row samples exactly `--new-tokens`
tokens (end-of-sequence ignored), temperature 1. Engines:
- `hf`: transformers `generate`, left-padded rows, dynamic cache (what TRL's transformers path does);
- `hf static cache`: the same with `cache_implementation="static"`;
- `shared prefix`: fastslow.shared_prefix.generate, each member's system prompt computed once (our default);
- `vllm`: vLLM's offline engine (when installed; prefix caching on), fed token ids.
Memory roofline: every decoding step reads all weights once and every row's KV cache so far, at the device's
memory bandwidth (measured here with a large copy on CPU; the datasheet's on GPU); prefill is not counted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SHAPES = {  # Qwen3 shapes (hidden, intermediate, layers, heads, kv heads, head dim, vocab)
    "qwen3-1.7b": (2048, 6144, 28, 16, 8, 128, 151936),
    "tiny": (128, 512, 4, 4, 2, 32, 256),
}
GPU_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12}  # bytes/s, datasheets


def build_model(name: str, dtype: torch.dtype, device: str):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from fastslow.policy import load_model

    if name not in SHAPES:
        return load_model(name, dtype=str(dtype).removeprefix("torch."), device=device).eval()
    hidden, intermediate, layers, heads, kv_heads, head_dim, vocab = SHAPES[name]
    config = Qwen3Config(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim, vocab_size=vocab,
                         max_position_embeddings=4096, tie_word_embeddings=True, eos_token_id=0, pad_token_id=0,
                         bos_token_id=None)
    torch.manual_seed(0)
    return Qwen3ForCausalLM(config).to(dtype=dtype, device=device).eval()


def batch(model, args) -> list[list[int]]:
    """G rows per problem, row i under system prompt i mod K; random token ids (a random model reads no text)."""
    import torch

    generator = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    systems = [torch.randint(1, vocab, (args.system_tokens,), generator=generator).tolist()
               for _ in range(args.members)]
    problems = [torch.randint(1, vocab, (args.problem_tokens,), generator=generator).tolist()
                for _ in range(args.problems)]
    return [systems[slot % args.members] + problem for problem in problems for slot in range(args.rollouts)]


def roofline_seconds(model, prompts: list[list[int]], new_tokens: int, bandwidth: float) -> float:
    config, element = model.config, next(model.parameters()).element_size()
    weights = sum(p.numel() for p in model.parameters()) * element
    kv_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * element
    context = sum(len(p) for p in prompts)
    total = sum(weights + kv_per_token * (context + step * len(prompts)) for step in range(new_tokens))
    return total / bandwidth


def memory_bandwidth(device: str) -> float:
    import torch

    if device == "cuda":
        name = torch.cuda.get_device_name()
        return next((v for k, v in GPU_BANDWIDTH.items() if k in name), 3.35e12)
    a = torch.empty(256 * 2**20 // 4, dtype=torch.float32)  # 256 MiB, far past the caches
    b = torch.empty_like(a)
    b.copy_(a)
    start = time.perf_counter()
    for _ in range(5):
        b.copy_(a)
    return 5 * 2 * a.numel() * 4 / (time.perf_counter() - start)  # read + write


def hf_engines(model, prompts, args):
    from fastslow import shared_prefix

    settings = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": True,
                "temperature": 1.0, "top_k": 0, "top_p": 1.0, "pad_token_id": 0}
    yield "hf", lambda: shared_prefix.generate(model, prompts, 0, share=False, **settings)
    yield "hf static cache", lambda: shared_prefix.generate(model, prompts, 0, share=False,
                                                            cache_implementation="static", **settings)
    yield "shared prefix", lambda: shared_prefix.generate(model, prompts, 0, share=True, **settings)


def vllm_engine(model, prompts, args, dtype):
    try:
        import vllm  # noqa: F401
    except ImportError:
        return None
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    from vllm import LLM, SamplingParams

    directory = Path(tempfile.mkdtemp()) if args.model in SHAPES else None
    if directory:
        model.save_pretrained(directory)
    llm = LLM(model=str(directory or model.name_or_path), skip_tokenizer_init=True, dtype=str(dtype).split(".")[-1],
              gpu_memory_utilization=0.5, max_model_len=max(len(p) for p in prompts) + args.new_tokens + 8, seed=0)
    params = SamplingParams(n=1, temperature=1.0, top_k=0, max_tokens=args.new_tokens, min_tokens=args.new_tokens,
                            ignore_eos=True, detokenize=False)
    inputs = [{"prompt_token_ids": p} for p in prompts]
    return lambda: llm.generate(inputs, params, use_tqdm=False)


def timed(function, repeats: int) -> tuple[float, float]:
    """Best wall-clock seconds of `repeats` calls after a warm-up (compilation, allocator), and that call's CPU
    seconds (this process, all threads: on a shared CPU, what the engine itself used)."""
    import torch

    function()
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start, time.process_time() - cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="micro", help=f"a model path, 'micro', or a random shape: {sorted(SHAPES)}")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--rollouts", type=int, default=8, help="G")
    parser.add_argument("--members", type=int, default=4, help="K: distinct system prompts")
    parser.add_argument("--system-tokens", type=int, default=100)
    parser.add_argument("--problem-tokens", type=int, default=20)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: bfloat16 on GPU, float32 on CPU)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--engines", nargs="*", default=None, help="only these engines")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tiny", action="store_true", help="a tiny random model and batch, to check the script")
    args = parser.parse_args()
    import torch  # after the arguments: --help answers at once

    if args.tiny:
        args.model, args.problems, args.rollouts, args.members = "tiny", 2, 4, 2
        args.system_tokens, args.problem_tokens, args.new_tokens, args.repeats = 16, 4, 8, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype or ("bfloat16" if device == "cuda" else "float32"))
    model = build_model(args.model, dtype, device)
    prompts = batch(model, args)
    bandwidth = memory_bandwidth(device)
    roofline = roofline_seconds(model, prompts, args.new_tokens, bandwidth)
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    load = os.getloadavg()[0]
    print(f"{args.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, {str(dtype)[6:]}), "
          f"{len(prompts)} rows ({args.problems} problems x G={args.rollouts}, K={args.members} system prompts of "
          f"{args.system_tokens} tokens, problems of {args.problem_tokens}), {args.new_tokens} new tokens each; "
          f"{where}, memory bandwidth {bandwidth / 1e9:.0f} GB/s, load average {load:.1f}, {time.strftime('%Y-%m-%d')}")
    print(f"\n| engine | seconds | new tokens/s | × memory roofline ({roofline:.3f} s) | CPU seconds |\n"
          "|---|---|---|---|---|")
    engines = dict(hf_engines(model, prompts, args))
    if args.engines is None or "vllm" in args.engines:
        vllm = vllm_engine(model, prompts, args, dtype)
        if vllm is not None:
            engines["vllm"] = vllm
    tokens = len(prompts) * args.new_tokens
    for name, function in engines.items():
        if args.engines and name not in args.engines:
            continue
        with torch.no_grad():
            seconds, cpu = timed(function, args.repeats)
        print(f"| {name} | {seconds:.2f} | {tokens / seconds:,.0f} | {seconds / roofline:.1f}× | {cpu:.1f} |", flush=True)


if __name__ == "__main__":
    main()
