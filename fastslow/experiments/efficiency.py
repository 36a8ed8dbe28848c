"""Claim 1, sample efficiency: FST reaches RL's best validation accuracy with fewer training samples.

FST, RL and GEPA runs share the data plan (same seed); validation accuracy is mean@samples with the run's best
prompt, as a running max over evaluations. Per seed: samples RL needs to reach its own peak / samples the other
mode needs to reach it (stats.sample_efficiency), then mean and spread over seeds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fastslow import stats
from fastslow.errors import FastSlowError
from fastslow.experiments.common import (Experiment, figure, fmt, labelled, last_value, markdown_table,
                                         plot_mean_curves, save, series, train_modes, write_results)

PAPER = "3.0× (CodeIO), 1.4× (Math/Polaris), 3.0× (HoVer-hard): samples RL needs to reach its peak ÷ samples FST needs."


def rollout_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(RL + GEPA rollouts spent, val accuracy): the compute view, where FST pays for its prompt search."""
    from fastslow.report import load_run

    rows = load_run(run_dir).measured("val_accuracy")
    x = [(r.get("rl_rollouts") or 0) + (r.get("fast_rollouts") or 0) for r in rows]
    return np.array(x, dtype=float), np.array([r["val_accuracy"] for r in rows], dtype=float)


def run(exp: Experiment) -> Path:
    modes = exp.settings.get("modes", ["fst", "rl", "gepa"])
    if "rl" not in modes or len(modes) < 2:
        raise FastSlowError("experiment.modes: efficiency compares against RL: list 'rl' and at least one other mode")
    runs = train_modes(exp, modes)
    curves = {mode: [series(d, "samples", "val_accuracy") for d in dirs] for mode, dirs in runs.items()}

    rows, summary, notes = [], {}, []
    rl_peaks = [float(np.max(y)) for _, y in curves["rl"]]
    for mode in modes:
        peak = stats.summarize([float(np.max(y)) for _, y in curves[mode]])
        start = stats.summarize([float(y[0]) for _, y in curves[mode]])
        needed = stats.summarize([stats.samples_to_reach(x, y, target) for (x, y), target in zip(curves[mode], rl_peaks)])
        rollouts = stats.summarize([(last_value(d, "rl_rollouts") or 0) + (last_value(d, "fast_rollouts") or 0)
                                    for d in runs[mode]])
        ratio = (stats.sample_efficiency_over_seeds(curves[mode], curves["rl"]) if mode != "rl" else None)
        ratios = [stats.sample_efficiency(f, r) for f, r in zip(curves[mode], curves["rl"])] if mode != "rl" else []
        rows.append([mode, fmt(start, 100), fmt(peak, 100), fmt(needed, digits=0),
                     "1 (reference)" if ratio is None else fmt(ratio, digits=2, unit="×"), fmt(rollouts, digits=0)])
        summary[mode] = {"start_accuracy": start, "peak_accuracy": peak, "samples_to_rl_peak": needed,
                         "rollouts": rollouts, "efficiency_vs_rl": ratio, "efficiency_per_seed": ratios}
        if mode != "rl":
            reached = sum(r is not None for r in ratios)
            at_start = sum(r is not None and math.isinf(r) for r in ratios)
            notes.append(f"{mode}: reached RL's peak in {reached} of {len(ratios)} seeds"
                         + (f" ({at_start} already at the first evaluation: ratio ∞, left out of the mean)" if at_start else ""))

    table = markdown_table(
        ["mode", "val acc at step 0 (%)", "peak val acc (%)", "samples to reach RL's peak",
         "sample efficiency vs RL", "rollouts spent (RL + GEPA)"], rows)
    body = [table, "Accuracies are mean ± std over seeds (min–max in brackets). Sample efficiency is per seed "
            "(each mode against the RL run of the same seed), then averaged; a seed where the mode never reached "
            "RL's peak is undefined and left out (counted).\n"]

    fig, ax = figure("Validation accuracy vs training samples", "training samples", "val accuracy, running max")
    plot_mean_curves(ax, curves, transform=stats.running_max)
    plots = [save(fig, exp.dir / "efficiency_samples.png")]
    fig, ax = figure("Validation accuracy vs rollouts spent", "rollouts (RL + GEPA scoring)", "val accuracy, running max")
    plot_mean_curves(ax, {mode: [rollout_curve(d) for d in dirs] for mode, dirs in runs.items()},
                     transform=stats.running_max)
    plots.append(save(fig, exp.dir / "efficiency_rollouts.png"))
    return write_results(exp, "Sample efficiency", "FST reaches RL's peak validation accuracy with fewer training "
                         "samples.", PAPER, body, plots, labelled(runs), summary, notes)
