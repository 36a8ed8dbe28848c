"""A sequence of tasks for continual learning: one run sees stage 1's problems, then stage 2's, and so on.

The training split is laid out stage after stage in plan order (`ordered = True` tells the data plan not to
shuffle), so with `steps_per_stage` steps of `problems_per_step` problems each the task switches at steps
steps_per_stage, 2 * steps_per_stage, ... The validation split holds problems of every stage, each tagged
with info["group"] = the stage's label, so every evaluation measures all stages (forgetting shows).
Scoring is delegated to the stage's own task; problem ids are prefixed by the stage label.
"""

from __future__ import annotations

from typing import Any

from fastslow.errors import FastSlowError
from fastslow.tasks import Problem, Task, Verdict, load_task

AGNOSTIC_PROMPT = "Solve the task."  # says nothing about any stage: the run must learn each one


class SequenceTask:
    name = "sequence"
    ordered = True  # the data plan keeps the stage order

    def __init__(self, stages: list[dict[str, Any]], steps_per_stage: int, problems_per_step: int,
                 seed_prompt: str = AGNOSTIC_PROMPT):
        if not isinstance(stages, list) or len(stages) < 2:
            raise FastSlowError("task.args.stages: expected a list of at least two stages, each {name: ..., args: {...}}")
        if steps_per_stage < 1 or problems_per_step < 1:
            raise FastSlowError(f"task.args: steps_per_stage and problems_per_step must be >= 1, "
                                f"got {steps_per_stage} and {problems_per_step}")
        self.labels: list[str] = []
        self.tasks: dict[str, Task] = {}
        for i, stage in enumerate(stages):
            if not isinstance(stage, dict) or "name" not in stage or set(stage) - {"name", "args", "label"}:
                raise FastSlowError(f"task.args.stages[{i}]: expected {{name: ..., args: {{...}}, label: ...}} "
                                    f"(args and label optional), got {stage!r}")
            label = str(stage.get("label") or stage["name"])
            if label in self.tasks:
                raise FastSlowError(f"task.args.stages[{i}]: label {label!r} is used twice; give each stage a "
                                    "distinct 'label'")
            self.labels.append(label)
            self.tasks[label] = load_task(stage["name"], **(stage.get("args") or {}))
        self.steps_per_stage, self.problems_per_step = steps_per_stage, problems_per_step
        self.seed_prompt = seed_prompt

    @property
    def train_size(self) -> int:
        """Training problems the sequence needs: every stage fills its steps."""
        return len(self.labels) * self.steps_per_stage * self.problems_per_step

    @property
    def stage_boundaries(self) -> list[int]:
        """The last step of every stage but the final one (stats.normalise_stages takes these)."""
        return [self.steps_per_stage * (i + 1) for i in range(len(self.labels) - 1)]

    def _tagged(self, label: str, problems: list[Problem]) -> list[Problem]:
        return [Problem(f"{label}/{p.id}", p.prompt, p.answer, {**p.info, "group": label}) for p in problems]

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if split == "train":
            if n != self.train_size:
                raise FastSlowError(
                    f"task.train_size: the sequence task needs exactly {self.train_size} training problems "
                    f"({len(self.labels)} stages x {self.steps_per_stage} steps x {self.problems_per_step} problems), "
                    f"got {n}")
            per_stage = [self.steps_per_stage * self.problems_per_step] * len(self.labels)
        else:  # every stage, as evenly as n allows
            per_stage = [n // len(self.labels) + (i < n % len(self.labels)) for i in range(len(self.labels))]
        problems: list[Problem] = []
        for label, count in zip(self.labels, per_stage):
            problems += self._tagged(label, self.tasks[label].problems(split, count, seed))
        return problems

    def score(self, problem: Problem, completion: str) -> Verdict:
        label = problem.info.get("group")
        if label not in self.tasks:
            return Verdict(0.0, f"Unknown stage {label!r}.")  # never raise on scoring
        inner = Problem(problem.id.removeprefix(f"{label}/"), problem.prompt, problem.answer,
                        {k: v for k, v in problem.info.items() if k != "group"})
        return self.tasks[label].score(inner, completion)
