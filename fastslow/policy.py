"""The policy π_θ(y | x, φ): loading a causal LM, sampling completions under a system prompt, and the
next-token distributions the paper's measurements need (entropy, KL to the base model), a chunk of positions at a
time.

Works for any Hugging Face causal LM with a chat template: a hub id, a local directory, or "micro",
the small model this project trains and ships (fastslow/micro/model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastslow import shared_prefix
from fastslow.errors import FastSlowError

MICRO_MODEL_DIR = Path(__file__).parent / "micro" / "model"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_model_path(path: str) -> str:
    """'micro' names the embedded model; an existing directory is used as is; anything else is a hub id."""
    if path == "micro":
        return str(MICRO_MODEL_DIR)
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise FastSlowError(f"model.path: {local} has no config.json; expected a Hugging Face model directory")
        return str(local)
    if path.startswith((".", "/", "~")) or path.count("/") > 1:
        raise FastSlowError(f"model.path: {path} does not exist; expected a model directory or a hub id")
    return path


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(path))
    except OSError as exc:
        raise FastSlowError(f"model.path: cannot load a tokenizer from {path!r}: {exc}") from None
    if tokenizer.chat_template is None:
        raise FastSlowError(f"model.path: the tokenizer of {path!r} has no chat template")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation appends on the right
    return tokenizer


def load_model(path: str, dtype: str = "auto", device: str | torch.device | None = None) -> nn.Module:
    from transformers import AutoModelForCausalLM

    torch_dtype = DTYPES.get(dtype, "auto")
    try:
        model = AutoModelForCausalLM.from_pretrained(resolve_model_path(path), dtype=torch_dtype)
    except OSError as exc:
        raise FastSlowError(f"model.path: cannot load a causal LM from {path!r}: {exc}") from None
    if device is not None:
        model.to(device)
    return model


def chat_messages(system_prompt: str | None, user: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": user}]


class EntropyRecorder:
    """A logits processor that records the policy's next-token entropy (nats) at every sampling step, for every row.

    transformers runs user processors before its temperature and top-p warpers, so this is the entropy of π_θ
    itself, the quantity the paper reports, at the positions the rollout actually visited. It costs one softmax
    per step and keeps one float per row and step, never the logits."""

    def __init__(self):
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(scores.float(), dim=-1)
        self.steps.append(-(log_p.exp() * log_p).nan_to_num().sum(dim=-1))
        return scores

    def row_sums(self, lengths: Sequence[int]) -> list[float]:
        """Each row's summed entropy over its first `lengths[row]` sampled tokens."""
        if not self.steps:
            return [0.0] * len(lengths)
        per_step = torch.stack(self.steps, dim=1).cpu()  # [rows, steps]
        return [float(per_step[row, :n].sum()) for row, n in enumerate(lengths)]


@dataclass
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    chat_template_kwargs: dict[str, Any] | None = None
    share_prefixes: bool = True  # fastslow.shared_prefix


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer,
    conversations: Sequence[list[dict[str, str]]],
    sampling: Sampling,
    batch_size: int = 64,
) -> list[str]:
    """Sample one completion per conversation, batched; rows that share a prefix (a system prompt) are batched
    together and the prefix is computed once (fastslow.shared_prefix). temperature 0 means greedy."""
    was_training = model.training
    model.eval()
    prompts = [
        tokenizer.apply_chat_template(
            conv, tokenize=False, add_generation_prompt=True, **(sampling.chat_template_kwargs or {})
        )
        for conv in conversations
    ]
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompt_ids)), key=lambda i: prompt_ids[i])  # neighbours share prefixes
    greedy = sampling.temperature == 0
    outputs: list[str] = [""] * len(prompt_ids)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        new_tokens = shared_prefix.generate(
            model,
            [prompt_ids[i] for i in rows],
            tokenizer.pad_token_id,
            share=sampling.share_prefixes,
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
        )
        for i, text in zip(rows, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
            outputs[i] = text
    model.train(was_training)
    return outputs


CHUNK_ELEMENTS = 2**26  # float32 elements of one chunk of next-token log-probabilities (256 MB)


@dataclass
class NextTokenDistributions:
    """The next-token distributions at a batch's completion positions, held as what they are computed from: the
    hidden states the output embeddings project, or the model's own logits where it transforms them after that
    projection (soft-capping, scaling). `log_probs(positions)` builds [B, positions, V] in float32, so the whole
    [B, L, V] never exists at once."""

    states: torch.Tensor  # [B, L, hidden] (or [B, L, V])
    project: Callable[[torch.Tensor], torch.Tensor]  # states -> logits
    mask: torch.Tensor  # [B, L]: 1 at a completion token
    tokens: torch.Tensor  # [B, L]: the completion token at each position (the one its distribution predicts)
    vocab: int

    def chunks(self) -> list[slice]:
        """Ranges of positions whose log-probs take at most CHUNK_ELEMENTS float32 values (at least one position)."""
        rows, length = self.mask.shape
        step = max(1, CHUNK_ELEMENTS // max(rows * self.vocab, 1))
        return [slice(start, start + step) for start in range(0, length, step)]

    def log_probs(self, positions: slice) -> torch.Tensor:
        return torch.log_softmax(self.project(self.states[:, positions]).float(), dim=-1)


def completion_distributions(
    model: nn.Module, tokenizer, conversations: Sequence[list[dict[str, str]]], completions: Sequence[str],
    chat_template_kwargs: dict[str, Any] | None = None,
) -> NextTokenDistributions:
    """The next-token distributions of `model` at every position of `completions` (each ended by EOS), answering
    `conversations`. One forward; its output embeddings project only the last position, which is compared with the
    model's own logits there to know whether projecting the hidden states gives the model's distribution."""
    prompts = [
        tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True, **(chat_template_kwargs or {}))
        for conv in conversations
    ]
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    completion_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for c in completions]
    length = max(len(c) for c in completion_ids)
    # left padding: every completion ends at the right edge
    input_ids, attention = shared_prefix.left_pad([p + c for p, c in zip(prompt_ids, completion_ids)],
                                                  tokenizer.pad_token_id)
    device = next(model.parameters()).device
    inputs = {"input_ids": input_ids.to(device), "attention_mask": attention.to(device)}
    mask = shared_prefix.left_pad(completion_ids, tokenizer.pad_token_id, width=length)[1].float().to(device)
    tokens = inputs["input_ids"][:, -length:]
    head, captured = model.get_output_embeddings(), []

    def project_last_only(module, args):  # keep the hidden states; the head computes the last position alone
        if args:
            captured.append(args[0])
            return (args[0][:, -1:], *args[1:])

    hook = head.register_forward_pre_hook(project_last_only)
    try:  # position t predicts token t+1: the last `length` + 1 positions, less the very last
        last_logits = model(**inputs, logits_to_keep=length + 1).logits
    finally:
        hook.remove()
    if len(captured) == 1 and torch.allclose(head(captured[0][:, -1:]).float(), last_logits.float(), atol=1e-4):
        return NextTokenDistributions(captured[0][:, :-1], head, mask, tokens, last_logits.shape[-1])
    logits = model(**inputs, logits_to_keep=length + 1).logits[:, :-1]  # the model's own, whole
    return NextTokenDistributions(logits, lambda x: x, mask, tokens, logits.shape[-1])
