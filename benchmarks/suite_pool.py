"""Experiments on every task of a suite, per task and pooled (issue 13: "experiments 1-4 run on every task of the
suite and report per task and pooled").

    python benchmarks/suite_pool.py COLLECT_DIR [--out suite.md]

COLLECT_DIR holds one folder per suite task, as `benchmarks/suite.py experiments` writes them: `<i>/task.json` (the
task config) and `<i>/<experiment>/summary.json` (what `fastslow experiment` writes). For each experiment and each
arm's measured quantity (a summary entry with a mean over seeds), the table has the per-task means and, pooled over
the tasks that have it, their mean and standard deviation: every task counts once, whatever its spread over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def task_label(task: dict) -> str:
    args = ", ".join(f"{k}={v}" for k, v in task.get("args", {}).items())
    return f"{task['name']} ({args})" if args else task["name"]


def load_suite(collect: Path) -> tuple[list[str], dict[str, dict[str, dict]]]:
    """Task labels in folder order, and {experiment: {task label: summary}}."""
    labels, summaries = [], {}
    for folder in sorted((p for p in collect.iterdir() if (p / "task.json").is_file()), key=lambda p: p.name):
        label = task_label(json.loads((folder / "task.json").read_text()))
        labels.append(label)
        for summary_file in sorted(folder.glob("*/summary.json")):
            summaries.setdefault(summary_file.parent.name, {})[label] = json.loads(summary_file.read_text())
    return labels, summaries


def measured(summary: dict) -> dict[tuple[str, str], float]:
    """{(arm, quantity): mean over seeds} for every entry of the summary that has one."""
    return {(arm, name): value["mean"] for arm, values in summary.items() if isinstance(values, dict)
            for name, value in values.items() if isinstance(value, dict) and value.get("mean") is not None}


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("collect", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args()
    labels, summaries = load_suite(args.collect)
    if not summaries:
        print(f"{args.collect}: no <task>/task.json with <experiment>/summary.json beside it", file=sys.stderr)
        return 1
    text = "\n\n".join(f"## {name}\n\n{pooled_table(labels, by_task)}" for name, by_task in sorted(summaries.items()))
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
