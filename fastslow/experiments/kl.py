"""Claim 3, staying near the base model: at the same validation accuracy, FST's weights have drifted less
(token-level KL(π_train ‖ π_base) on held-out prompts) than RL's (same runs as `efficiency`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastslow import stats
from fastslow.experiments.common import (Experiment, figure, fmt, labelled, markdown_table, save, series,
                                         train_modes, write_results)

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
            "\nPer seed (level: KL FST vs KL RL):\n",
            *[f"- seed {row[0]}: " + ("; ".join(row[1:]) or "no common accuracy level") for row in per_seed], ""]

    fig, ax = figure("KL to the base model vs validation accuracy", "val accuracy", "KL(π_train ‖ π_base), nats/token")
    for i, mode in enumerate(MODES):
        for seed, (acc, kl) in enumerate(curves[mode]):
            ax.plot(acc, kl, marker="o", markersize=3, color=f"C{i}", alpha=0.7, label=mode if seed == 0 else None)
    ax.legend(fontsize=8, title="one line per seed, points in training order", title_fontsize=8)
    plots = [save(fig, exp.dir / "kl_vs_accuracy_by_mode.png")]
    summary = {"max_reduction": best, "mean_reduction": mean, "final_kl": final_kl, "final_accuracy": final_acc,
               "per_seed": [{"levels": m.levels, "kl_fst": m.kl_a, "kl_rl": m.kl_b} for m in matched]}
    return write_results(exp, "Staying near the base model", "At matched validation accuracy FST's KL to the base "
                         "model is lower than RL's.", PAPER, body, plots, labelled(runs), summary)
