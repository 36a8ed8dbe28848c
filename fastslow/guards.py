"""Guards: everything that can refuse a run before its weights are loaded, and the size guards among them.

- preflight: every check a run makes before it loads weights, in the order it makes them (the task and its data,
  the data plan, the engine, the tokenizer and its chat template, the sizes below, the reflection LM). `fastslow run`
  and `fastslow check` both call it, so `check` says no wherever `run` would, before any weights;
- context: the longest row (system prompt + the longest problem, as the chat template renders them) plus
  `model.max_new_tokens` must fit in the model's context. Evolved prompts are held to the same room and to
  `reflection.max_new_tokens` tokens: a longer answer, or one with no instruction in it, is a failed reflection.
  A budget too small for the seed prompt in its answer's code fence is warned of: every rewrite of the seed's length
  would come back cut off mid-instruction, and GEPA would keep the stubs;
- rollouts: an RL step samples problems_per_step x G rows at once. Their KV cache alone, a lower bound on what
  the step needs, must fit in the machine's memory: refused only when it certainly cannot run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastslow import engine
from fastslow.config import Config
from fastslow.data import DataPlan
from fastslow.errors import FastSlowError
from fastslow.fast.records import extract_instruction
from fastslow.models import resolve_model_path
from fastslow.policy import chat_messages, load_tokenizer
from fastslow.tasks import Problem, Task, load_task

CHARS_PER_TOKEN = 16  # more than any tokenizer averages: a text longer than this many chars per token is refused untokenized
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
log = logging.getLogger(__name__)


def load_model_config(path: str, field: str = "model.path"):
    """The model's (text) config, read from config.json alone: no weights are loaded."""
    from transformers import AutoConfig

    resolved = resolve_model_path(path, field)
    try:
        return AutoConfig.from_pretrained(resolved).get_text_config()
    except (OSError, ValueError) as exc:
        raise FastSlowError(f"{field}: cannot read a model config from {path!r}: {' '.join(str(exc).split())}") from None


def context_length(model_config) -> int | None:
    """The longest sequence the model takes (prompt + completion), or None if its config does not say."""
    return next((value for key in CONTEXT_KEYS if isinstance(value := getattr(model_config, key, None), int)), None)


def check_model(config: Config) -> None:
    """The model paths can be read, and a completion leaves room for a prompt: from config.json alone, in a second."""
    model_config = load_model_config(config.model.path)
    context = context_length(model_config)
    if context is not None and config.model.max_new_tokens >= context:
        raise FastSlowError(f"model.max_new_tokens: {config.model.max_new_tokens} leaves no room for a prompt in "
                            f"the model's context of {context} tokens")
    if config.mode != "rl" and config.reflection.kind == "local":
        load_model_config(config.reflection.model, "reflection.model")


def load_problems(config: Config, task: Task) -> tuple[list[Problem], list[Problem]]:
    train = task.problems("train", config.task.train_size, config.seed)
    val = task.problems("val", config.task.val_size, config.seed)
    for split, problems in (("train", train), ("val", val)):
        if not problems:
            raise FastSlowError(f"task: the {split} split of {config.task.name!r} is empty")
    return train, val


@dataclass
class Preflight:
    """What a run's checks built on the way: the run goes on with these, `fastslow check` drops them."""

    task: Task
    train: list[Problem]
    val: list[Problem]
    seed_prompt: str
    plan: DataPlan
    tokenizer: Any
    prompt_room: PromptRoom
    reflection_lm: Callable[[str], str] | None  # the configured reflection LM, checked; None in rl mode


def preflight(config: Config, processes: int = 1, reflection: bool = True) -> Preflight:
    """Every check a run makes before it loads weights, in order; FastSlowError at the first that fails.
    `reflection` False: the caller brings its own reflection LM, so config.reflection is neither built nor checked."""
    check_model(config)
    task = load_task(config.task.name, **config.task.args)
    train, val = load_problems(config, task)
    seed_prompt = config.task.seed_prompt or task.seed_prompt
    plan = DataPlan(train, config.loop.problems_per_step, config.loop.steps_per_cycle, config.seed,
                    ordered=getattr(task, "ordered", False))
    engine.check(config)
    tokenizer = load_tokenizer(config.model.path)
    prompt_room = check_sizes(config, tokenizer, train + val, seed_prompt, processes)
    reflection_lm = None
    if reflection and config.mode != "rl":
        from fastslow.reflection import make_reflection_lm

        reflection_lm = make_reflection_lm(config.reflection, config.model.path)
        reflection_lm.check()
        short = prompt_room.short_answers(seed_prompt)
        if short:
            log.warning(short)
    return Preflight(task, train, val, seed_prompt, plan, tokenizer, prompt_room, reflection_lm)


def no_instruction(answer: str) -> str | None:
    """Why a reflection answer holds no new instruction (as GEPA extracts it), or None."""
    if not extract_instruction(answer):
        return "it holds no instruction (empty, or only a code fence)"
    return None


