"""Experiments on every task of a suite, per task and pooled (issue 13), and the paper's claims 1-4 read on three
axes, training problems, rollouts sampled and wall clock (issue 24).

    python benchmarks/suite_pool.py COLLECT_DIR [--out suite.md]

COLLECT_DIR holds one folder per suite task, as `benchmarks/suite.py experiments` writes them ($OUT/suite):
`<i>/task.json` (the task config) and `<i>/<experiment>/summary.json` (what `fastslow experiment` writes). Two kinds
of table:
- "Claims": one row per claim and axis (`CLAIMS`), shaped like docs/RESULTS.md's summary: the paper's number, each
  task's mean ± std over seeds, the pooled mean ± sd over tasks (every task counts once, whatever its spread over
  seeds), and a tally: tasks where the claim holds by more than one standard error over seeds, where it fails by more,
  and ties. A task where no seed of FST reached RL's peak (claim 1 undefined) is shown as such and counts against,
  as does one where most seeds did not;
- per experiment, every measured quantity (a summary entry with a mean over seeds, at any depth) per task and pooled.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClaimRow:
    claim: str
    experiment: str
    path: tuple[str, ...]  # where the measurement sits in the experiment's summary.json
    axis: str
    paper: str
    null: float  # the value at which FST and its baseline are level
    scale: float = 1.0
    unit: str = ""
    never: str = ""  # what it means that no seed of a task measured it; such a task counts against (not left out)


def _axes(claim: str, experiment: str, key: str, paper: dict[str, str], null: float, scale: float = 1.0,
          unit: str = "", arm: str | None = None, never: str = "") -> list[ClaimRow]:
    """One row per axis: `key` on the problems axis, `key` + `_rollouts` / `_seconds` (or `{axis}` filled in)."""
    rows = []
    for axis, suffix in (("problems", "samples"), ("rollouts", "rollouts"), ("seconds", "seconds")):
        name = key.format(axis=suffix) if "{axis}" in key else key + ("" if suffix == "samples" else f"_{suffix}")
        rows.append(ClaimRow(claim, experiment, (arm, name) if arm else (name,), axis, paper.get(axis, ""), null,
                             scale, unit, never))
    return rows


# The paper's numbers: docs/RESULTS.md's summary (CodeIO / Math / HoVer-hard); "2nd-hand" ones from /work/shared/PAPER.md.
CLAIMS = [
    *_axes("1. sample efficiency: RL's budget to its peak ÷ FST's", "efficiency", "efficiency_vs_rl",
           {"problems": "3.0× / 1.4× / 3.0×", "seconds": "per step RL 60 s, FST 100 s, FST + reuse 47 s (8×H100, 2nd-hand)"},
           null=1.0, unit="×", arm="fst", never="never reached RL's peak"),
    *_axes("1. FST-distill against RL, as claim 1", "efficiency", "efficiency_vs_rl",
           {"problems": "plateaus far below FST"}, null=1.0, unit="×", arm="fst-distill", never="never reached RL's peak"),
    *_axes("2. higher asymptote: A(FST) − A(RL)", "asymptote", "A_fst_minus_rl",
           {"problems": "+4.4 / +2.8 / +7.7 points"}, null=0.0, scale=100, unit=" points"),
    *_axes("2. best accuracy so far at a matched budget, FST − RL", "asymptote", "best_fst_minus_rl_at_matched_{axis}",
           {}, null=0.0, scale=100, unit=" points"),
    ClaimRow("3. less KL at matched accuracy: largest 1 − KL(FST)/KL(RL)", "kl", ("max_reduction",), "accuracy",
             "up to 70%", 0.0, 100, "%"),
    *_axes("3. less KL at a matched budget: 1 − KL(FST)/KL(RL)", "kl", "kl_reduction_at_matched_{axis}", {},
           null=0.0, scale=100, unit="%"),
    ClaimRow("4. both channels: both − prompt only", "decomposition", ("both over prompt only",), "end of training",
             "HoVer-hard +10.6, CodeIO +8.8 points", 0.0, 100, " points"),
    ClaimRow("4. both channels: both − weights only", "decomposition", ("both over weights only",), "end of training",
             "HoVer-hard +9.6, CodeIO +18.2 points", 0.0, 100, " points"),
]


def task_label(task: dict) -> str:
    args = ", ".join(f"{k}={v}" for k, v in task.get("args", {}).items())
    return f"{task['name']} ({args})" if args else task["name"]


def load_suite(collect: Path) -> tuple[list[str], dict[str, dict[str, dict]]]:
    """Task labels in folder order, and {experiment: {task label: summary}}."""
    labels, summaries = [], {}
    folders = sorted((p for p in collect.iterdir() if (p / "task.json").is_file()),
                     key=lambda p: (int(p.name) if p.name.isdigit() else math.inf, p.name))
    for folder in folders:
        label = task_label(json.loads((folder / "task.json").read_text()))
        labels.append(label)
        for summary_file in sorted(folder.glob("*/summary.json")):
            summaries.setdefault(summary_file.parent.name, {})[label] = json.loads(summary_file.read_text())
    return labels, summaries


def is_spread(value) -> bool:
    return isinstance(value, dict) and "mean" in value


def spreads(summary: dict, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], dict]:
    """Every measurement with a mean over seeds (a stats.Spread as summary.json holds it), by its path."""
    found = {}
    for key, value in summary.items():
        if is_spread(value):
            if value.get("mean") is not None:
                found[path + (key,)] = value
        elif isinstance(value, dict):
            found |= spreads(value, path + (key,))
    return found


def measured(summary: dict) -> dict[tuple[str, str], float]:
    """{(arm or group, quantity): mean over seeds}; a top-level measurement's group is '—'."""
    return {(path[0], ".".join(path[1:])) if len(path) > 1 else ("—", path[0]): value["mean"]
            for path, value in spreads(summary).items()}


