"""Claim 7, continual learning: one run over a sequence of task families (fastslow.tasks.sequence), switching
every `steps_per_stage` steps, from a task-agnostic seed prompt. FST should get close to each stage's peak;
RL stalls on later stages. Accuracy on the current stage is normalised by a peak SHARED by the compared runs
(the best any run reached on that stage), so a run that stalls stays visibly below 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastslow import stats
from fastslow.errors import FastSlowError
from fastslow.experiments.common import (Experiment, figure, fmt, labelled, markdown_table, plot_mean_curves,
                                         save, series, train_modes, write_results)
from fastslow.report import load_run
from fastslow.tasks.sequence import AGNOSTIC_PROMPT

PAPER = ("One run, task switches every 200 steps (HoVer → CodeIO → Physics), task-agnostic seed prompt: FST "
         "reaches near-peak accuracy on each stage, RL stalls on the second task; FST keeps higher entropy "
         "(~0.45 vs ~0.15 nats).")
MODES = ("fst", "rl")
SEQUENCE_TASK = "fastslow.tasks.sequence:SequenceTask"


def stage_curves(run_dir: Path, labels: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Evaluated steps and, per stage, the validation accuracy on that stage's problems."""
    rows = load_run(run_dir).measured("val_accuracy_by_group")
    steps = np.array([r["step"] for r in rows], dtype=float)
    return steps, {label: np.array([r["val_accuracy_by_group"].get(label, np.nan) for r in rows]) for label in labels}


def current_stage(steps: np.ndarray, by_stage: dict[str, np.ndarray], boundaries: list[int]) -> np.ndarray:
    """Accuracy on the stage being trained at each evaluated step (a boundary step belongs to the stage it ends)."""
    which = np.searchsorted(np.asarray(boundaries, dtype=float), steps, side="left")
    table = np.array(list(by_stage.values()))
    return table[which, np.arange(len(steps))]


def run(exp: Experiment) -> Path:
    stages = exp.settings.get("stages")
    if not isinstance(stages, list) or len(stages) < 2:
        raise FastSlowError("experiment.stages: expected a list of at least two {name: ..., args: {...}} stages")
    first = exp.config("rl", 0)
    steps_per_stage = int(exp.settings.get("steps_per_stage") or first.loop.steps)
    if steps_per_stage % first.eval.every:
        raise FastSlowError(f"experiment.steps_per_stage: {steps_per_stage} must be a multiple of eval.every "
                            f"({first.eval.every}) so that every stage ends with an evaluation")
    args = {"stages": stages, "steps_per_stage": steps_per_stage, "problems_per_step": first.loop.problems_per_step,
            "seed_prompt": exp.settings.get("seed_prompt") or AGNOSTIC_PROMPT}
    from fastslow.tasks.sequence import SequenceTask

    sequence = SequenceTask(**args)
    runs = train_modes(exp, MODES, tag="continual", **{
        "task.name": SEQUENCE_TASK, "task.args": args, "task.seed_prompt": None,
        "task.train_size": sequence.train_size, "loop.steps": len(stages) * steps_per_stage})
    labels, bounds = sequence.labels, sequence.stage_boundaries

    measured = {mode: [stage_curves(d, labels) for d in dirs] for mode, dirs in runs.items()}
    current = {mode: [(steps, current_stage(steps, by_stage, bounds)) for steps, by_stage in measured[mode]]
               for mode in MODES}
    # the shared reference: the best accuracy ANY run reached on each stage while training on it
    peaks = np.nanmax([stats.stage_peaks(acc, bounds, steps) for mode in MODES for steps, acc in current[mode]], axis=0)
    normalised = {mode: [(steps, stats.normalise_stages(acc, bounds, steps, peaks)) for steps, acc in current[mode]]
                  for mode in MODES}

    ends = [*bounds, len(stages) * steps_per_stage]  # the last step of each stage
    rows, summary = [], {"shared_peaks": peaks}
    for s, label in enumerate(labels):
        cells = []
        for mode in MODES:
            at_end = stats.summarize([float(norm[steps == ends[s]][0]) if (steps == ends[s]).any() else None
                                      for steps, norm in normalised[mode]])
            final = stats.summarize([float(by_stage[label][-1]) for _, by_stage in measured[mode]])
            cells += [fmt(at_end, 100), fmt(final, 100)]
            summary.setdefault(mode, {})[label] = {"normalised_at_stage_end": at_end, "accuracy_at_run_end": final}
        rows.append([f"{s + 1}. {label} (steps {s * steps_per_stage + 1}–{ends[s]})", f"{peaks[s] * 100:.1f}", *cells])
    entropy = {mode: [series(d, "step", "entropy") for d in dirs] for mode, dirs in runs.items()}
    mean_entropy = {mode: stats.summarize([float(np.mean(y)) for _, y in entropy[mode] if len(y)]) for mode in MODES}
    summary["mean_entropy"] = mean_entropy
    body = [markdown_table(["stage", "shared peak (%)", "FST: normalised at stage end (%)", "FST: acc at run end (%)",
                            "RL: normalised at stage end (%)", "RL: acc at run end (%)"], rows),
            "\nNormalised: accuracy on the stage being trained ÷ the best accuracy any compared run reached on that "
            "stage during it (100% = the shared peak). 'acc at run end': the stage's accuracy after the whole "
            "sequence (forgetting shows here). Mean ± std over seeds.\n",
            f"\nMean policy entropy over the run (nats/token): FST {fmt(mean_entropy['fst'], digits=3)}, "
            f"RL {fmt(mean_entropy['rl'], digits=3)}.\n",
            f"\nSeed prompt: `{args['seed_prompt']}`; stages: "
            + " → ".join(f"`{st['name']}{st.get('args') or ''}`" for st in stages) + "\n"]

    plots = []
    fig, ax = figure("Current-stage accuracy, normalised to the shared stage peak", "RL step", "normalised accuracy")
    plot_mean_curves(ax, normalised)
    for b in bounds:
        ax.axvline(b, color="k", linestyle=":", alpha=0.5)
    plots.append(save(fig, exp.dir / "continual_normalised.png"))
    for label in labels:
        fig, ax = figure(f"Accuracy on stage '{label}' over the whole run", "RL step", "val accuracy")
        plot_mean_curves(ax, {mode: [(steps, by_stage[label]) for steps, by_stage in measured[mode]] for mode in MODES})
        for b in bounds:
            ax.axvline(b, color="k", linestyle=":", alpha=0.5)
        plots.append(save(fig, exp.dir / f"continual_stage_{label}.png"))
    fig, ax = figure("Policy entropy", "RL step", "entropy, nats/token")
    plot_mean_curves(ax, entropy)
    plots.append(save(fig, exp.dir / "continual_entropy.png"))
    return write_results(exp, "Continual learning", "Over a sequence of tasks FST keeps learning each new one; RL "
                         "stalls.", PAPER, body, plots, labelled(runs), summary)
