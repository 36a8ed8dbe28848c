"""Claim 2, higher asymptote: the ScaleRL sigmoid R − R0 = (A − R0) / (1 + (C_mid / C)^B) fitted to each run's
validation accuracy over RL steps has a higher ceiling A for FST than for RL (same runs as `efficiency`).

On the other axes (common.AXES): the same fit over rollouts sampled and over wall clock (A is a ceiling, so it moves
only where a budget does not grow in step with the steps), and what the axes do change, which run is ahead at the
largest budget both reached: FST's best accuracy so far minus RL's, there."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastslow import stats
from fastslow.errors import FastSlowError
from fastslow.experiments.common import (AXES, Experiment, at_matched_budget, axis_curve, figure, fmt, labelled,
                                         markdown_table, save, series, sharing_note, train_modes, write_results)

PAPER = ("A (accuracy %): CodeIO 47.4 vs 43.0, Math 49.2 vs 46.4, HoVer-hard 25.0 vs 17.3 (FST vs RL): "
         "+2.9 to +7.7 points.")
MODES = ("fst", "rl")


def fit(steps: np.ndarray, accuracy: np.ndarray) -> stats.SigmoidFit | None:
    try:
        return stats.fit_sigmoid(steps, accuracy)
    except FastSlowError:  # too few points, or the fit did not converge: this seed has no A
        return None


def run(exp: Experiment) -> Path:
    runs = train_modes(exp, MODES)
    curves = {mode: [series(d, "step", "val_accuracy") for d in dirs] for mode, dirs in runs.items()}
    fits = {mode: [fit(*curve) for curve in curves[mode]] for mode in MODES}

    def a_values(mode):
        return [f.A if f else None for f in fits[mode]]

    rows, summary = [], {}
    for mode in MODES:
        A = stats.summarize(a_values(mode))
        final = stats.summarize([float(y[-1]) for _, y in curves[mode]])
        rows.append([mode, fmt(A, 100), fmt(final, 100), "; ".join(_fit_text(f) for f in fits[mode])])
        summary[mode] = {"A": A, "final_accuracy": final, "fits": [f.__dict__ if f else None for f in fits[mode]]}
    gap = stats.summarize([a - b if a is not None and b is not None else None
                           for a, b in zip(a_values("fst"), a_values("rl"))])
    summary["A_fst_minus_rl"] = gap
    axis_rows = []
    for axis, label in AXES.items():
        budget_curves = {mode: [axis_curve(d, axis) for d in dirs] for mode, dirs in runs.items()}
        if axis == "samples":  # the same fit as over steps, stretched: A is the steps fit's
            a_axis = {mode: a_values(mode) for mode in MODES}
        else:
            a_axis = {mode: [f.A if (f := fit(*c)) else None for c in budget_curves[mode]] for mode in MODES}
            for mode in MODES:
                summary[mode][f"A_{axis}"] = stats.summarize(a_axis[mode])
            summary[f"A_fst_minus_rl_{axis}"] = stats.summarize(
                [a - b if a is not None and b is not None else None for a, b in zip(a_axis["fst"], a_axis["rl"])])
        matched = [at_matched_budget(f, r, stats.running_max) for f, r in zip(budget_curves["fst"], budget_curves["rl"])]
        ahead = stats.summarize([a - b for _, a, b in matched])
        summary[f"best_fst_minus_rl_at_matched_{axis}"] = ahead
        axis_rows.append([label, fmt(summary[f"A_fst_minus_rl{'' if axis == 'samples' else '_' + axis}"], 100),
                          fmt(stats.summarize([b for b, _, _ in matched]), digits=0 if axis != "seconds" else 1),
                          fmt(ahead, 100)])
    body = [markdown_table(["mode", "fitted ceiling A (%)", "final val acc (%)", "per seed: A [95% fit interval]"],
                           rows),
            f"\n**A(FST) − A(RL), paired by seed:** {fmt(gap, 100, unit=' points')}; 95% t-interval over seeds "
            f"{_interval(gap)}.\n",
            "Each run's accuracy curve (raw, not running max) is fitted over RL steps with R0 held at its step-0 "
            "value and A ≤ 100%. The fit interval (from the fit's covariance, clipped to 0–100%) says how far to "
            "trust each A: a run that has not bent over yet gives a wide one, and A is then an extrapolation.\n",
            "\nBy axis (paired by seed): the ceiling fitted over that budget, and at the largest budget both runs of a "
            "seed reached, FST's best val accuracy so far minus RL's.\n",
            markdown_table(["axis", "A(FST) − A(RL) (points)", "largest budget both reached",
                            "best so far there, FST − RL (points)"], axis_rows)]

    fig, ax = figure("Sigmoid fits of validation accuracy", "RL step", "val accuracy")
    for i, mode in enumerate(MODES):
        for (x, y), f in zip(curves[mode], fits[mode]):
            ax.plot(x, y, "o", color=f"C{i}", markersize=3, alpha=0.5)
            if f:
                grid = np.linspace(0, x.max() * 1.5, 100)
                ax.plot(grid, f(grid), color=f"C{i}", alpha=0.7)
        ax.plot([], [], color=f"C{i}", label=mode)  # one legend entry per mode
    ax.legend(fontsize=8, title="points: measured · lines: fits, each seed", title_fontsize=8)
    plots = [save(fig, exp.dir / "asymptote_fits.png")]
    notes = [f"{mode}: the fit failed for {sum(f is None for f in fits[mode])} seed(s)" for mode in MODES
             if any(f is None for f in fits[mode])] + [sharing_note(exp)]
    return write_results(exp, "Higher asymptote", "FST's fitted ceiling A is higher than RL's.", PAPER, body, plots,
                         labelled(runs), summary, notes)


def _fit_text(f: stats.SigmoidFit | None) -> str:
    if f is None:
        return "fit failed"
    return f"{f.A * 100:.1f} [{max(f.A_low, 0) * 100:.0f}–{min(f.A_high, 1) * 100:.0f}]"


def _interval(spread: stats.Spread) -> str:
    if spread.n < 2:
        return "n/a (fewer than 2 seeds)"
    return f"[{spread.ci_low * 100:+.1f}, {spread.ci_high * 100:+.1f}] points"