def pooled_table(labels: list[str], by_task: dict[str, dict]) -> str:
    per_task = {label: measured(summary) for label, summary in by_task.items()}
    keys = sorted({key for values in per_task.values() for key in values})
    tasks = [label for label in labels if label in per_task]
    header = ["arm", "quantity", *tasks, "pooled mean", "sd over tasks", "tasks"]
    rows = []
    for arm, name in keys:
        values = [per_task[label].get((arm, name)) for label in tasks]
        present = [v for v in values if v is not None]
        sd = statistics.stdev(present) if len(present) > 1 else 0.0
        rows.append([arm, name, *("—" if v is None else f"{v:.3g}" for v in values),
                     f"{statistics.fmean(present):.3g}", f"{sd:.2g}", str(len(present))])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


RESOLUTION = 0.005  # half the last digit `cell` shows: a gap that rounds to 0.00 is a tie


def lookup(summary: dict | None, path: tuple[str, ...]) -> dict | None:
    for key in path:
        if not isinstance(summary, dict):
            return None
        summary = summary.get(key)
    return summary if is_spread(summary) and (summary.get("mean") is not None or summary.get("dropped")) else None


def side(spread: dict, null: float, resolution: float = 0.0) -> int:
    """+1 where the mean is above the null by more than one standard error over seeds, -1 below, 0 a tie (one seed:
    no standard error, so only an exact tie is a tie). A gap under `resolution`, which the table shows as 0, is a tie
    too: where FST kept the seed prompt its weights are RL's, and float noise (a KL reduction of 3e-7 ± 3e-7) must
    not count as a win."""
    n, std = spread.get("n") or 1, spread.get("std")
    error = std / math.sqrt(n) if std is not None and n > 1 else 0.0
    gap = spread["mean"] - null
    return 0 if abs(gap) <= max(error, resolution) else (1 if gap > 0 else -1)


def cell(spread: dict | None, row: ClaimRow) -> str:
    if spread is None:
        return "—"
    if spread["mean"] is None:  # every seed undefined
        return f"{row.never or 'undefined'} (0 of {spread['dropped']} seeds)"
    text = f"{spread['mean'] * row.scale:.2f}{row.unit}"
    if spread.get("std") is not None:
        text += f" ± {spread['std'] * row.scale:.2f}"
    if spread.get("dropped"):
        text += f" ({spread['n']} of {spread['n'] + spread['dropped']} seeds)"
    return text


def claims_table(labels: list[str], summaries: dict[str, dict[str, dict]]) -> str:
    """The claims on every axis: paper | per task mean ± std over seeds | pooled mean ± sd over tasks | tally; "" when
    no claim was measured (a collect of ablations only)."""
    tasks = [label for label in labels if any(label in by_task for by_task in summaries.values())]
    header = ["claim", "axis", "paper", *tasks, "pooled (mean ± sd over tasks)", "tasks for / against / tied"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in CLAIMS:
        found = [lookup(summaries.get(row.experiment, {}).get(label), row.path) for label in tasks]
        present = [s for s in found if s is not None and (s["mean"] is not None or row.never)]
        if not present:
            continue
        # a task where no seed reached the baseline's peak has no ratio to pool, but it counts against the claim:
        # left out, it would leave the pooled mean and the tally to the tasks where FST did reach it
        means = [s["mean"] * row.scale for s in present if s["mean"] is not None]
        pooled = []
        if means:
            spread = f" ± {statistics.stdev(means):.2f} ({len(means)} tasks)" if len(means) > 1 else " (1 task)"
            pooled.append(f"{statistics.fmean(means):.2f}{row.unit}{spread}")
        if len(means) < len(present):
            pooled.append(f"{len(present) - len(means)} task(s) {row.never}")
        # likewise where most seeds never got there: the few that did say little about the task
        sides = [-1 if s["mean"] is None or (row.never and s.get("dropped", 0) > s["n"]) else
                 side(s, row.null, RESOLUTION / row.scale)
                 for s in present]
        tally = f"{sides.count(1)} / {sides.count(-1)} / {sides.count(0)}"
        cells = [row.claim, row.axis, row.paper, *(cell(s, row) for s in found), "; ".join(pooled), tally]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("collect", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args()
    labels, summaries = load_suite(args.collect)
    if not summaries:
        print(f"{args.collect}: no <task>/task.json with <experiment>/summary.json beside it", file=sys.stderr)
        return 1
    claims = claims_table(labels, summaries)
    parts = [f"## Claims on three axes\n\n{claims}\n\n"
             "For / against / tied: tasks whose mean over seeds is above the level value (1× for ratios, 0 for "
             "differences) by more than one standard error over seeds, below it by more, or within."] if claims else []
    parts += [f"## {name}\n\n{pooled_table(labels, by_task)}" for name, by_task in sorted(summaries.items())]
    text = "\n\n".join(parts)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
