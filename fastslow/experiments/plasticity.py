"""Claim 6, plasticity: weights trained with FST on task A can still learn a new task B. From the base, the
RL-trained and the FST-trained weights (on A), a fresh RL run on B with the same budget; compare accuracy on B."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastslow import stats
from fastslow.errors import FastSlowError
from fastslow.experiments.common import (Experiment, exported_model, figure, fmt, labelled, markdown_table,
                                         plot_mean_curves, save, series, train_modes, write_results)

PAPER = ("Final accuracy after 400 fresh RL steps on the new task, from base / RL / FST checkpoints: "
         "Math→HoVer-hard 20.2 / 0.0 / 16.7; Physics→HoVer-hard 18.3 / 19.9 / 24.2.")
STARTS = ("base", "rl", "fst")


def run(exp: Experiment) -> Path:
    task_b = exp.settings.get("task_b")
    if not isinstance(task_b, dict) or "name" not in task_b:
        raise FastSlowError("experiment.task_b: expected the new task as {name: ..., args: {...}}")
    phase_a = train_modes(exp, ["rl", "fst"])
    first = exp.config("rl", 0)
    steps_b = int(exp.settings.get("steps_b") or first.loop.steps)
    name_b = task_b["name"]

    configs = []
    for start in STARTS:
        for seed in range(exp.seeds):
            weights = first.model.path if start == "base" else str(exported_model(phase_a[start][seed]))
            configs.append(exp.config("rl", seed, tag=f"{name_b}-from-{start}", **{
                "task.name": name_b, "task.args": task_b.get("args") or {},
                "task.seed_prompt": task_b.get("seed_prompt"), "model.path": weights, "loop.steps": steps_b}))
    exp.say(f"phase B: fresh RL on {name_b} for {steps_b} steps from {', '.join(STARTS)} weights")
    dirs = exp.train(configs)
    phase_b = {start: dirs[i * exp.seeds:(i + 1) * exp.seeds] for i, start in enumerate(STARTS)}
    curves = {start: [series(d, "samples", "val_accuracy") for d in dirs] for start, dirs in phase_b.items()}

    gains = {start: [float(y[-1] - y[0]) for _, y in curves[start]] for start in STARTS}
    # seed s of every start trains on the same problems in the same order, so gains compare seed by seed
    paired = {start: stats.summarize([g - b for g, b in zip(gains[start], gains["base"])]) for start in ("rl", "fst")}
    fst_vs_rl = stats.summarize([f - r for f, r in zip(gains["fst"], gains["rl"])])
    rows, summary = [], {}
    for start in STARTS:
        first_acc = stats.summarize([float(y[0]) for _, y in curves[start]])
        final = stats.summarize([float(y[-1]) for _, y in curves[start]])
        peak = stats.summarize([float(np.max(y)) for _, y in curves[start]])
        gain = stats.summarize(gains[start])
        rows.append([f"{start} weights" + ("" if start == "base" else f" (trained on {first.task.name})"),
                     fmt(first_acc, 100), fmt(final, 100), fmt(peak, 100), fmt(gain, 100, unit=" points"),
                     "—" if start == "base" else fmt(paired[start], 100, unit=" points")])
        summary[start] = {"start": first_acc, "final": final, "peak": peak, "gain": gain,
                          **({} if start == "base" else {"gain_minus_base": paired[start]})}
    summary["fst_gain_minus_rl"] = fst_vs_rl
    body = [markdown_table([f"RL on {name_b} from", "val acc at step 0 (%)", f"final val acc after {steps_b} steps (%)",
                            "peak val acc (%)", "gain (final − step 0)", "gain − the base's (paired by seed)"], rows),
            f"\nFST's gain − RL's, paired by seed: {fmt(fst_vs_rl, 100, unit=' points')}.\n",
            f"\nPhase A: RL and FST on `{first.task.name}` ({first.loop.steps} steps each; a run is trained once and "
            f"shared with the other experiments whose runs have the same config). Phase B: RL with `{name_b}`'s seed "
            f"prompt, {steps_b} steps, same recipe. Mean ± std over seeds.\n"]
    fig, ax = figure(f"Fresh RL on {name_b}", "training samples on the new task", "val accuracy")
    plot_mean_curves(ax, {f"from {start}": c for start, c in curves.items()})
    plots = [save(fig, exp.dir / "plasticity.png")]
    runs = labelled(phase_a, prefix=f"{first.task.name}: ") | labelled(phase_b, prefix=f"{name_b} from ")
    return write_results(exp, "Plasticity", "Weights trained with FST stay able to learn a new task.", PAPER, body,
                         plots, runs, summary)
