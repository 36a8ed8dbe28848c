"""The data plan: which problems each RL step sees, fixed before training starts.

Because the plan is deterministic, the loop knows the next T batches ahead of time; their problems are the
cycle's anchor set, on which GEPA evolves the prompts that the slow phase will then use.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fastslow.errors import FastSlowError
from fastslow.tasks import Problem


@dataclass
class DataPlan:
    problems: list[Problem]
    problems_per_step: int
    steps_per_cycle: int
    seed: int = 0
    ordered: bool = False  # keep the task's order (a curriculum, e.g. continual learning) instead of shuffling

    def __post_init__(self) -> None:
        if len(self.problems) < self.problems_per_step:
            raise FastSlowError(
                f"task.train_size: {len(self.problems)} training problems cannot fill one step of "
                f"loop.problems_per_step={self.problems_per_step}"
            )
        ids = [p.id for p in self.problems]
        if len(set(ids)) != len(ids):
            raise FastSlowError("task: problem ids must be unique within the training split")

    def _epoch_order(self, epoch: int) -> list[Problem]:
        order = list(self.problems)
        if not self.ordered:
            random.Random(f"{self.seed}-{epoch}").shuffle(order)  # a fresh, reproducible order each epoch
        return order

    def batch(self, step: int) -> list[Problem]:
        """Problems of RL step `step` (1-based). Epochs reshuffle; a last partial chunk is dropped."""
        if step < 1:
            raise ValueError("steps are 1-based")
        per_epoch = len(self.problems) // self.problems_per_step
        epoch, index = divmod(step - 1, per_epoch)
        start = index * self.problems_per_step
        return self._epoch_order(epoch)[start : start + self.problems_per_step]

    def cycle_of(self, step: int) -> int:
        return (step - 1) // self.steps_per_cycle

    def cycle_steps(self, cycle: int, last_step: int) -> range:
        first = cycle * self.steps_per_cycle + 1
        return range(first, min(first + self.steps_per_cycle, last_step + 1))

    def anchor_set(self, cycle: int, last_step: int) -> list[Problem]:
        """Problems of the cycle's T batches, in plan order, each once."""
        seen: dict[str, Problem] = {}
        for step in self.cycle_steps(cycle, last_step):
            for problem in self.batch(step):
                seen.setdefault(problem.id, problem)
        return list(seen.values())
