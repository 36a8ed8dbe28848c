"""The policy π_θ(y | x, φ): loading a causal LM, sampling completions under a system prompt, and the
next-token distributions the paper's measurements need (entropy, KL to the base model), a chunk of positions at a
time.

Works for any Hugging Face causal LM with a chat template: whatever fastslow.models resolves (a hub id, a local
directory, a short name such as "micro", the small model this project trains and ships).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fastslow import shared_prefix
from fastslow.errors import FastSlowError
from fastslow.models import resolve_model_path

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


def peft_lora(lora):
    """peft's LoraConfig for the run's `model.lora` section (None: no adapters): what TRL wraps the policy with."""
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
                      task_type="CAUSAL_LM")


def chat_messages(prompt: str | None, user: str, placement: str = "system") -> list[dict[str, str]]:
    """The conversation of `prompt` (the evolved or seed prompt; None or empty: none) and `user` (the problem).
    placement "system" (model.prompt_placement): `prompt` is the system message; "user": no system message, `prompt`
    heads the user message, a blank line before the problem (for models that ignore their system role)."""
    if placement == "user":
        return [{"role": "user", "content": f"{prompt}\n\n{user}" if prompt else user}]
    messages = [{"role": "system", "content": prompt}] if prompt else []
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
    static_cache: bool = False  # on a GPU, where no prefix is shared (fastslow.shared_prefix.generate)
    prompt_placement: str = "system"  # where a conversation puts its prompt: chat_messages' placement

    @classmethod
    def of(cls, model_config) -> Sampling:
        """How rollouts are sampled under `model_config` (config.ModelConfig): RL steps, GEPA and evaluation alike."""
        return cls(model_config.max_new_tokens, model_config.temperature, model_config.top_p,
                   model_config.chat_template_kwargs, model_config.share_prefixes, model_config.static_cache,
                   model_config.prompt_placement)


@dataclass
class Completion:
    """One sampled completion: its prompt's token ids, its own (up to and including the first end-of-sequence token,
    as TRL keeps them), and per token log softmax(logits / temperature) under the weights that sampled it (None when
    greedy): the distribution TRL's trainer computes for π_θ, so a rollout sampled by the current weights has
    importance ratio 1. TRL's log-probs ignore top_p, and so do these. `entropy`: π_θ's next-token entropy summed
    over its tokens (None where the engine does not give it: vLLM), the RL step's `member_entropy` for a reused row."""

    prompt_ids: list[int]
    ids: list[int]
    logprobs: list[float] | None
    text: str
    entropy: float | None = None


def prompt_token_ids(tokenizer, conversations: Sequence[list[dict[str, str]]],
                     chat_template_kwargs: dict[str, Any] | None = None) -> list[list[int]]:
    """Each conversation's prompt tokens, tokenised the way TRL's trainer tokenises its rows, so that a completion
    sampled here continues exactly the prompt the trainer would train it under."""
    if not conversations:
        return []
    return tokenizer.apply_chat_template(list(conversations), tokenize=True, add_generation_prompt=True,
                                         return_dict=True, **(chat_template_kwargs or {}))["input_ids"]


def eos_token_ids(model: nn.Module, tokenizer) -> list[int]:
    """The tokens that end a completion, as TRL's trainer takes them: the tokenizer's and the generation config's."""
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    return ids if tokenizer.eos_token_id in ids else [tokenizer.eos_token_id, *ids]


class _SampledLogprobs:
    """Records log softmax(scores / temperature) of each sampled token. `generate` calls it with each step's logits
    before its temperature and top-p warpers, and with the tokens sampled so far: the previous step's token is
    looked up in the previous step's distribution (the last token after `generate` returns, in `finish`)."""

    def __init__(self, temperature: float):
        self.temperature, self.previous, self.columns = temperature, None, []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.previous is not None:
            self.columns.append(self.previous.gather(1, input_ids[:, -1:]))
        self.previous = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def finish(self, new_tokens: torch.Tensor) -> torch.Tensor:
        if self.previous is not None:
            self.columns.append(self.previous.gather(1, new_tokens[:, -1:].to(self.previous.device)))
        if not self.columns:  # nothing was sampled
            return new_tokens.new_zeros(new_tokens.shape, dtype=torch.float)
        return torch.cat(self.columns, dim=1)


