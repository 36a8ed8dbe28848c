"""What the memory benchmarks share: random weights of real model shapes (no download), a synthetic task whose
rewards always vary, and peak-memory measurement (GPU: the allocator's peak; CPU: the process's resident set).

The tokenizer is the micro model's (one token per character, so a prompt of n characters is n tokens); the model's
vocabulary is the real one (151,936 for Qwen3), so the output layer and its log-probs are full size. Sampled ids
outside the tokenizer's vocabulary decode to nothing, which the synthetic rewards do not read.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import torch

from fastslow.tasks import Problem, Verdict

# Hugging Face configs of Qwen3 (config.json of Qwen/Qwen3-1.7B and Qwen/Qwen3-4B); "tiny" is for a CPU check of the
# scripts (with a small vocabulary: the output layer of 151,936 makes a CPU step take tens of seconds)
SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16),
    "qwen3-1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128),
    "qwen3-4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128),
}
VOCAB = 151_936
TINY_VOCAB = 512


def random_qwen3(shape: str, tokenizer, dtype: torch.dtype = torch.bfloat16, device: str = "cpu", vocab: int = VOCAB):
    """A Qwen3ForCausalLM of `shape` with random weights, built on `device` (fast on a GPU)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**SHAPES[shape], vocab_size=vocab, tie_word_embeddings=True, max_position_embeddings=40960,
                         rope_theta=1_000_000.0, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3ForCausalLM(config).to(dtype)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def decodable(tokenizer, vocab: int = VOCAB):
    """`tokenizer` with one added token for each id past its own up to `vocab` (`<w123>`), so that what a random
    model samples decodes to text. With the micro tokenizer's 100 tokens alone nearly every sampled id decodes to
    nothing: every reflection came back empty, and GEPA proposed nothing (issue 23's Qwen3-1.7B-shaped fast phase)."""
    tokenizer.add_tokens([f"<w{i}>" for i in range(len(tokenizer), vocab)])
    return tokenizer


class AlternatingRewardTask:
    """Synthetic task for benchmarks: problems of `prompt_chars` characters; rewards alternate 0, 1, 0, ... in
    scoring order, so every problem's G rollouts vary and all rows stay in the update (the most memory)."""

    name = "alternating-reward"
    seed_prompt = "Solve the problem. Put the final answer in \\boxed{}."

    def __init__(self, prompt_chars: int = 200):
        self.prompt_chars, self.calls = prompt_chars, 0

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        text = "Find the number of ordered pairs of integers that satisfy the equation below. "
        return [Problem(f"{split}-{seed}-{i}", (f"Problem {i}. " + text * 100)[: self.prompt_chars], "0")
                for i in range(n)]

    def score(self, problem: Problem, completion: str) -> Verdict:
        self.calls += 1
        return Verdict(float(self.calls % 2), "synthetic")


@dataclass
class Peak:
    bytes: int = 0

    @property
    def gib(self) -> float:
        return self.bytes / 2**30


class PeakMemory:
    """`with PeakMemory(device) as peak:` ... `peak.gib`: the most memory held inside the block. On a GPU, torch's
    allocated-memory peak (weights, optimizer state, activations; not the allocator's cache); on a CPU, the peak
    resident set of the process, sampled every 5 ms."""

    def __init__(self, device: str):
        self.device, self.peak, self._stop = device, Peak(), threading.Event()

    def __enter__(self) -> Peak:
        self.peak = Peak()
        self._stop.clear()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self.peak

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with open("/proc/self/statm") as statm:
                self.peak.bytes = max(self.peak.bytes, int(statm.read().split()[1]) * page)
            time.sleep(0.005)

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak.bytes = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._sampler.join()


def device_name(device: str) -> str:
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        return f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    return f"CPU, {torch.get_num_threads()} threads"
