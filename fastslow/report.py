"""`fastslow report`: one self-contained HTML page (plus PNG plots) comparing run directories.

Reads the run directory format of docs/RUNDIR.md (config.yaml, metrics.jsonl, population/cycle-*.json).
A null in metrics.jsonl means "not measured at that step": such points are left out of a plot, never drawn as 0.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure  # a bare Figure renders with Agg: no pyplot, no global backend

from fastslow import stats
from fastslow.errors import FastSlowError

PHASES = ("generate", "score", "reflect", "update")


# ---------------------------------------------------------------- reading run directories


@dataclass
class Run:
    path: Path
    name: str
    mode: str
    config: dict[str, Any]
    rows: list[dict[str, Any]]  # metrics.jsonl, in step order
    populations: list[dict[str, Any]] = field(default_factory=list)  # population/cycle-*.json, by cycle
    label: str = ""

    def measured(self, *keys: str) -> list[dict[str, Any]]:
        """The rows where every one of `keys` was measured (not null)."""
        return [row for row in self.rows if all(row.get(key) is not None for key in keys)]

    def series(self, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) over the rows where both were measured."""
        rows = self.measured(x_key, y_key)
        return np.array([r[x_key] for r in rows], dtype=float), np.array([r[y_key] for r in rows], dtype=float)

    def last(self, key: str) -> Any:
        """The last measured value of a metric (None if never measured)."""
        return next((row[key] for row in reversed(self.rows) if row.get(key) is not None), None)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FastSlowError(f"{path}: not readable as JSON ({exc})") from None


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):  # a run still writing may leave a partial last line
                break
            raise FastSlowError(f"{path}: line {number} is not valid JSON ({exc})") from None
    return sorted(rows, key=lambda row: row.get("step") or 0)


def load_run(run_dir: str | Path) -> Run:
    """Read one run directory; FastSlowError if it is not one (no metrics.jsonl)."""
    path = Path(run_dir)
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise FastSlowError(f"{path}: not a run directory (missing {metrics.name})")
    config: dict[str, Any] = {}
    if (path / "config.yaml").is_file():
        try:
            config = yaml.safe_load((path / "config.yaml").read_text()) or {}
        except yaml.YAMLError as exc:
            raise FastSlowError(f"{path / 'config.yaml'}: not valid YAML ({exc})") from None
    rows = _read_metrics(metrics)

    def cycle_number(file: Path) -> int:
        match = re.fullmatch(r"cycle-(\d+)\.json", file.name)
        return int(match.group(1)) if match else -1

    population_files = sorted((f for f in path.glob("population/cycle-*.json") if cycle_number(f) >= 0),
                              key=cycle_number)
    mode = config.get("mode") or (rows[0].get("mode") if rows else None) or "?"
    return Run(path, str(config.get("name") or path.name), str(mode), config, rows,
               [_read_json(f) for f in population_files])


def _label(name: str, mode: str) -> str:
    """"name (mode)", or the name alone where it already says the mode ("fst", "demo-fst", "efficiency_rl_s0")."""
    return name if mode in re.split(r"[-_./ ]", name) else f"{name} ({mode})"


def load_runs(run_dirs: Sequence[str | Path]) -> list[Run]:
    """Read run directories and label each "name (mode)" (the mode once); runs sharing a label get their path added."""
    if not run_dirs:
        raise FastSlowError("report: expected at least one run directory")
    runs = [load_run(d) for d in run_dirs]
    for run in runs:
        run.label = _label(run.name, run.mode)
    labels = [run.label for run in runs]
    for run in runs:
        if labels.count(run.label) > 1:
            run.label = f"{run.label} {run.path}"
    return runs


# ---------------------------------------------------------------- summary tables


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _summary_rows(runs: Sequence[Run]) -> list[dict[str, str]]:
    table = []
    for run in runs:
        _, accuracy = run.series("step", "val_accuracy")
        clock = elapsed(run)
        wall = max(clock.values()) if clock else None
        table.append({
            "run": run.label,
            "steps": _fmt(run.last("step")),
            "samples": _fmt(run.last("samples")),
            "RL / fast rollouts": f"{_fmt(run.last('rl_rollouts'))} / {_fmt(run.last('fast_rollouts'))}",
            "final val acc": _fmt(float(accuracy[-1]) if len(accuracy) else None),
            "peak val acc": _fmt(float(accuracy.max()) if len(accuracy) else None),
            "final KL to base": _fmt(run.last("kl_base"), 4),
            "final entropy": _fmt(run.last("entropy")),
            "wall time": "—" if wall is None else f"{wall / 60:.1f} min",
        })
    return table


