"""Held-out evaluation: the numbers the paper plots.

- val accuracy: the fraction of `samples` completions per validation problem that solve it (reward 1),
  averaged over problems (mean@4 by default), with the population's best prompt and with the seed prompt.
  For binary rewards this is the mean reward; tasks with partial credit still count only full solutions;
- KL(π_train ‖ π_base): on held-out prompts (the first `kl_prompts` validation problems under the best
  prompt), contexts are sampled from π_train; at every completion position we take the exact KL between
  the two next-token distributions, Σ_v p_train(v) (log p_train(v) − log p_base(v)), and average over
  tokens (nats per token). Exact per position, Monte Carlo only over contexts — no k1/k3 estimator noise;
- entropy: −Σ_v p_train(v) log p_train(v) on the same positions (nats per token).
Sampling runs under its own seed (fork_rng), so evaluating never changes the training trajectory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from fastslow.policy import Sampling, chat_messages, completion_distributions, sample
from fastslow.tasks import Problem, Task


SOLVED = 1.0 - 1e-9  # a reward this high counts as a solution
BaseWeights = Callable[[], AbstractContextManager]  # yields a module computing π_base


@dataclass
class EvalResult:
    val_accuracy: float
    val_accuracy_seed_prompt: float
    kl_base: float | None
    entropy: float | None
    val_accuracy_by_group: dict[str, float] | None = None  # problems with info["group"] (e.g. continual stages)


def accuracy(model, tokenizer, task: Task, problems: Sequence[Problem], prompt: str, samples: int,
             sampling: Sampling, engine=None) -> tuple[float, list[list[str]], list[float]]:
    """Fraction of `samples` completions per problem that solve it (reward 1), averaged over problems;
    the completions and the solved fraction per problem. `engine`: fastslow.engine (None: transformers on `model`)."""
    conversations = [chat_messages(prompt, p.prompt, sampling.prompt_placement) for p in problems for _ in range(samples)]
    completions = [c.text for c in sample(model, tokenizer, conversations, sampling, engine=engine)]
    grouped = [completions[i * samples : (i + 1) * samples] for i in range(len(problems))]
    per_problem = [sum(task.score(p, c).reward >= SOLVED for c in cs) / samples for p, cs in zip(problems, grouped)]
    return sum(per_problem) / max(len(per_problem), 1), grouped, per_problem


def by_group(problems: Sequence[Problem], per_problem: Sequence[float]) -> dict[str, float] | None:
    groups: dict[str, list[float]] = {}
    for problem, score in zip(problems, per_problem):
        if "group" in problem.info:
            groups.setdefault(str(problem.info["group"]), []).append(score)
    return {g: sum(v) / len(v) for g, v in groups.items()} or None


@torch.no_grad()
def kl_and_entropy(model, base: BaseWeights | None, tokenizer, conversations, completions, chat_template_kwargs=None,
                   batch_size: int = 8) -> tuple[float, float]:
    """Token-averaged exact KL(π_model ‖ π_base) and entropy of π_model over the completions' positions.
    `base` None: the weights are the base weights, KL is 0 by construction. The full distributions exist one chunk
    of positions at a time (fastslow.policy.NextTokenDistributions)."""
    kl_sum = entropy_sum = tokens = 0.0
    for start in range(0, len(conversations), batch_size):
        convs, comps = conversations[start : start + batch_size], completions[start : start + batch_size]
        train = completion_distributions(model, tokenizer, convs, comps, chat_template_kwargs)
        if base is not None:
            with base() as base_model:  # with LoRA: the same module, adapters disabled
                reference = completion_distributions(base_model, tokenizer, convs, comps, chat_template_kwargs)
        for positions in train.chunks():
            log_p, mask = train.log_probs(positions), train.mask[:, positions]
            p = log_p.exp()
            if base is not None:
                with base():  # its output embeddings too (LoRA may adapt them)
                    log_q = reference.log_probs(positions)
                kl_sum += ((p * (log_p - log_q)).sum(-1) * mask).sum().item()
            entropy_sum += ((-(p * log_p).sum(-1)) * mask).sum().item()
        tokens += train.mask.sum().item()
    return kl_sum / max(tokens, 1), entropy_sum / max(tokens, 1)


def evaluate(model, base: BaseWeights | None, tokenizer, task: Task, problems: Sequence[Problem], best_prompt: str,
             seed_prompt: str, *, samples: int, kl_prompts: int, sampling: Sampling, seed: int,
             engine=None) -> EvalResult:
    """`base` None means the weights are the base weights (gepa mode): KL is 0 by construction."""
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
        best_acc, best_completions, per_problem = accuracy(model, tokenizer, task, problems, best_prompt, samples,
                                                           sampling, engine)
        seed_acc = (
            best_acc if seed_prompt == best_prompt
            else accuracy(model, tokenizer, task, problems, seed_prompt, samples, sampling, engine)[0]
        )
        held_out = problems[:kl_prompts]
        conversations = [chat_messages(best_prompt, p.prompt, sampling.prompt_placement) for p in held_out]
        completions = [best_completions[i][0] for i in range(len(held_out))]
        kl, entropy = kl_and_entropy(model, base, tokenizer, conversations, completions, sampling.chat_template_kwargs)
    model.train(was_training)
    return EvalResult(best_acc, seed_acc, kl if held_out else None, entropy if held_out else None,
                      by_group(problems, per_problem))
