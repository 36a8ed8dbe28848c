"""The Task protocol: what the loop needs to know about a problem family.

A task makes problems (deterministically from a seed) and scores a completion with a reward in [0, 1]
and a feedback text that tells a reflection LM what was expected and what went wrong.
The loop never looks inside a problem: it sends `problem.prompt` as the user message, under a system
prompt taken from the population, and hands the completion back to `task.score`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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