def _comparison_rows(runs: Sequence[Run]) -> list[dict[str, str]]:
    """Each non-RL run against each RL run of the same task: the paper's sample efficiency and KL claims, and what
    happened in words (the numbers alone are zeros and dashes where one side never reaches the other's level)."""
    table = []
    rl_runs = [run for run in runs if run.mode == "rl"]
    for run in runs:
        for rl in rl_runs:
            if run.mode == "rl" or _task(run) != _task(rl):
                continue
            curve, rl_curve = run.series("samples", "val_accuracy"), rl.series("samples", "val_accuracy")
            if not len(curve[0]) or not len(rl_curve[0]):
                continue
            rl_peak = float(rl_curve[1].max())
            rl_rose = rl_peak > rl_curve[1][0]  # else RL's peak is its start: "samples to reach it" means nothing
            ratio = stats.sample_efficiency(curve, rl_curve)
            kl, rl_kl = _kl_curve(run), _kl_curve(rl)
            matched = stats.kl_at_matched_accuracy(kl, rl_kl) if len(kl[0]) and len(rl_kl[0]) else None
            table.append({
                "run": run.label,
                "vs RL run": rl.label,
                "RL peak val acc": _fmt(rl_peak),
                "samples RL needs": _fmt(stats.samples_to_reach(*rl_curve, rl_peak) if rl_rose else None, 0),
                "samples this run needs": _fmt(stats.samples_to_reach(*curve, rl_peak) if rl_rose else None, 0),
                "sample efficiency": "—" if ratio is None else "∞" if math.isinf(ratio) else f"{ratio:.2f}×",
                "max KL reduction at matched acc": "—" if matched is None or math.isnan(matched.max_reduction)
                else f"{matched.max_reduction:.0%}",
                "in words": comparison_in_words(curve, rl_curve),
            })
    return table


def comparison_in_words(curve: tuple[np.ndarray, np.ndarray], rl_curve: tuple[np.ndarray, np.ndarray]) -> str:
    """One sentence on how a run's (samples, val_accuracy) curve compares with an RL run's, which says what happened
    also where a side never reaches the level that sample efficiency is measured at (RL's peak)."""
    def samples(value: float | None) -> str:
        return f"{value:,.0f} samples"

    def peak_of(x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        peak = float(y.max())
        return peak, stats.samples_to_reach(x, y, peak)

    (x, y), (rl_x, rl_y) = curve, rl_curve
    rl_peak, rl_at = peak_of(rl_x, rl_y)
    if rl_peak <= rl_y[0]:
        peak, at = peak_of(x, y)
        rl_part = f"RL never rose above its start ({rl_y[0]:.3f}) in {samples(rl_x[-1])}"
        if peak <= y[0]:
            return f"Neither run improved: {rl_part}, this run stayed at {y[0]:.3f} in {samples(x[-1])}."
        return f"{rl_part}; this run reached {peak:.3f} at {samples(at)}."
    at = stats.samples_to_reach(x, y, rl_peak)
    if at is None:
        return (f"This run never reached RL's peak {rl_peak:.3f} in {samples(x[-1])} (its best {y.max():.3f}); "
                f"RL reached it at {samples(rl_at)}.")
    if at <= x[0]:
        return f"This run was at RL's peak {rl_peak:.3f} from its first evaluation; RL needed {samples(rl_at)}."
    return f"This run reached RL's peak {rl_peak:.3f} at {samples(at)}, RL at {samples(rl_at)}."


def _task(run: Run) -> Any:
    return (run.config.get("task") or {}).get("name")


def _kl_curve(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """(val_accuracy, kl_base) at the checkpoints where both were measured, in training order."""
    return run.series("val_accuracy", "kl_base")


def _markdown(table: list[dict[str, str]]) -> str:
    if not table:
        return ""
    header = list(table[0])
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(row[key]) for key in header) + " |" for row in table]
    return "\n".join(lines) + "\n"


