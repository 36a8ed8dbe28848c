"""Claim 4, both channels matter: validation accuracy of {base, FST-trained} weights × {seed, FST-evolved} prompt.
The trained weights are each FST run's final checkpoint (exported); the evolved prompt is its final best prompt.

The cells are measured at the end of the FST runs; what that end cost on each axis (common.AXES: training problems,
rollouts sampled, wall clock) is in the summary (`cost`) and the table below the cells."""

from __future__ import annotations

from pathlib import Path

from fastslow import stats
from fastslow.experiments.common import (AXES, Experiment, axis_curve, eval_job, exported_model, final_prompt, fmt,
                                         labelled, markdown_table, plot_bars, save, seed_prompt, sharing_note, train_modes,
                                         write_results)

PAPER = ("pass@1 base / prompt only / weights only / both: HoVer-hard 2.0 / 10.6 / 11.6 / 21.2, "
         "CodeIO 19.4 / 34.5 / 25.1 / 43.3.")
CELLS = (("base weights", "seed prompt"), ("base weights", "evolved prompt"),
         ("trained weights", "seed prompt"), ("trained weights", "evolved prompt"))


def run(exp: Experiment) -> Path:
    runs = train_modes(exp, ["fst"])["fst"]
    configs = [exp.config("fst", seed) for seed in range(exp.seeds)]
    prompts = [final_prompt(d) for d in runs]
    jobs = []
    for seed, (config, run_dir, evolved) in enumerate(zip(configs, runs, prompts)):
        # sampled like the run's step-0 (base) and last (trained) evaluations: the seed-prompt/base cell and the
        # evolved/trained cell reproduce the accuracies the run logged
        start = seed_prompt(config)
        jobs += [eval_job(config, f"base weights, seed {seed}", config.model.path, [start, evolved], step=0),
                 eval_job(config, f"trained weights, seed {seed}", exported_model(run_dir), [start, evolved])]
    results = exp.evaluate(jobs)
    # results[2 * seed] = base weights [seed prompt, evolved], results[2 * seed + 1] = trained weights [...]
    cells = {cell: [] for cell in CELLS}
    for seed in range(exp.seeds):
        for w, weights in enumerate(("base weights", "trained weights")):
            for p, prompt in enumerate(("seed prompt", "evolved prompt")):
                cells[(weights, prompt)].append(results[2 * seed + w][p])
    spreads = {cell: stats.summarize(values) for cell, values in cells.items()}
    gain = {name: stats.summarize([both - other for both, other in zip(cells[CELLS[3]], cells[cell])])
            for name, cell in (("over prompt only", CELLS[1]), ("over weights only", CELLS[2]))}

    cost = {axis: stats.summarize([float(axis_curve(d, axis)[0][-1]) for d in runs]) for axis in AXES}
    body = [markdown_table(["weights \\ prompt", "seed prompt", "evolved prompt"], [
                ["base", fmt(spreads[CELLS[0]], 100), fmt(spreads[CELLS[1]], 100)],
                ["FST-trained", fmt(spreads[CELLS[2]], 100), fmt(spreads[CELLS[3]], 100)]]),
            "\nValidation accuracy in % (mean@samples, the run's own val split and sampling), mean ± std over seeds. "
            f"Both channels together vs prompt only: {fmt(gain['over prompt only'], 100, unit=' points')}; "
            f"vs weights only: {fmt(gain['over weights only'], 100, unit=' points')} (paired by seed).\n",
            "\nWhat the FST runs had spent at the end, where the cells are measured:\n",
            markdown_table(list(AXES.values()), [[fmt(cost[axis], digits=1 if axis == "seconds" else 0) for axis in AXES]]),
            "\nEvolved prompts (final best, per seed):\n",
            *[f"- seed {seed}: `{prompt}`" for seed, prompt in enumerate(prompts)], ""]

    fig = plot_bars("Accuracy by weights × prompt", ["base weights", "FST-trained weights"],
                    {prompt: [cells[(weights, prompt)] for weights in ("base weights", "trained weights")]
                     for prompt in ("seed prompt", "evolved prompt")})
    plots = [save(fig, exp.dir / "decomposition.png")]
    summary = {" + ".join(cell): spreads[cell] for cell in CELLS} | {f"both {k}": v for k, v in gain.items()}
    summary["cost"] = cost
    summary["evolved_prompts"] = prompts
    return write_results(exp, "Both channels matter", "The trained weights and the evolved prompt each help, and "
                         "together they help most.", PAPER, body, plots, labelled({"fst": runs}), summary,
                         [sharing_note(exp)])
