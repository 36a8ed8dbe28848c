"""Presets: how big each experiment's runs are, and what an experiment runs on when no --config is given.

- `MICRO_BASE`: the default run config (the embedded micro model, reflecting on itself with the compact
  template it was trained on). A --config file replaces it.
- `SETTINGS`: per experiment, the task and the experiment's own choices (other task families, stages, ...).
  A config file's `experiment:` section overrides them, e.g. `experiment: {ood_tasks: [...]}`.
- `PRESETS`: dotted config overrides of loop, eval and GEPA sizes, applied on top of either base, and per experiment
  further overrides (`per_experiment`). Sized by time: `small` runs one experiment in <= 15 minutes on 2 CPU cores
  with the micro model, `full` all eight in one call of <= 10 minutes on a 16-core machine with one GPU.
"""

from __future__ import annotations

from typing import Any

from fastslow.errors import FastSlowError
from fastslow.probe import REGIME

# Micro model answers are short (<= ~20 characters); the reflection writes one instruction in a code fence, one token
# a character: "```\n" + up to ~100 characters of the suite's and WEAK's three-op instructions + "\n```". 96 tokens
# cut every such rewrite at 92 characters (issue 24); 160 is what `fastslow micro eval` measures reflection with.
MICRO_BASE: dict[str, Any] = {
    "model": {"path": "micro", "max_new_tokens": 24},
    "reflection": {"kind": "self", "template": "compact", "max_new_tokens": 160, "temperature": 0.7},
    # the whole batch (<= 128 rows) in one update pass: the micro model needs little memory, and micro-batches
    # would compute each system prompt prefix once per micro-batch
    "rl": {"learning_rate": 1e-4, "warmup_steps": 2, "micro_batch_rows": 128},
}

# Default tasks, chosen from what the micro model does BEFORE training (`python benchmarks/base_accuracy.py`:
# mean@4 at temperature 1 on 64 validation problems, and the share of problems whose 4 samples disagree, the
# only ones RL learns from; see docs/RESULTS.md), never from how FST and RL compare:
# - the paper's tasks start from a valid but weak seed prompt (2-34%) and RL has a reward signal from the first
#   step. For micro model v3 the weakest such micro task is a held-out string program under its own
#   instruction: program_seed 20, 33% with 11% of problems varied (the lowest of 40 held-out programs; the
#   model follows 33 of them at >= 90%). Star graphs do not qualify: under their instruction they are
#   solved (3 arms x 2 nodes: 100%), and arms longer than pretraining's score 0.
# - under the task-agnostic prompt every micro family scores ~0: that start is the zero-reward experiment's.
WEAK = {"name": "strings", "args": {"program_seed": 20},
        "seed_prompt": "Keep every other letter, then move the first 3 letters to the end, then swap each pair of "
                       "letters."}
AGNOSTIC = "Solve the task."

# The task suite (issue 13): the paper's regime, chosen by this rule from what the base model does before any
# training (`python benchmarks/task_suite.py` measures every candidate: mean@4 at temperature 1 on 64 validation
# problems, and the share of problems whose 4 samples differ in reward), never from how FST and RL compare. A
# candidate qualifies with accuracy in [2%, 34%] under its seed prompt and >= 10% of problems varied; each family
# keeps its `per_family` candidates with the most problems varied (RL's signal from the first step), then the first
# in candidate order. The suite needs `min_tasks` tasks from `min_families` families.
SUITE_RULE = {**REGIME, "per_family": 3, "min_tasks": 3, "min_families": 2}  # REGIME: fastslow probe's
# What the rule picks for micro model v3 (250 candidates, docs/logs/suite/task_suite_v3_2026-12-01_2core.md): three
# held-out string programs, each under its instruction with two neighbouring ops swapped. One family only, so v3
# does not meet the rule: no other family has a weak prompt under which its samples differ (issue 13's micro model v4).
SUITE_V3 = [
    {"name": "strings", "args": {"program_seed": 5},
     "seed_prompt": "Remove the vowels, then move the first 3 letters to the end, then reverse the letters."},
    {"name": "strings", "args": {"program_seed": 24},
     "seed_prompt": "Sort the letters, then keep every other letter, then move the first 3 letters to the end."},
    {"name": "strings", "args": {"program_seed": 38},
     "seed_prompt": "Remove the vowels, then swap each pair of letters, then move the first 2 letters to the end."},
]

SETTINGS: dict[str, dict[str, Any]] = {
    "efficiency": {"task": WEAK, "modes": ["fst", "rl", "gepa", "fst-distill"]},
    "asymptote": {"task": WEAK},
    "kl": {"task": WEAK},
    "decomposition": {"task": WEAK},
    # OOD families are measured with the prompt that states their task (micro problems say nothing by
    # themselves), the analogue of a benchmark's own instruction: never a GEPA prompt.
    "ood": {"task": WEAK, "ood_tasks": [
        {"name": "counting", "args": {"rule": "vowels"}, "prompt": "task.instruction"},
        {"name": "strings", "args": {"program": "sort,upper"}, "prompt": "task.instruction"},
        {"name": "strings", "args": {"program_seed": 0}, "prompt": "task.instruction"},  # held out, 99%
    ]},
    # B: another held-out string program under its instruction (58% for the base), so fresh RL has a signal
    "plasticity": {"task": WEAK, "task_b": {"name": "strings", "args": {"program_seed": 15},
                                             "seed_prompt": "Move the first 2 letters to the end, then reverse the "
                                                            "letters, then swap each pair of letters."}},
    "continual": {"stages": [
        {"name": "strings", "args": {"program_seed": 2}, "label": "strings"},
        {"name": "counting", "args": {"rule": "vowels"}, "label": "counting"},
        {"name": "stargraph", "args": {"degree": 2, "arm_length": 2}, "label": "stargraph"},
    ], "seed_prompt": AGNOSTIC},
    # the paper's ablations on efficiency's task; G=8 so that every K divides it
    "k-sweep": {"task": WEAK, "values": [1, 2, 4, 8], "overrides": {"loop.rollouts_per_problem": 8}},
    "t-sweep": {"task": WEAK, "values": [3, 6, 12]},
    # the task's own task-agnostic seed prompt scores 0 on star graphs (its instruction: 100%)
    "zero-reward": {"task": {"name": "stargraph", "args": {"degree": 3, "arm_length": 3}},
                    "modes": ["fst", "rl"]},
}