def _html_table(table: list[dict[str, str]]) -> str:
    header = "".join(f"<th>{html.escape(key)}</th>" for key in table[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row.values()) + "</tr>" for row in table)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def summary_table(run_dirs: Sequence[str | Path]) -> str:
    """Markdown: per run the final and peak validation accuracy, samples, rollouts, KL, entropy, wall time;
    then, if there are RL runs, each other run's sample efficiency and KL reduction against them; then per run the
    seconds per RL step split into slow / fast / waiting / eval / checkpoint."""
    runs = load_runs(run_dirs)
    text = _markdown(_summary_rows(runs))
    comparisons, times = _comparison_rows(runs), _time_rows(runs)
    return text + "".join("\n" + _markdown(table) for table in (comparisons, times) if table)


# ---------------------------------------------------------------- where a step's time goes


TIME_PARTS = ("slow", "fast", "waiting", "eval", "checkpoint")


def step_times(run: Run) -> list[dict[str, Any]]:
    """Per RL step, the wall clock since the previous metrics row (`total`) split into `slow` (the RL step itself),
    `fast` (the fast phase run by the trainer: re-scoring, GEPA, reflection; on a cycle's first step), `waiting` (for
    a fast phase running beside the slow one), `eval` (evaluation on that step) and `checkpoint` (the cycle boundary
    before a cycle's first step: a checkpoint, or the weights saved for an overlap worker); the parts sum to `total`.
    `checkpoint` is None (left in `slow`) for a run that never recorded `seconds_checkpoint`.

    A run that recorded `fast_phase_s`, `fast_phase_wait_s` or `seconds_eval` anywhere (docs/RUNDIR.md; null counts 0)
    is split as measured. Older runs are estimated (`measured` False):
    their fast phase's seconds were added to the cycle's first step's `seconds_generate`, `seconds_score` and
    `seconds_reflect`, so `fast` is that step's reflection plus what its generation and scoring took beyond the
    median of the run's other steps (0 in rl mode); `waiting` is 0 and `eval` unknown (None), left in `slow`.
    Runs resumed before a8f3850 restarted their clock at 0: a row whose `wall_time` is below the last one counts
    from 0."""
    timed = [row for row in run.rows if row.get("wall_time") is not None]
    first_steps, seen = set(), set()
    for row in timed:
        if row.get("step") and row.get("cycle") not in seen:
            seen.add(row.get("cycle"))
            first_steps.add(row["step"])

    def rollout_seconds(row: dict[str, Any]) -> float:
        return (row.get("seconds_generate") or 0.0) + (row.get("seconds_score") or 0.0)

    others = [rollout_seconds(row) for row in timed if row.get("step") and row["step"] not in first_steps]
    typical = float(np.median(others)) if others else 0.0
    measured = any(row.get(key) is not None for row in timed for key in ("fast_phase_s", "fast_phase_wait_s",
                                                                          "seconds_eval"))
    checkpointed = any(row.get("seconds_checkpoint") is not None for row in timed)
    steps, previous = [], None
    for row in timed:
        wall = float(row["wall_time"])
        if previous is None or not row.get("step"):  # step 0: the first evaluation, before any step
            previous = wall
            continue
        total, previous = (wall - previous if wall >= previous else wall), wall
        if measured:
            fast, waiting = row.get("fast_phase_s") or 0.0, row.get("fast_phase_wait_s") or 0.0
            evaluation = row.get("seconds_eval") or 0.0
        else:
            fast = 0.0
            if row["step"] in first_steps and run.mode != "rl":
                fast = (row.get("seconds_reflect") or 0.0) + max(0.0, rollout_seconds(row) - typical)
            fast, waiting, evaluation = min(fast, total), 0.0, None
        checkpoint = (row.get("seconds_checkpoint") or 0.0) if checkpointed else None
        slow = total - fast - waiting - (evaluation or 0.0) - (checkpoint or 0.0)
        steps.append({"step": row["step"], "total": total, "slow": slow, "fast": fast, "waiting": waiting,
                      "eval": evaluation, "checkpoint": checkpoint, "measured": measured})
    return steps


def elapsed(run: Run) -> dict[int, float]:
    """Step -> wall-clock seconds since the run started (step 0: its first evaluation), resumptions added up."""
    rows = [row for row in run.rows if row.get("wall_time") is not None]
    if not rows:
        return {}
    now = float(rows[0]["wall_time"])
    clock = {rows[0].get("step") or 0: now}
    for step in step_times(run):
        now += step["total"]
        clock[step["step"]] = now
    return clock


