"""Claim 5, out-of-distribution: after training on one task, accuracy on OTHER task families — measured with
each family's own prompt, never a GEPA prompt — is about the same for FST's and RL's weights (and the base's)."""

from __future__ import annotations

from pathlib import Path

from fastslow import stats
from fastslow.errors import FastSlowError
from fastslow.experiments.common import (INSTRUCTION, SEED_PROMPT, Experiment, eval_job, exported_model, fmt, labelled,
                                         markdown_table, plot_bars, save, seed_prompt, train_modes, write_results)

PAPER = "FST ≈ RL on other benchmarks without the GEPA prompt (e.g. 49.7 vs 51.1, 36.5 vs 36.2)."
WEIGHTS = ("base", "rl", "fst")


def ood_tasks(exp: Experiment) -> list[dict]:
    tasks = exp.settings.get("ood_tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) and "name" in t for t in tasks):
        raise FastSlowError("experiment.ood_tasks: expected a list of {name: ..., args: {...}, prompt: ...} "
                            "(prompt: text, 'task.seed_prompt' or 'task.instruction'; default the seed prompt)")
    return tasks


def describe(task: dict) -> str:
    args = ", ".join(f"{k}={v}" for k, v in (task.get("args") or {}).items())
    return f"{task['name']}({args})"


def run(exp: Experiment) -> Path:
    tasks = ood_tasks(exp)
    runs = train_modes(exp, ["rl", "fst"])
    configs = [exp.config("rl", seed) for seed in range(exp.seeds)]
    prompts_by_task = [task.get("prompt", SEED_PROMPT) for task in tasks]
    in_distribution = {"name": configs[0].task.name, "args": configs[0].task.args}
    tasks = [in_distribution, *tasks]
    prompts_by_task.insert(0, seed_prompt(configs[0]))

    jobs, keys = [], []
    for seed, config in enumerate(configs):
        models = {"base": config.model.path, "rl": exported_model(runs["rl"][seed]),
                  "fst": exported_model(runs["fst"][seed])}
        for weights, model in models.items():
            for t, (task, prompt) in enumerate(zip(tasks, prompts_by_task)):
                task_spec = {"name": task["name"], "args": task.get("args") or {}}
                jobs.append(eval_job(config, f"{weights} weights on {describe(task)}, seed {seed}", model, [prompt],
                                     task=task_spec))
                keys.append((weights, t))
    results = exp.evaluate(jobs)
    values: dict[tuple[str, int], list[float]] = {}
    for key, result in zip(keys, results):
        values.setdefault(key, []).append(result[0])

    rows, summary = [], {}
    for t, task in enumerate(tasks):
        spreads = {w: stats.summarize(values[(w, t)]) for w in WEIGHTS}
        gap = stats.summarize([f - r for f, r in zip(values[("fst", t)], values[("rl", t)])])
        name = describe(task) + (" (training task)" if t == 0 else "")
        rows.append([name, _prompt_name(prompts_by_task[t]), *(fmt(spreads[w], 100) for w in WEIGHTS),
                     fmt(gap, 100, unit=" points")])
        summary[name] = {**spreads, "fst_minus_rl": gap}
    body = [markdown_table(["task", "prompt", "base weights (%)", "RL weights (%)", "FST weights (%)",
                            "FST − RL (paired by seed)"], rows),
            "\nValidation accuracy (mean@samples) of each run's final weights, mean ± std over seeds. The first row "
            "is the training task under its seed prompt (not the evolved one), for reference.\n"]
    fig = plot_bars("Accuracy on other task families", [describe(t) for t in tasks],
                    {w: [values[(w, t)] for t in range(len(tasks))] for w in WEIGHTS})
    plots = [save(fig, exp.dir / "ood.png")]
    return write_results(exp, "Out-of-distribution", "Training with FST costs no more general ability than RL: "
                         "accuracy on other tasks, without any GEPA prompt, stays about the same.", PAPER, body, plots,
                         labelled(runs), summary)


def _prompt_name(prompt: str) -> str:
    return {SEED_PROMPT: "its seed prompt", INSTRUCTION: "its instruction"}.get(prompt, f"`{prompt}`")
