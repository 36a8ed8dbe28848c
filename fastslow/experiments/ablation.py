"""The paper's ablations as commands: `k-sweep` (population size K in {1, 2, 4, 8}) and `t-sweep` (steps per cycle
T in {3, 6, 12}). FST runs at each value and an RL reference share the data plan per seed; per value: peak validation
accuracy, samples to reach RL's peak and the ratio (stats.sample_efficiency), the same ratio per rollout sampled and
per second of wall clock (common.AXES; a larger K or a shorter T costs the fast phase more rollouts), final KL to the base
model, and how many prompts each RL step sampled from: the population is the top K of GEPA's front, so when the front
holds fewer prompts than K, a larger K trains on the same population (and K = 4 and K = 8 can be the same run).

The paper (2nd-hand): K=8 is best and even K=1 beats RL; T=12 is worse than T=6 (prompts go stale).
"""

from __future__ import annotations

from operator import attrgetter
from pathlib import Path

import numpy as np

from fastslow import stats
from fastslow.experiments.common import (AXES, Experiment, axis_curve, figure, fmt, last_value, markdown_table,
                                         plot_mean_curves, save, sharing_note, write_results)

SWEEPS = {  # experiment -> (config key, label, the paper's reading)
    "k-sweep": ("loop.population_size", "K (prompts in the population)",
                "K ∈ {1, 2, 4, 8}: K=8 best, even K=1 beats RL (2nd-hand)."),
    "t-sweep": ("loop.steps_per_cycle", "T (RL steps per GEPA round)",
                "T ∈ {3, 6, 12}: T=12 worse than T=6, stale prompts (2nd-hand)."),
}


def prompts_per_step(run_dir: Path) -> list[int]:
    """How many population members each RL step of a run sampled from: its rows' `member_signal` keys, one per member
    whatever the engine (`member_entropy` is empty where the engine gives no entropies)."""
    from fastslow.report import load_run

    return [len(row["member_signal"]) for row in load_run(run_dir).measured("member_signal") if row["member_signal"]]


def run(exp: Experiment) -> Path:
    key, label, paper = SWEEPS[exp.name]
    values = list(exp.settings["values"])
    default = attrgetter(key)(exp.config("fst", 0))
    # the config's own value is plain FST: one run, shared with the other sweep and with efficiency (same name)
    configs = {f"{label.split()[0]}={v}": [exp.config("fst", s, None if v == default else f"{exp.name}-{v}", **{key: v})
                                           for s in range(exp.seeds)] for v in values}
    configs["rl"] = [exp.config("rl", s) for s in range(exp.seeds)]
    dirs = exp.train([c for arm in configs.values() for c in arm])
    runs = {arm: dirs[i * exp.seeds:(i + 1) * exp.seeds] for i, arm in enumerate(configs)}
    by_axis = {axis: {arm: [axis_curve(d, axis) for d in paths] for arm, paths in runs.items()} for axis in AXES}
    curves = by_axis["samples"]
    rl_peaks = [float(np.max(y)) for _, y in curves["rl"]]

    rows, summary = [], {}
    for arm, arm_curves in curves.items():
        peak = stats.summarize([float(np.max(y)) for _, y in arm_curves])
        needed = stats.summarize([stats.samples_to_reach(x, y, t) for (x, y), t in zip(arm_curves, rl_peaks)])
        ratio = None if arm == "rl" else stats.sample_efficiency_over_seeds(arm_curves, curves["rl"])
        kl = stats.summarize([last_value(d, "kl_base") for d in runs[arm]])
        others = {axis: None if arm == "rl" else stats.sample_efficiency_over_seeds(by_axis[axis][arm], by_axis[axis]["rl"])
                  for axis in ("rollouts", "seconds")}
        spent = {axis: stats.summarize([float(x[-1]) for x, _ in by_axis[axis][arm]]) for axis in ("rollouts", "seconds")}
        held = [prompts_per_step(d) for d in runs[arm]]
        prompts = stats.summarize([float(np.mean(h)) if h else None for h in held])
        most = max((max(h) for h in held if h), default=None)
        held_text = f"{fmt(prompts, digits=1)}; at most {most}" if most else "n/a"
        rows.append([arm, fmt(peak, 100), fmt(needed, digits=0),
                     *("1 (reference)" if r is None else fmt(r, digits=2, unit="×") for r in (ratio, *others.values())),
                     held_text, fmt(spent["rollouts"], digits=0), fmt(spent["seconds"], digits=1), fmt(kl, digits=3)])
        summary[arm] = {"peak_accuracy": peak, "samples_to_rl_peak": needed, "efficiency_vs_rl": ratio,
                        "efficiency_vs_rl_rollouts": others["rollouts"], "efficiency_vs_rl_seconds": others["seconds"],
                        "prompts_per_step": prompts, "prompts_at_most": most,
                        "rollouts": spent["rollouts"], "seconds": spent["seconds"], "final_kl": kl}
    body = [markdown_table([label, "peak val acc (%)", "samples to reach RL's peak", "efficiency vs RL: per problem",
                            "per rollout", "per second", "prompts per RL step", "rollouts sampled", "wall clock (s)",
                            "final KL to base (nats/token)"], rows),
            "Mean ± std over seeds (min–max); a seed that never reaches RL's peak is left out of the ratio (counted). "
            "Efficiency: RL's budget to reach its peak ÷ the arm's, per seed, on each axis. Prompts per RL step: the "
            "population members a step's rollouts were spread over, a run's mean over its steps; fewer than K when "
            "GEPA's front held fewer prompts.\n"]
    fig, ax = figure(f"Validation accuracy vs training samples, by {label.split()[0]}", "training samples",
                     "val accuracy, running max")
    plot_mean_curves(ax, curves, transform=stats.running_max)
    plots = [save(fig, exp.dir / f"{exp.name.replace('-', '_')}.png")]
    labels = {f"{arm} seed {s}": d for arm, paths in runs.items() for s, d in enumerate(paths)}
    return write_results(exp, f"Ablation: {label}", f"How FST depends on {label}.", paper, body, plots, labels, summary,
                         [sharing_note(exp)])