class PromptRoom:
    """How long a system prompt may be: the model's context less the longest problem and the completion."""

    def __init__(self, tokenizer, problems: Sequence[Problem], context: int | None, config: Config):
        self.tokenizer, self.context, self.config = tokenizer, context, config
        self.completion = config.model.max_new_tokens
        lengths = [len(ids) for ids in tokenizer([p.prompt for p in problems], add_special_tokens=False)["input_ids"]]
        self.longest = problems[max(range(len(problems)), key=lengths.__getitem__)]

    def tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def row_tokens(self, system_prompt: str | None) -> int:
        """Prompt tokens of the longest problem's row under `system_prompt`, as the chat template renders it."""
        model = self.config.model
        rendered = self.tokenizer.apply_chat_template(chat_messages(system_prompt, self.longest.prompt,
                                                                    model.prompt_placement),
                                                      tokenize=False, add_generation_prompt=True,
                                                      **model.chat_template_kwargs)
        return self.tokens(rendered)

    def overflow(self, system_prompt: str) -> str | None:
        """Why a row under `system_prompt` cannot fit in the context, or None."""
        if self.context is None:
            return None
        if len(system_prompt) > CHARS_PER_TOKEN * self.context:
            return f"it is {len(system_prompt)} characters, more than the model's context of {self.context} tokens holds"
        needed = self.row_tokens(system_prompt) + self.completion
        if needed > self.context:
            return (f"with the longest problem ({self.longest.id}) and model.max_new_tokens ({self.completion}) a row "
                    f"needs {needed} tokens, more than the model's context of {self.context}")
        return None

    def check_seed(self, seed_prompt: str) -> None:
        """Refuse a run whose seed prompt, or whose longest problem alone, does not fit in the context."""
        bare = self.overflow("")
        if bare:
            raise FastSlowError(f"model.max_new_tokens: even without a system prompt, {bare}; lower "
                                "model.max_new_tokens or leave out the longest problems")
        problem = self.overflow(seed_prompt)
        if problem:
            raise FastSlowError(f"task.seed_prompt: {problem}")

    def short_answers(self, seed_prompt: str) -> str | None:
        """Why reflection.max_new_tokens cuts off a rewrite of the seed prompt's length, or None. Reflection LMs answer
        inside a code fence (GEPA's template and the micro models' alike); a cut answer still yields an instruction,
        its first tokens, which GEPA scores and may keep. (The micro world's budget of 96 tokens cut every rewrite of
        the suite's 92-98-character string instructions at 92 characters, unseen, issue 24.)"""
        limit = self.config.reflection.max_new_tokens
        fenced = self.tokens(f"```\n{seed_prompt}\n```")
        if fenced <= limit:
            return None
        return (f"reflection.max_new_tokens ({limit}) is less than the seed prompt in its answer's code fence ({fenced} "
                f"tokens with the policy's tokenizer): every rewrite of the seed's length will be cut off "
                f"mid-instruction; raise it (e.g. to {2 * fenced})")

    def refusal(self, answer: str) -> str | None:
        """Why a reflection answer cannot become a prompt (too long, no instruction, does not fit), or None."""
        limit = self.config.reflection.max_new_tokens
        if len(answer) > CHARS_PER_TOKEN * limit:
            return f"it is {len(answer)} characters, longer than reflection.max_new_tokens ({limit}) allows"
        empty = no_instruction(answer)
        if empty:
            return empty
        instruction = extract_instruction(answer)
        if self.tokens(instruction) > limit:
            return f"its instruction is {self.tokens(instruction)} tokens, more than reflection.max_new_tokens ({limit})"
        return self.overflow(instruction)


def check_sizes(config: Config, tokenizer, problems: Sequence[Problem], seed_prompt: str, processes: int = 1) -> PromptRoom:
    """Every size guard of a run, before its model is loaded; returns the room evolved prompts must fit in."""
    model_config = load_model_config(config.model.path)
    room = PromptRoom(tokenizer, problems, context_length(model_config), config)
    room.check_seed(seed_prompt)
    check_rollout_memory(config, model_config, room.row_tokens(seed_prompt), processes)
    return room


def check_rollout_memory(config: Config, model_config, prompt_tokens: int, processes: int = 1,
                         memory: tuple[int, str] | None = None) -> None:
    """Refuse an RL step whose rollouts' KV cache alone exceeds the machine's memory ((bytes, what) of `memory`;
    default: the GPU's or the host's total)."""
    if config.mode == "gepa":
        return
    layers = getattr(model_config, "num_hidden_layers", None)
    heads = getattr(model_config, "num_attention_heads", None)
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    head_dim = getattr(model_config, "head_dim", None) or (
        model_config.hidden_size // heads if heads and getattr(model_config, "hidden_size", None) else None)
    if not (layers and kv_heads and head_dim):
        return  # an architecture we cannot size: no estimate, no refusal
    dtype = config.model.dtype if config.model.dtype != "auto" else str(getattr(model_config, "dtype", "")).removeprefix("torch.")
    per_token = 2 * layers * kv_heads * head_dim * DTYPE_BYTES.get(dtype, 2)
    loop = config.loop
    rows = loop.problems_per_step * loop.rollouts_per_problem // processes
    tokens = prompt_tokens + config.model.max_new_tokens
    needed = rows * tokens * per_token
    available, where = memory or machine_memory()
    if needed > available:
        raise FastSlowError(
            f"loop.rollouts_per_problem: {loop.problems_per_step} problems x {loop.rollouts_per_problem} rollouts = "
            f"{rows} rows per step{' per process' if processes > 1 else ''} need at least {_bytes(needed)} for their "
            f"KV cache alone ({tokens} tokens x {_bytes(per_token)} per token), more than the {_bytes(available)} of "
            f"{where}; lower loop.rollouts_per_problem or loop.problems_per_step")


def machine_memory() -> tuple[int, str]:
    """(bytes, description) of the memory rollouts are sampled in: the GPU's, else the host's."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory, "GPU memory"
    import psutil

    return psutil.virtual_memory().total, "host memory"


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