def _time_rows(runs: Sequence[Run]) -> list[dict[str, str]]:
    """Per run: mean seconds per RL step and its split into slow / fast / waiting / eval / checkpoint."""
    table = []
    for run in runs:
        times = step_times(run)
        if not times:
            continue
        n = len(times)
        total = sum(t["total"] for t in times)

        def part(name: str) -> str:
            values = [t[name] for t in times]
            if any(v is None for v in values):
                return "— (in slow)"
            seconds = sum(values)
            return f"{seconds / n:.2f} s ({seconds / total:.0%})" if total > 0 else f"{seconds / n:.2f} s"

        table.append({"run": run.label, "steps": str(n), "seconds per step": f"{total / n:.2f}",
                      **{name: part(name) for name in TIME_PARTS},
                      "split": "measured" if all(t["measured"] for t in times)
                      else "estimated (a run from before fast_phase_s)"})
    return table


# ---------------------------------------------------------------- plots


MARKERS = "osD^vP*X"


def figure(title: str, xlabel: str, ylabel: str, height: float = 4.6) -> tuple[Figure, Any]:
    fig = Figure(figsize=(7, height), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def legend(fig: Figure, ax: Any, title: str | None = None) -> None:
    """The legend below the plot, outside the axes, so it never hides data."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3) or 1, fontsize=8,
               title=title, title_fontsize=8)


def _color(index: int) -> str:
    return f"C{index % 10}"


def _style(index: int, count: int) -> dict[str, Any]:
    """Run `index` of `count`: its colour and marker, and a line the wider the earlier the run, so that a run whose
    line lies exactly on an earlier one's (both at 0, say) shows as a thin line inside a wide one."""
    wide = (count - 1 - index) / max(count - 1, 1)
    return {"color": _color(index), "marker": MARKERS[index % len(MARKERS)], "linewidth": 1.5 + 2.5 * wide,
            "markersize": 3 + 3 * wide}


def _smooth(y: np.ndarray) -> tuple[np.ndarray, int]:
    """Trailing moving average over ~5% of the points (and the window), so noisy per-step rewards show a trend."""
    window = max(1, len(y) // 20)
    return np.convolve(y, np.ones(window) / window, mode="valid"), window


def plot_accuracy(runs: Sequence[Run], key: str = "val_accuracy", title: str = "Validation accuracy",
                  against: str = "samples") -> Figure | None:
    """Running max (solid) and raw (dotted) validation accuracy against training samples or, with `against`
    "wall clock", minutes since the run started."""
    fig, ax = figure(title, "training samples" if against == "samples" else "wall clock, minutes",
                     "accuracy (mean@samples)")
    drawn = False
    for i, run in enumerate(runs):
        if against == "samples":
            x, y = run.series("samples", key)
        else:
            clock = elapsed(run)
            rows = [r for r in run.measured(key) if (r.get("step") or 0) in clock]
            x = np.array([clock[r.get("step") or 0] / 60 for r in rows])
            y = np.array([r[key] for r in rows], dtype=float)
        if not len(x):
            continue
        style = _style(i, len(runs))
        ax.plot(x, stats.running_max(y), label=run.label, **style)
        ax.plot(x, y, color=style["color"], marker=style["marker"], linestyle=":", markersize=3, alpha=0.6)
        drawn = True
    if not drawn:
        return None
    legend(fig, ax, "solid: running max · dotted: raw")
    return fig


def plot_reward(runs: Sequence[Run]) -> Figure | None:
    fig, ax = figure("Training reward vs rollouts", "rollouts (RL + fast)", "mean reward of the step")
    drawn = False
    for i, run in enumerate(runs):
        # every rollout spent counts, GEPA's scoring included; a counter a mode does not keep (null) adds nothing
        rows = [r for r in run.measured("reward_mean")
                if r.get("rl_rollouts") is not None or r.get("fast_rollouts") is not None]
        if not rows:
            continue
        x = np.array([(r.get("rl_rollouts") or 0) + (r.get("fast_rollouts") or 0) for r in rows], dtype=float)
        y = np.array([r["reward_mean"] for r in rows], dtype=float)
        # steps that spent no rollouts of their own (gepa mode within a cycle) share a point: their mean
        x, where = np.unique(x, return_inverse=True)
        y = np.bincount(where, weights=y) / np.bincount(where)
        style = _style(i, len(runs))
        ax.plot(x, y, color=style["color"], alpha=0.3, linewidth=1)
        trend, window = _smooth(y)
        ax.plot(x[window - 1:], trend, color=style["color"], linewidth=style["linewidth"], label=run.label)
        drawn = True
    if not drawn:
        return None
    legend(fig, ax, "faint: per step · solid: moving average")
    return fig


def plot_kl(runs: Sequence[Run]) -> Figure | None:
    fig, ax = figure("KL to the base model vs validation accuracy", "validation accuracy",
                      "KL(π_train ‖ π_base), nats/token")
    drawn = False
    for i, run in enumerate(runs):
        accuracy, kl = _kl_curve(run)
        if not len(accuracy):
            continue
        ax.plot(accuracy, kl, label=run.label, **_style(i, len(runs)))
        drawn = True
    if not drawn:
        return None
    legend(fig, ax, "points in training order")
    return fig


def _step_lines(ax, runs: Sequence[Run], key: str, floor: float | None = None, secondary: bool = False) -> bool:
    """Each run's `key` against the RL step, one line per run in its style (values raised to `floor` for a log
    scale; `secondary`: dotted and unlabelled, beside a run's main line). Returns whether any run had the column."""
    drawn = False
    for i, run in enumerate(runs):
        x, y = run.series("step", key)
        if not len(x):
            continue
        style = _style(i, len(runs))
        if secondary:
            style = {"color": style["color"], "linestyle": ":", "alpha": 0.7, "linewidth": style["linewidth"]}
        ax.plot(x, y if floor is None else np.maximum(y, floor), label=None if secondary else run.label, **style)
        drawn = True
    return drawn


def plot_entropy(runs: Sequence[Run]) -> Figure | None:
    fig, ax = figure("Policy entropy", "RL step", "entropy, nats/token")
    if not _step_lines(ax, runs, "entropy"):
        return None
    legend(fig, ax)
    return fig


def plot_signal(runs: Sequence[Run]) -> Figure | None:
    fig, ax = figure("Where the RL signal comes from", "RL step", "share")
    if not _step_lines(ax, runs, "within_prompt_signal"):
        return None
    _step_lines(ax, runs, "within_prompt_variance_share", secondary=True)
    ax.set_ylim(-0.02, 1.02)
    legend(fig, ax, "solid: kept problems varying within a member\ndotted: within-member share of reward variance")
    return fig


def plot_member_entropy(runs: Sequence[Run]) -> Figure | None:
    fig, ax = figure("Entropy of the RL rollouts, by member", "RL step", "entropy, nats/token (log scale)")
    drawn = False
    for i, run in enumerate(runs):
        rows = [r for r in run.measured("member_entropy") if any(v is not None for v in r["member_entropy"].values())]
        if not rows:
            continue
        x = np.array([r["step"] for r in rows], dtype=float)
        values = [[v for v in r["member_entropy"].values() if v is not None] for r in rows]
        low, high = np.array([min(v) for v in values]), np.array([max(v) for v in values])
        style = _style(i, len(runs))
        ax.plot(x, [float(np.mean(v)) for v in values], label=run.label, **style)
        ax.fill_between(x, np.maximum(low, 1e-6), np.maximum(high, 1e-6), color=style["color"], alpha=0.15)
        drawn = True
    if not drawn:
        return None
    ax.set_yscale("log")
    legend(fig, ax, "line: mean over members · band: most to least certain member")
    return fig


def plot_grad_norm(runs: Sequence[Run]) -> Figure | None:
    fig, ax = figure("Policy gradient norm (before clipping)", "RL step", "gradient norm (log scale)")
    if not _step_lines(ax, runs, "grad_norm", floor=1e-12):
        return None
    ax.set_yscale("log")
    legend(fig, ax)
    return fig


def seconds_per_step(run: Run) -> dict[str, float]:
    """Mean seconds per RL step spent in each phase (reflection is once a cycle, spread over its steps)."""
    steps = max((row.get("step") or 0 for row in run.rows), default=0)
    totals = {p: sum(row.get(f"seconds_{p}") or 0.0 for row in run.rows) for p in PHASES}
    measured = any(row.get(f"seconds_{p}") is not None for row in run.rows for p in PHASES)
    return {p: t / steps for p, t in totals.items()} if steps and measured else {}


PHASE_COLORS = {"generate": "#4c72b0", "score": "#e8a33d", "reflect": "#55a868", "update": "#c44e52"}
MIN_SEGMENT = 0.015  # of the widest bar: a phase that takes less is drawn this wide, so that it can be seen


def plot_phases(runs: Sequence[Run]) -> Figure | None:
    timed = [(run, seconds_per_step(run)) for run in runs]
    timed = [(run, seconds) for run, seconds in timed if seconds]
    if not timed:
        return None
    fig = Figure(figsize=(7, 1.9 + 0.45 * len(timed)), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    ax.set(title="Seconds per RL step, by phase", xlabel="seconds per RL step")
    labels = [run.label for run, _ in timed]
    floor = MIN_SEGMENT * max(sum(seconds.values()) for _, seconds in timed)
    left = np.zeros(len(timed))
    for phase in PHASES:
        seconds = np.array([s[phase] for _, s in timed])
        widths = np.where(seconds > 0, np.maximum(seconds, floor), 0.0)
        mean = ", ".join(f"{v:.2g}" for v in seconds)
        ax.barh(labels, widths, left=left, color=PHASE_COLORS[phase], edgecolor="white", linewidth=0.8,
                label=f"{phase} ({mean} s)")
        left += widths
    ax.invert_yaxis()  # first run on top, as in the tables
    ax.grid(axis="x", alpha=0.3)
    legend(fig, ax, f"a phase under {MIN_SEGMENT:.1%} of the widest bar is drawn that wide; seconds per run in ()")
    return fig


PLOTS: list[tuple[str, str, Callable[[Sequence[Run]], Figure | None]]] = [
    ("val_accuracy.png", "Validation accuracy (the run's best prompt) vs training samples", plot_accuracy),
    ("val_accuracy_wall_clock.png", "Validation accuracy (the run's best prompt) vs wall clock since the run started",
     lambda runs: plot_accuracy(runs, title="Validation accuracy vs wall clock", against="wall clock")),
    ("val_accuracy_seed_prompt.png", "Validation accuracy with the seed prompt (what the weights learned)",
     lambda runs: plot_accuracy(runs, "val_accuracy_seed_prompt", "Validation accuracy, seed prompt")),
    ("reward.png", "Training reward vs all rollouts spent (RL + GEPA scoring)", plot_reward),
    ("kl_vs_accuracy.png", "KL to the base model at each checkpoint vs its validation accuracy", plot_kl),
    ("entropy.png", "Policy entropy vs RL step", plot_entropy),
    ("rl_signal.png", "Share of kept problems whose rewards vary within one member's rollouts (the signal the weights "
     "learn from), and the within-member share of reward variance", plot_signal),
    ("member_entropy.png", "Token entropy of each step's RL rollouts, per member", plot_member_entropy),
    ("grad_norm.png", "Policy gradient norm before clipping, per RL step", plot_grad_norm),
    ("seconds_per_phase.png", "Wall-clock seconds per RL step, split by phase", plot_phases),
]


# ---------------------------------------------------------------- population and the page


def _population_html(run: Run) -> str:
    if not run.populations:
        return "<p class='muted'>no population files</p>"
    parts = []
    for n, pop in enumerate(run.populations):
        members = pop.get("members") or []
        best = pop.get("best")
        best_score = next((m.get("mean_score") for m in members if m.get("id") == best), None)
        failed = " · <b>reflection failed, population kept</b>" if pop.get("reflection_failed") else ""
        summary = (f"cycle {pop.get('cycle', '?')} — best {html.escape(str(best))} ({_fmt(best_score)}), "
                   f"{len(members)} members, {_fmt(pop.get('metric_calls'))} metric calls{failed}")
        rows = "".join(
            f"<tr{' class=best' if m.get('id') == best else ''}><td>{html.escape(str(m.get('id')))}</td>"
            f"<td>{html.escape(str(m.get('parent')))}</td><td>{_fmt(m.get('mean_score'))}</td>"
            f"<td><pre>{html.escape(str(m.get('text', '')))}</pre></td></tr>"
            for m in members
        )
        is_last = " open" if n == len(run.populations) - 1 else ""
        parts.append(f"<details{is_last}><summary>{summary}</summary><table class=population><thead><tr><th>id</th>"
                     f"<th>parent</th><th>mean score</th><th>text</th></tr></thead><tbody>{rows}</tbody></table>"
                     "</details>")
    return "".join(parts)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1500px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } .muted { color: #777; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(620px, 1fr)); gap: 1em; }
figure { margin: 0; border: 1px solid #eee; padding: 0.5em; } figure img { width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
.notes { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 1em; }
details { margin: 0.3em 0; } summary { cursor: pointer; }
table.population { width: 100%; } table.population td:nth-child(4) { width: 75%; }
tr.best { background: #eef7ee; }
pre { white-space: pre-wrap; margin: 0; font-size: 0.95em; max-height: 20em; overflow: auto; }
"""


def make_report(run_dirs: Sequence[str | Path], out_dir: str | Path, notes: Sequence[str] | None = None) -> Path:
    """Write the PNG plots and report.html (plots embedded, so the page stands alone) to `out_dir`;
    return the HTML path. `notes` are findings shown at the top of the page."""
    runs = load_runs(run_dirs)
    for run in runs:  # an empty page would hide a wrong path, or a run that has not measured anything yet
        if not run.rows:
            raise FastSlowError(f"{run.path / 'metrics.jsonl'}: no metrics rows yet; nothing to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    figures = []
    for filename, caption, plot in PLOTS:
        fig = plot(runs)
        if fig is None:  # no run measured this
            continue
        fig.savefig(out / filename)
        data = base64.b64encode((out / filename).read_bytes()).decode()
        figures.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{html.escape(caption)} · <a href='{filename}'>{filename}</a></figcaption>"
                       "</figure>")

    comparisons = _comparison_rows(runs)
    warnings = [f"{run.label}: {text}" for run in runs
                if (text := stats.starvation_warning(stats.starved_cycles(run.rows)))]
    notes = [*(notes or []), *warnings]
    sections = [
        "<h1>fastslow report</h1>",
        f"<p class=muted>{datetime.now():%Y-%m-%d %H:%M} · {len(runs)} run(s): "
        + ", ".join(f"{html.escape(r.label)} <code>{html.escape(str(r.path))}</code>" for r in runs) + "</p>",
    ]
    if notes:
        sections.append("<div class=notes><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul></div>")
    sections += ["<h2>Runs</h2>", _html_table(_summary_rows(runs))]
    if comparisons:
        sections += ["<h2>Against RL</h2>",
                     "<p class=muted>Sample efficiency: samples the RL run needs to reach its peak validation accuracy "
                     "÷ samples this run needs to reach it. KL reduction: 1 − KL(this) / KL(RL) when each first "
                     "reaches the same validation accuracy (best over accuracy levels both reach). Where a side "
                     "never reaches the level compared at, the numbers are dashes and the last column says what "
                     "happened.</p>",
                     _html_table(comparisons)]
    times = _time_rows(runs)
    if times:
        sections += ["<h2>Where a step's time goes</h2>",
                     "<p class=muted>Mean wall-clock seconds per RL step (time between two metrics rows), split "
                     "into the slow phase (the RL step), the fast phase the trainer ran itself (re-scoring, GEPA, "
                     "reflection: on a cycle's first step), waiting for a fast phase running beside the slow one, "
                     "evaluation, and the checkpoint written at the cycle boundary before it. The parts sum to the "
                     "step's wall clock. Runs from before these were recorded are estimated: their fast phase is what "
                     "a cycle's first step took beyond a typical step, and evaluation and checkpoints stay in the slow "
                     "part.</p>",
                     _html_table(times)]
    sections += ["<h2>Plots</h2>",
                 f"<div class=plots>{''.join(figures)}</div>" if figures else "<p class=muted>nothing measured yet</p>"]
    sections += ["<h2>Population per cycle</h2>",
                 "<p class=muted>Members best first; scores are mean scores on that cycle's anchor set, so they "
                 "compare members within a cycle, not across cycles.</p>"]
    for run in runs:
        sections += [f"<h3>{html.escape(run.label)}</h3>", _population_html(run)]

    page = out / "report.html"
    page.write_text("<!doctype html><html><head><meta charset=utf-8><title>fastslow report</title>"
                    f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")
    return page
