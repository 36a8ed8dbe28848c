"""The Task protocol: what the loop needs to know about a problem family.

A task makes problems (deterministically from a seed) and scores a completion with a reward in [0, 1]
and a feedback text that tells a reflection LM what was expected and what went wrong.
The loop never looks inside a problem: it sends `problem.prompt` as the user message, under a system
prompt taken from the population, and hands the completion back to `task.score`.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from fastslow.errors import FastSlowError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Problem:
    id: str  # unique within a task and split; GEPA's Pareto front is kept per problem id
    prompt: str  # the user message
    answer: str  # the reference answer, as text (JSON for structured answers)
    info: dict[str, Any] = field(default_factory=dict)  # task-specific extras (gold documents, tests, ...)


@dataclass(frozen=True)
class Verdict:
    reward: float  # in [0, 1]
    feedback: str  # what was expected and what went wrong, for reflection


@runtime_checkable
class Task(Protocol):
    name: str
    seed_prompt: str  # the system prompt a run starts from when the config gives none

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        """`n` problems of `split` ("train", "val" or "test"), the same for the same seed."""
        ...

    def score(self, problem: Problem, completion: str) -> Verdict:
        """Reward in [0, 1] and feedback. Never raises on a bad completion: that is reward 0."""
        ...

    # Optional: `answer_of(completion) -> str`, the answer as the verifier reads it (fastslow.probe's answer entropy
    # compares these; without it, the final answer fastslow.tasks.answers extracts).


def split_of(prompt: str) -> str:
    """80/10/10 train/val/test by a hash of the prompt, so splits never overlap."""
    bucket = zlib.crc32(prompt.encode()) % 10
    return "train" if bucket < 8 else ("val" if bucket == 8 else "test")


def make_problems(name: str, split: str, n: int, seed: int, sample: Callable[[random.Random], Problem]) -> list[Problem]:
    """`n` distinct problems of `split` for a generated task; `sample(rng)` returns a Problem (its id is replaced).
    Deterministic from (name, split, seed); a problem belongs to the split its prompt hashes to (split_of)."""
    if split not in SPLITS:
        raise FastSlowError(f"split: expected one of {SPLITS}, got {split!r}")
    if n < 0:
        raise FastSlowError(f"n: expected a non-negative number of problems, got {n}")
    rng = random.Random(f"{name}/{split}/{seed}")
    problems, seen = [], set()
    for _ in range(200 * n + 1000):
        if len(problems) == n:
            break
        problem = sample(rng)
        if problem.prompt in seen or split_of(problem.prompt) != split:
            continue
        seen.add(problem.prompt)
        problems.append(Problem(f"{split}-{len(problems)}", problem.prompt, problem.answer, problem.info))
    if len(problems) < n:
        raise FastSlowError(f"n: {name} has fewer than {n} distinct {split} problems")
    return problems
