"""Claim 3, staying near the base model: at the same validation accuracy, FST's weights have drifted less
(token-level KL(π_train ‖ π_base) on held-out prompts) than RL's (same runs as `efficiency`).

Matched accuracy needs no budget axis; at a matched budget (common.AXES: the largest number of training problems,
rollouts or seconds both runs of a seed reached) the table gives each run's KL and best accuracy so far there: FST
spends more rollouts and seconds per step, so at RL's final budget it has taken fewer steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastslow import stats
from fastslow.experiments.common import (AXES, Experiment, at_matched_budget, axis_curve, figure, fmt, labelled,
                                         markdown_table, save, series, sharing_note, train_modes, write_results)

PAPER = "Up to 70% less KL at matched validation reward (CodeIO, HoVer, Physics)."
MODES = ("fst", "rl")


def run(exp: Experiment) -> Path:
    runs = train_modes(exp, MODES)
    curves = {mode: [series(d, "val_accuracy", "kl_base") for d in dirs] for mode, dirs in runs.items()}
    matched = [stats.kl_at_matched_accuracy(f, r) for f, r in zip(curves["fst"], curves["rl"])]

    best = stats.summarize([m.max_reduction for m in matched])
    mean = stats.summarize([float(np.nanmean(m.reduction)) if np.isfinite(m.reduction).any() else None for m in matched])
    levels = stats.summarize([int(np.isfinite(m.reduction).sum()) for m in matched])
    final_kl = {mode: stats.summarize([float(kl[-1]) for _, kl in curves[mode]]) for mode in MODES}
    final_acc = {mode: stats.summarize([float(acc[-1]) for acc, _ in curves[mode]]) for mode in MODES}

    budget_rows, by_axis = [], {}
    for axis, label in AXES.items():
        kl_curves = {mode: [axis_curve(d, axis, "kl_base") for d in dirs] for mode, dirs in runs.items()}
        acc_curves = {mode: [axis_curve(d, axis) for d in dirs] for mode, dirs in runs.items()}
        kls = [at_matched_budget(f, r) for f, r in zip(kl_curves["fst"], kl_curves["rl"])]
        accs = [at_matched_budget(f, r, stats.running_max) for f, r in zip(acc_curves["fst"], acc_curves["rl"])]
        by_axis[axis] = {
            "budget": stats.summarize([b for b, _, _ in kls]),
            "kl_fst": stats.summarize([a for _, a, _ in kls]), "kl_rl": stats.summarize([b for _, _, b in kls]),
            "kl_reduction": stats.summarize([1 - a / b if b > 0 else None for _, a, b in kls]),
            "best_accuracy_fst": stats.summarize([a for _, a, _ in accs]),
            "best_accuracy_rl": stats.summarize([b for _, _, b in accs])}
        m = by_axis[axis]
        budget_rows.append([label, fmt(m["budget"], digits=1 if axis == "seconds" else 0),
                            f"{fmt(m['kl_fst'], digits=4)} vs {fmt(m['kl_rl'], digits=4)}", fmt(m["kl_reduction"], 100, unit="%"),
                            f"{fmt(m['best_accuracy_fst'], 100)} vs {fmt(m['best_accuracy_rl'], 100)}"])

    per_seed = [[seed, *(f"{level * 100:.1f}%: {a:.4f} vs {b:.4f}" for level, a, b in zip(m.levels, m.kl_a, m.kl_b)
                         if np.isfinite(a) and np.isfinite(b))] for seed, m in enumerate(matched)]
    body = [markdown_table(["", "FST", "RL"], [
                ["final val acc (%)", fmt(final_acc["fst"], 100), fmt(final_acc["rl"], 100)],
                ["final KL to base (nats/token)", fmt(final_kl["fst"], digits=4), fmt(final_kl["rl"], digits=4)]]),
            "\n" + markdown_table(["KL reduction 1 − KL(FST)/KL(RL) at matched val accuracy", "over seeds"], [
                ["largest over accuracy levels (the paper's \"up to\")", fmt(best, 100, unit="%")],
                ["mean over accuracy levels", fmt(mean, 100, unit="%")],
                ["accuracy levels both runs reach", fmt(levels, digits=0)]]),
            "\nLevels: 10 evenly spaced accuracies between the higher starting accuracy and the lower peak of the "
            "two runs of a seed; KL of each run when its running-max accuracy first reaches the level "
            "(stats.kl_at_matched_accuracy). Negative reduction: FST drifted more.\n",
            "\nAt a matched budget (per seed, the largest both runs reached on the axis):\n",
            markdown_table(["axis", "budget", "KL there, FST vs RL", "KL reduction 1 − KL(FST)/KL(RL)",
                            "best val acc so far (%), FST vs RL"], budget_rows),
            "\nPer seed (level: KL FST vs KL RL):\n",
            *[f"- seed {row[0]}: " + ("; ".join(row[1:]) or "no common accuracy level") for row in per_seed], ""]

    fig, ax = figure("KL to the base model vs validation accuracy", "val accuracy", "KL(π_train ‖ π_base), nats/token")
    for i, mode in enumerate(MODES):
        for seed, (acc, kl) in enumerate(curves[mode]):
            ax.plot(acc, kl, marker="o", markersize=3, color=f"C{i}", alpha=0.7, label=mode if seed == 0 else None)
    ax.legend(fontsize=8, title="one line per seed, points in training order", title_fontsize=8)
    plots = [save(fig, exp.dir / "kl_vs_accuracy_by_mode.png")]
    summary = {"max_reduction": best, "mean_reduction": mean, "final_kl": final_kl, "final_accuracy": final_acc,
               **{f"kl_reduction_at_matched_{axis}": m["kl_reduction"] for axis, m in by_axis.items()},
               "at_matched_budget": by_axis,
               "per_seed": [{"levels": m.levels, "kl_fst": m.kl_a, "kl_rl": m.kl_b} for m in matched]}
    return write_results(exp, "Staying near the base model", "At matched validation accuracy FST's KL to the base "
                         "model is lower than RL's.", PAPER, body, plots, labelled(runs), summary,
                         [sharing_note(exp)])
