"""Claim 1, sample efficiency: FST reaches RL's best validation accuracy with fewer training samples.

FST, RL, GEPA and FST-distill runs share the data plan (same seed); validation accuracy is mean@samples with the run's
best prompt (FST-distill: its weights under the seed prompt), as a running max over evaluations. Per seed: the budget
RL needs to reach its own peak / the budget the other mode needs to reach it (stats.sample_efficiency), then mean and
spread over seeds, on three axes (common.AXES): training problems (the paper's), rollouts sampled (the fast phase's
included) and wall clock.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fastslow import stats
from fastslow.errors import FastSlowError
from fastslow.experiments.common import (AXES, Experiment, axis_curve, figure, fmt, labelled, markdown_table,
                                         plot_mean_curves, save, sharing_note, train_modes, write_results)

PAPER = "3.0× (CodeIO), 1.4× (Math/Polaris), 3.0× (HoVer-hard): samples RL needs to reach its peak ÷ samples FST needs."
DIGITS = {"samples": 0, "rollouts": 0, "seconds": 1}


def suffix(axis: str) -> str:
    """Summary keys name the paper's axis plainly (efficiency_vs_rl) and the others by suffix (..._rollouts)."""
    return "" if axis == "samples" else f"_{axis}"


def plateau_summary(trends: list[stats.Trend | None]) -> dict:
    measured = [t for t in trends if t is not None]
    return {"trend_last_third": stats.summarize([t.rise for t in measured]),
            "trend_per_seed": [None if t is None else {"rise": t.rise, "stderr": t.stderr} for t in trends],
            "rising_seeds": sum(t.rising for t in measured)}


def plateau_note(trends: list[stats.Trend | None]) -> str:
    """Whether RL had plateaued, from a line through its raw accuracy (a running peak also creeps up on noise)."""
    measured = [t for t in trends if t is not None]
    if not measured:
        return "Too few evaluations in that third to fit RL's trend there."
    per_seed = "; ".join("n/a" if t is None else f"{100 * t.rise:+.1f} ± {100 * t.stderr:.1f}" for t in trends)
    rising = sum(t.rising for t in measured)
    verdict = ("RL had plateaued: no seed's rise exceeds twice its standard error" if rising == 0 else
               f"RL was still rising in {rising} of {len(measured)} seeds (rise above twice its standard error): the "
               "other modes are measured against a peak RL would pass with more steps (raise loop.steps)")
    return (f"A line through its raw accuracy over that third rose {per_seed} points per seed (rise ± standard error "
            f"of the fit). {verdict}.")


def run(exp: Experiment) -> Path:
    modes = exp.settings.get("modes", ["fst", "rl", "gepa", "fst-distill"])
    if "rl" not in modes or len(modes) < 2:
        raise FastSlowError("experiment.modes: efficiency compares against RL: list 'rl' and at least one other mode")
    runs = train_modes(exp, modes)
    curves = {axis: {mode: [axis_curve(d, axis) for d in dirs] for mode, dirs in runs.items()} for axis in AXES}

    rows, axis_rows, summary, notes = [], [], {}, []
    rl_peaks = [float(np.max(y)) for _, y in curves["samples"]["rl"]]
    rl_rise = stats.summarize([stats.late_gain(x, y) for x, y in curves["samples"]["rl"]])
    rl_trends = [stats.late_trend(x, y) for x, y in curves["samples"]["rl"]]
    for mode in modes:
        accuracy = [y for _, y in curves["samples"][mode]]
        peak, start = stats.summarize([float(np.max(y)) for y in accuracy]), stats.summarize([float(y[0]) for y in accuracy])
        spent = {axis: stats.summarize([float(x[-1]) for x, _ in curves[axis][mode]]) for axis in AXES}
        rows.append([mode, fmt(start, 100), fmt(peak, 100), *(fmt(spent[axis], digits=DIGITS[axis]) for axis in AXES)])
        summary[mode] = {"start_accuracy": start, "peak_accuracy": peak, "rollouts": spent["rollouts"],
                         "seconds": spent["seconds"]}
        for axis in AXES:
            needed = stats.summarize([stats.samples_to_reach(x, y, target)
                                      for (x, y), target in zip(curves[axis][mode], rl_peaks)])
            ratios = ([stats.sample_efficiency(f, r) for f, r in zip(curves[axis][mode], curves[axis]["rl"])]
                      if mode != "rl" else [])
            ratio = stats.summarize(ratios) if mode != "rl" else None
            axis_rows.append([mode, AXES[axis], fmt(needed, digits=DIGITS[axis]),
                              "1 (reference)" if ratio is None else fmt(ratio, digits=2, unit="×")])
            summary[mode] |= {f"{axis}_to_rl_peak": needed, f"efficiency_vs_rl{suffix(axis)}": ratio,
                              f"efficiency_per_seed{suffix(axis)}": ratios}
        if mode != "rl":
            ratios = summary[mode]["efficiency_per_seed"]
            reached = sum(r is not None for r in ratios)
            at_start = sum(r is not None and math.isinf(r) for r in ratios)
            notes.append(f"{mode}: reached RL's peak in {reached} of {len(ratios)} seeds"
                         + (f" ({at_start} already at the first evaluation: ratio ∞, left out of the means)"
                            if at_start else ""))
    summary["rl"]["peak_gain_last_third"] = rl_rise
    summary["rl"] |= plateau_summary(rl_trends)
    notes.append(f"RL's running peak rose {fmt(rl_rise, 100)} points over the last third of its training problems. "
                 + plateau_note(rl_trends))
    notes.append(sharing_note(exp))

    body = [markdown_table(["mode", "val acc at step 0 (%)", "peak val acc (%)", *(f"{label} spent" for label in
                                                                                  AXES.values())], rows),
            "\n" + markdown_table(["mode", "axis", "budget to reach RL's peak",
                                   "efficiency vs RL (RL's budget to its peak ÷ the mode's)"], axis_rows),
            "Accuracies are mean ± std over seeds (min–max in brackets). Efficiency is per seed (each mode against the "
            "RL run of the same seed), then averaged; a seed where the mode never reached RL's peak is undefined and "
            "left out (counted). Rollouts count RL's fresh rollouts and the fast phase's (GEPA's scoring, re-scoring "
            "the population); wall clock counts from the step-0 evaluation, later evaluations included.\n"]

    plots = []
    for axis, label in AXES.items():
        fig, ax = figure(f"Validation accuracy vs {label}", label, "val accuracy, running max")
        plot_mean_curves(ax, curves[axis], transform=stats.running_max)
        plots.append(save(fig, exp.dir / f"efficiency_{axis}.png"))
    return write_results(exp, "Sample efficiency", "FST reaches RL's peak validation accuracy with fewer training "
                         "samples.", PAPER, body, plots, labelled(runs), summary, notes)
