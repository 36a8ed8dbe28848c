"""Task registry: a config names a task; its module is imported only when used."""

from __future__ import annotations

import importlib
from typing import Any

from fastslow.errors import FastSlowError
from fastslow.tasks.base import SPLITS, Problem, Task, Verdict

# name -> "module:factory"; the factory takes the config's task.args as keyword arguments.
REGISTRY: dict[str, str] = {
    # micro world: string programs, a hidden substitution, star-graph paths, ...
    "strings": "fastslow.tasks.micro:StringProgramTask",
    "cipher": "fastslow.tasks.micro:CipherTask",
    "stargraph": "fastslow.tasks.micro:StarGraphTask",
    "counting": "fastslow.tasks.micro:CountingTask",
    "code": "fastslow.tasks.micro:CodeTask",
    # real text for small real LLMs (smollm2), generated offline
    "arithmetic": "fastslow.tasks.text:ArithmeticTask",
    "compare": "fastslow.tasks.text:CompareTask",
    "letters": "fastslow.tasks.text:LetterTask",
    "sentiment": "fastslow.tasks.text:SentimentTask",
    # real tasks
    "codeio": "fastslow.tasks.codeio:CodeIOTask",
    "math": "fastslow.tasks.math:MathTask",
    "hover": "fastslow.tasks.hover:HoverTask",
    "jsonl": "fastslow.tasks.jsonl:JsonlTask",
    # several tasks one after another (continual learning)
    "sequence": "fastslow.tasks.sequence:SequenceTask",
}


def load_task(name: str, **args: Any) -> Task:
    """Build the task registered as `name` (or given as "module:factory") with `args`."""
    target = REGISTRY.get(name, name if ":" in name else None)
    if target is None:
        raise FastSlowError(f"task.name: unknown task {name!r}; expected one of {sorted(REGISTRY)} or 'module:factory'")
    module_name, _, attr = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise FastSlowError(f"task.name: cannot import {target!r}: {exc}") from exc
    try:
        return factory(**args)
    except TypeError as exc:
        raise FastSlowError(f"task.args: {exc}") from exc


__all__ = ["SPLITS", "Problem", "Task", "Verdict", "REGISTRY", "load_task"]