def select_suite(measured: list[dict[str, Any]], rule: dict[str, Any] = SUITE_RULE) -> tuple[list[dict], str | None]:
    """The suite SUITE_RULE picks from measured candidates ({"task": config, "accuracy", "problems_with_variance"},
    in candidate order), and None, or what the suite lacks."""
    low, high = rule["accuracy"]
    qualified = [(i, m) for i, m in enumerate(measured)
                 if low <= m["accuracy"] <= high and m["problems_with_variance"] >= rule["min_varied"]]
    by_family: dict[str, list[tuple[int, dict]]] = {}
    for i, m in sorted(qualified, key=lambda im: (-im[1]["problems_with_variance"], im[0])):
        family = by_family.setdefault(m["task"]["name"], [])
        if len(family) < rule["per_family"]:
            family.append((i, m))
    chosen = sorted((im for family in by_family.values() for im in family), key=lambda im: im[0])
    suite = [m["task"] for _, m in chosen]
    lacking = []
    if len(suite) < rule["min_tasks"]:
        lacking.append(f"{len(suite)} of {rule['min_tasks']} tasks")
    if len(by_family) < rule["min_families"]:
        lacking.append(f"{len(by_family)} of {rule['min_families']} families")
    return suite, "; ".join(lacking) or None


PRESETS: dict[str, dict[str, Any]] = {
    "small": {
        "overrides": {
            "loop.steps": 18, "loop.steps_per_cycle": 6, "loop.problems_per_step": 8,
            "loop.rollouts_per_problem": 4, "loop.population_size": 2,
            "task.train_size": 144, "task.val_size": 32,
            "gepa.budget_passes": 1.5, "eval.every": 3, "eval.samples": 2, "eval.kl_prompts": 16,
        },
        "per_experiment": {
            "continual": {"steps_per_stage": 6},
            "zero-reward": {"overrides": {"loop.steps": 24, "task.train_size": 192}},
            # phase A (6 runs) and B (9 fresh RL runs) in <= 15 min on 2 cores: 18 + 12 steps took 19.7 min,
            # 12 + 8 took 15.1, 12 + 6 took 13.0
            "plasticity": {"overrides": {"loop.steps": 12}, "steps_b": 6},
        },
    },
    "full": {  # all eight, 3 seeds, in one call of <= 10 minutes on a 16-core machine with one H100
        "overrides": {
            "loop.steps": 36, "loop.steps_per_cycle": 6, "loop.problems_per_step": 16,
            "loop.rollouts_per_problem": 8, "loop.population_size": 4,
            "task.train_size": 576, "task.val_size": 64,
            "gepa.budget_passes": 2.0, "eval.every": 6, "eval.samples": 4, "eval.kl_prompts": 32,
        },
        "per_experiment": {
            "continual": {"steps_per_stage": 12},
            "zero-reward": {"overrides": {"loop.steps": 48, "task.train_size": 768}},
            "plasticity": {"steps_b": 24},
        },
    },
}


def preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise FastSlowError(f"--preset: unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]


# what a config file's `experiment:` section may set (one file can serve every experiment)
SETTING_KEYS = {"overrides", "modes", "ood_tasks", "task_b", "steps_b", "stages", "steps_per_stage", "seed_prompt",
                "values"}


def experiment_settings(experiment: str, preset_name: str, from_config: dict[str, Any] | None) -> dict[str, Any]:
    """The experiment's settings: defaults, then the preset's, then the config file's `experiment:` section.
    `overrides` (dotted run-config keys) merge instead of replacing."""
    unknown = sorted(set(from_config or {}) - SETTING_KEYS)
    if unknown:
        raise FastSlowError(f"experiment: unknown setting(s) {', '.join(unknown)}; expected some of {sorted(SETTING_KEYS)}")
    if not isinstance((from_config or {}).get("overrides", {}), dict):
        raise FastSlowError("experiment.overrides: expected a mapping of dotted config keys, e.g. {loop.steps: 12}")
    settings = {**SETTINGS[experiment]}
    layers = [preset(preset_name)["per_experiment"].get(experiment, {}), from_config or {}]
    overrides = dict(preset(preset_name)["overrides"]) | settings.pop("overrides", {})  # the experiment's own last
    for layer in layers:
        overrides |= layer.get("overrides", {})
        settings |= {k: v for k, v in layer.items() if k != "overrides"}
    settings["overrides"] = overrides
    return settings
