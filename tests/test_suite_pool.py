"""benchmarks/suite_pool.py: experiments on every task of a suite, per task and pooled, on hand-written summaries."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "suite_pool.py"


def write_task(collect: Path, index: int, task: dict, efficiency: dict) -> None:
    (collect / str(index) / "efficiency").mkdir(parents=True)
    (collect / str(index) / "task.json").write_text(json.dumps(task))
    (collect / str(index) / "efficiency" / "summary.json").write_text(json.dumps(efficiency))


def test_each_task_counts_once_in_the_pooled_mean(tmp_path):
    write_task(tmp_path, 0, {"name": "code", "args": {"ops": 3}},
               {"experiment": "efficiency", "seeds": 3,
                "fst": {"peak_accuracy": {"mean": 0.9, "std": 0.1}, "efficiency_per_seed": [1.0, 2.0]},
                "rl": {"peak_accuracy": {"mean": 0.5, "std": 0.0}}})
    write_task(tmp_path, 1, {"name": "strings", "args": {"program_seed": 7}},
               {"experiment": "efficiency", "fst": {"peak_accuracy": {"mean": 0.5, "std": 0.3}},
                "rl": {"peak_accuracy": {"mean": 0.7}, "samples_to_rl_peak": {"mean": 480.0}}})
    run = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--out", str(tmp_path / "pooled.md")],
                         capture_output=True, text=True, check=True)
    lines = run.stdout.splitlines()
    assert lines[0] == "## efficiency"
    assert lines[2] == "| arm | quantity | code (ops=3) | strings (program_seed=7) | pooled mean | sd over tasks | tasks |"
    assert "| fst | peak_accuracy | 0.9 | 0.5 | 0.7 | 0.28 | 2 |" in lines  # sd of (0.9, 0.5) = 0.283
    assert "| rl | samples_to_rl_peak | — | 480 | 480 | 0 | 1 |" in lines  # a task without it is left out
    assert not any("efficiency_per_seed" in line for line in lines)  # only entries with a mean over seeds
    assert (tmp_path / "pooled.md").read_text() == run.stdout


def test_a_folder_without_tasks_says_what_it_expected(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 1 and "task.json" in run.stderr
