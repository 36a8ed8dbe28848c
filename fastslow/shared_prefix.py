"""Many prompts that share long prefixes: each shared prefix goes through the model once.

In FST every prompt starts with a population member's system prompt: an RL step samples G rollouts of each
problem under K members, GEPA scores each candidate on a minibatch, and the update runs the policy (and the
reference) over all those rows again. `plan_prefixes` groups rows by shared token prefix; `prefill` runs each
group's prefix once and copies its KV cache to the group's rows; the rest of each row (its problem, then its
completion) runs on top of that cache, in `generate` for sampling or in the trainer's log-prob pass. Each row's
tokens, positions and attention are those it has alone, so results are unchanged up to float rounding, gradients
included (the copy is an index_select, whose backward sums the rows' gradients into the prefix). On the micro
model, whose character-level prompts are mostly system prompt, prefill was ~60% of sampling time on 2 CPU cores.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from fastslow.errors import FastSlowError


@dataclass(frozen=True)
class PrefixPlan:
    groups: list[list[int]]  # row indices of each group
    lengths: list[int]  # tokens the rows of each group share (and that are computed once)

    @property
    def shared_rows(self) -> int:
        """Rows whose prefix is computed together with another row's."""
        return sum(len(g) for g, length in zip(self.groups, self.lengths) if len(g) > 1 and length > 0)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def plan_prefixes(prompts: Sequence[Sequence[int]], min_share: float = 0.5) -> PrefixPlan:
    """Group rows that share a prefix so that the fewest prompt tokens are computed.

    Sorting puts prompts with common prefixes next to each other, and a run of sorted prompts shares the least of
    its neighbours' common prefixes, so groups are runs: a group of n rows sharing p tokens computes
    sum(lengths) - (n - 1) * p tokens, and a dynamic program over the runs finds the cheapest split. A group's rows
    must share at least `min_share` of its longest prompt: sharing only a chat template's header would pad every
    row's unshared rest to the longest one. Every row keeps one token outside its prefix, since its first sampled
    token comes from that token's logits.
    """
    n = len(prompts)
    order = sorted(range(n), key=lambda i: list(prompts[i]))
    lengths = [len(prompts[i]) for i in order]
    neighbours = [common_prefix(prompts[order[k - 1]], prompts[order[k]]) for k in range(1, n)]
    best, start_of, shared_of = [0] + [None] * n, [0] * (n + 1), [0] * (n + 1)
    for end in range(1, n + 1):  # the cheapest split of the first `end` rows, whose last group is [start, end)
        longest = total = lengths[end - 1]
        shared = longest - 1
        for start in range(end - 1, -1, -1):
            if start < end - 1:
                shared = min(shared, neighbours[start], lengths[start] - 1)
                longest, total = max(longest, lengths[start]), total + lengths[start]
                if shared < min_share * longest:
                    break  # the shared prefix only shrinks as the group grows
            cost = best[start] + total - (end - start - 1) * shared
            if best[end] is None or cost < best[end]:
                best[end], start_of[end], shared_of[end] = cost, start, shared
    groups, shares, end = [], [], n
    while end:
        groups.append(order[start_of[end] : end])
        shares.append(shared_of[end])
        end = start_of[end]
    return PrefixPlan(groups[::-1], shares[::-1])


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(r) for r in rows), default=0) if width is None else width
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.as_tensor(list(row), dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows, as transformers' generate derives them (pads get 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def cache_kwarg(model: nn.Module) -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x); the name this version's forward takes."""
    base = getattr(model, "module", model)  # DDP
    base = base.get_base_model() if hasattr(base, "get_base_model") else base  # peft's forward takes **kwargs
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


@dataclass
class Prefilled:
    """Rows laid out as [left-padded prefix | left-padded rest], every group's prefix ending in column `cached`;
    `cache` holds columns [0, cached) of every row (its group's copy), the rest is not yet computed."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    cache: object
    cached: int

    @property
    def uncached_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.cached :]


def prefill(model: nn.Module, prompts: Sequence[Sequence[int]], pad_id: int,
            plan: PrefixPlan | None = None) -> Prefilled:
    """Run each group's shared prefix through `model` once (with gradient if enabled) and copy its cache to the
    group's rows."""
    from transformers import DynamicCache

    plan = plan or plan_prefixes(prompts)
    device = next(model.parameters()).device
    group_of = torch.empty(len(prompts), dtype=torch.long)
    rests: list[Sequence[int]] = [()] * len(prompts)
    for g, (group, length) in enumerate(zip(plan.groups, plan.lengths)):
        for row in group:
            group_of[row] = g
            rests[row] = prompts[row][length:]
    prefix_ids, prefix_mask = left_pad([prompts[group[0]][:length] for group, length in zip(plan.groups, plan.lengths)],
                                       pad_id)
    rest_ids, rest_mask = left_pad(rests, pad_id)
    prefix_ids, prefix_mask, group_of = prefix_ids.to(device), prefix_mask.to(device), group_of.to(device)
    cache = DynamicCache(config=getattr(model, "module", model).config)
    if prefix_ids.shape[1]:
        model(input_ids=prefix_ids, attention_mask=prefix_mask, position_ids=positions(prefix_mask), use_cache=True,
              logits_to_keep=1, **{cache_kwarg(model): cache})  # only the cache is wanted, not the logits
        # index_select, whose backward (index_add) is deterministic on CPU; indexing's backward adds atomically
        cache.reorder_cache(group_of)
    return Prefilled(
        input_ids=torch.cat([prefix_ids[group_of], rest_ids.to(device)], dim=1),
        attention_mask=torch.cat([prefix_mask[group_of], rest_mask.to(device)], dim=1),
        cache=cache,
        cached=prefix_ids.shape[1],
    )


def forward_rest(model: nn.Module, rows: Prefilled, ids: torch.Tensor, mask: torch.Tensor, **kwargs):
    """Run each row's uncomputed prompt tokens, then `ids` [rows, n] (right-padded, e.g. completions), on top of the
    prefilled cache; returns the model's output over those columns. `kwargs` go to the model (labels, ...)."""
    input_ids = torch.cat([rows.uncached_ids, ids], dim=1)
    attention_mask = torch.cat([rows.attention_mask, mask], dim=1)
    out = model(input_ids=input_ids, attention_mask=attention_mask,
                position_ids=positions(attention_mask)[:, rows.cached :], **{cache_kwarg(model): rows.cache}, **kwargs)
    if rows.cached and rows.cache.get_seq_length() != attention_mask.shape[1]:  # it ran without the prefixes
        raise FastSlowError(f"{type(model).__name__} ignores a KV cache passed to its forward, so prompt prefixes "
                            "cannot be shared; set model.share_prefixes: false")
    return out


@torch.no_grad()
def generate(model: nn.Module, prompts: Sequence[Sequence[int]], pad_id: int, share: bool = True,
             static_cache: bool = False, **generate_kwargs) -> torch.Tensor:
    """Sample a continuation of each prompt (token ids); returns the new tokens [rows, new], as `model.generate`
    returns them after the prompt columns. `generate_kwargs` go to `model.generate` (generation_config, ...).
    `static_cache`: on a GPU, rows that share nothing decode with a preallocated KV cache, whose decoding step
    transformers compiles on first use: on one H100 micro-v4 then decoded 128 rows at 2.77 ms per token against
    12.03 with the growing cache (issue 23), after a compilation that cost a fresh process ~30 s. Not on a CPU."""
    device = next(model.parameters()).device
    with decoding_attention(device):
        plan = plan_prefixes(prompts) if share else None
        if plan and plan.shared_rows:
            rows = prefill(model, prompts, pad_id, plan)
            input_ids, attention_mask, extra = rows.input_ids, rows.attention_mask, {cache_kwarg(model): rows.cache}
        else:  # nothing to share: plain left-padded generation
            input_ids, attention_mask = (t.to(device) for t in left_pad(prompts, pad_id))
            # not under autocast (accelerate runs a mixed-precision model's forward in it: `_original_forward`): Qwen3's
            # key norm returns float32 keys beside bf16 values there, and a static cache holds both in the keys' dtype
            autocast = torch.is_autocast_enabled(device.type) or hasattr(model, "_original_forward")
            static = static_cache and device.type == "cuda" and not autocast
            extra = {"cache_implementation": "static"} if static else {}
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **extra, **generate_kwargs)
    return out[:, input_ids.shape[1] :]


def decoding_attention(device: torch.device):
    """Attention kernels for sampling: on a GPU, SDPA without cuDNN's. torch >= 2.11 on Hopper tries cuDNN attention
    first, which builds an execution graph for each new (rows, key length) and caches it (~30 ms each); every decoding
    step has a new key length, so each batch size not sampled before pays a build per token. With rollout reuse the
    fresh rows' count changes every step: on one H100 (micro-v4) such steps took 0.45-0.97 s to generate, steps whose
    count had come before 0.13-0.25 s, as did every step of 128 rows without reuse. Flash and memory-efficient
    attention build nothing. Measured (benchmarks/sampling_shapes.py, one H100, torch 2.11): a new row count's first
    call 0.78-0.88 s with the default kernels (cuDNN's, by the profiler), 0.15-0.18 s with these."""
    if device.type != "cuda":
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