@torch.no_grad()
def sample_ids(model: nn.Module, prompt_ids: Sequence[Sequence[int]], sampling: Sampling, pad_id: int,
               eos_ids: Sequence[int], batch_size: int | None = None,
               entropies: list[float] | None = None) -> list[tuple[list[int], list[float] | None]]:
    """Sample one completion per prompt (token ids): its tokens up to and including the first end-of-sequence token,
    and their log-probs (`Completion`). Rows that share a prefix (a system prompt) are batched together and the
    prefix is computed once (fastslow.shared_prefix); `batch_size` rows at a time (None: all). temperature 0: greedy.
    The settings are TRL's trainer's (top_k 0, no repetition penalty), passed explicitly: `generate` fills unset
    ones from the checkpoint's generation config. `entropies`, when given, receives each row's next-token entropy of
    π_θ summed over its tokens (EntropyRecorder), in the rows' order."""
    from transformers import LogitsProcessorList

    greedy = sampling.temperature == 0
    settings = {"max_new_tokens": sampling.max_new_tokens, "do_sample": not greedy, "top_k": 0, "min_p": None,
                "temperature": 1.0 if greedy else sampling.temperature, "top_p": 1.0 if greedy else sampling.top_p,
                "repetition_penalty": 1.0, "eos_token_id": list(eos_ids), "pad_token_id": pad_id}
    order = sorted(range(len(prompt_ids)), key=lambda i: list(prompt_ids[i]))  # neighbours share prefixes
    step = batch_size or max(len(order), 1)
    eos = set(eos_ids)
    results: list[tuple[list[int], list[float] | None]] = [([], None)] * len(prompt_ids)
    row_entropies = [0.0] * len(prompt_ids)
    for start in range(0, len(order), step):
        rows = order[start : start + step]
        recorder = None if greedy else _SampledLogprobs(sampling.temperature)
        entropy = EntropyRecorder() if entropies is not None else None
        processors = LogitsProcessorList([p for p in (recorder, entropy) if p is not None])
        new_tokens = shared_prefix.generate(model, [prompt_ids[i] for i in rows], pad_id, share=sampling.share_prefixes,
                                            static_cache=sampling.static_cache, logits_processor=processors, **settings)
        logprobs = recorder.finish(new_tokens).tolist() if recorder else [None] * len(rows)
        for i, tokens, row_logprobs in zip(rows, new_tokens.tolist(), logprobs):
            end = next((n + 1 for n, token in enumerate(tokens) if token in eos), len(tokens))
            results[i] = (tokens[:end], row_logprobs[:end] if row_logprobs else None)
        if entropy is not None:
            for i, total in zip(rows, entropy.row_sums([len(results[i][0]) for i in rows])):
                row_entropies[i] = total
    if entropies is not None:
        entropies.extend(row_entropies)
    return results


def sample(model: nn.Module, tokenizer, conversations: Sequence[list[dict[str, str]]], sampling: Sampling,
           batch_size: int = 64, engine=None) -> list[Completion]:
    """Sample one completion per conversation, decoded: `sample_ids` on its prompt tokens with `model`, or the run's
    generation `engine` (fastslow.engine; None: transformers on `model`)."""
    prompts = prompt_token_ids(tokenizer, conversations, sampling.chat_template_kwargs)
    entropies: list[float | None] = []
    if engine is not None:
        sampled = engine.sample(prompts, sampling)
        entropies = [None] * len(sampled)
    else:
        was_training = model.training
        model.eval()
        sampled = sample_ids(model, prompts, sampling, tokenizer.pad_token_id, eos_token_ids(model, tokenizer),
                             batch_size, entropies)
        model.train(was_training)
    texts = tokenizer.batch_decode([ids for ids, _ in sampled], skip_special_tokens=True)
    return [Completion(list(p), ids, logprobs, text, entropy)
            for p, (ids, logprobs), text, entropy in zip(prompts, sampled, texts, entropies)]


def generate(model: nn.Module, tokenizer, conversations: Sequence[list[dict[str, str]]], sampling: Sampling,
             batch_size: int = 64) -> list[str]:
    """The text of one sampled completion per conversation (`sample`)."""
    return [c.text for c in sample(model, tokenizer, conversations, sampling, batch_size)]


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
    `conversations` (next_token_distributions)."""
    prompt_ids = prompt_token_ids(tokenizer, conversations, chat_template_kwargs)  # as they were sampled
    completion_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for c in completions]
    length = max(len(c) for c in completion_ids)
    # left padding: every completion ends at the right edge
    input_ids, attention = shared_prefix.left_pad([p + c for p, c in zip(prompt_ids, completion_ids)],
                                                  tokenizer.pad_token_id)
    mask = shared_prefix.left_pad(completion_ids, tokenizer.pad_token_id, width=length)[1]
    device = next(model.parameters()).device
    return next_token_distributions(model, input_ids.to(device), attention.to(device), mask.float().to(device))


def next_token_distributions(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                             completion_mask: torch.Tensor, head: nn.Module | None = None) -> NextTokenDistributions:
    """The next-token distributions of `model` at the completion positions of `input_ids` [B, T], whose last
    `completion_mask.shape[1]` columns are the completions (1 in the mask at a completion token). One forward, with
    the gradient where autograd is on; its output embeddings (`head`, default the model's own: pass the unwrapped
    model's when `model` is a DDP wrapper) project only the last position, which is compared with the model's own
    logits there to know whether projecting the hidden states gives the model's distribution."""
    length = completion_mask.shape[1]
    tokens = input_ids[:, -length:]
    head, captured = head or model.get_output_embeddings(), []

    def project_last_only(module, args):  # keep the hidden states; the head computes the last position alone
        if args:
            captured.append(args[0])
            return (args[0][:, -1:], *args[1:])

    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    hook = head.register_forward_pre_hook(project_last_only)
    try:  # position t predicts token t+1: the last `length` + 1 positions, less the very last
        last_logits = model(**inputs, logits_to_keep=length + 1).logits
    finally:
        hook.remove()
    with torch.no_grad():
        projects = len(captured) == 1 and torch.allclose(head(captured[0][:, -1:]).float(), last_logits.float(),
                                                         atol=1e-4)
    if projects:
        return NextTokenDistributions(captured[0][:, :-1], head, completion_mask, tokens, last_logits.shape[-1])
    logits = model(**inputs, logits_to_keep=length + 1).logits[:, :-1]  # the model's own, whole
    return NextTokenDistributions(logits, lambda x: x, completion_mask, tokens, logits.shape[-1])
