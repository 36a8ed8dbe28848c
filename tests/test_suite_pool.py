"""benchmarks/suite_pool.py: experiments on every task of a suite, per task and pooled, and the claims on three axes,
on hand-written summaries."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "suite_pool.py"


def write_task(collect: Path, index: int, task: dict, **experiments: dict) -> None:
    (collect / str(index)).mkdir(parents=True)
    (collect / str(index) / "task.json").write_text(json.dumps(task))
    for name, summary in experiments.items():
        (collect / str(index) / name).mkdir()
        (collect / str(index) / name / "summary.json").write_text(json.dumps(summary))


def pool(collect: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(collect), *args], capture_output=True, text=True, check=True)


def section(stdout: str, title: str) -> list[str]:
    lines = stdout.splitlines()
    start = lines.index(f"## {title}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def spread(mean, std=None, n=3, dropped=0):
    return {"mean": mean, "std": std, "n": n, "dropped": dropped}


def test_each_task_counts_once_in_the_pooled_mean(tmp_path):
    write_task(tmp_path, 0, {"name": "code", "args": {"ops": 3}},
               efficiency={"experiment": "efficiency", "seeds": 3,
                           "fst": {"peak_accuracy": {"mean": 0.9, "std": 0.1}, "efficiency_per_seed": [1.0, 2.0]},
                           "rl": {"peak_accuracy": {"mean": 0.5, "std": 0.0}}})
    write_task(tmp_path, 1, {"name": "strings", "args": {"program_seed": 7}},
               efficiency={"experiment": "efficiency", "fst": {"peak_accuracy": {"mean": 0.5, "std": 0.3}},
                           "rl": {"peak_accuracy": {"mean": 0.7}, "samples_to_rl_peak": {"mean": 480.0}}})
    run = pool(tmp_path, "--out", str(tmp_path / "pooled.md"))
    lines = section(run.stdout, "efficiency")
    assert lines[2] == "| arm | quantity | code (ops=3) | strings (program_seed=7) | pooled mean | sd over tasks | tasks |"
    assert "| fst | peak_accuracy | 0.9 | 0.5 | 0.7 | 0.28 | 2 |" in lines  # sd of (0.9, 0.5) = 0.283
    assert "| rl | samples_to_rl_peak | — | 480 | 480 | 0 | 1 |" in lines  # a task without it is left out
    assert not any("efficiency_per_seed" in line for line in lines)  # only entries with a mean over seeds
    assert (tmp_path / "pooled.md").read_text() == run.stdout


def test_measurements_outside_an_arm_are_pooled_too(tmp_path):
    """kl's and asymptote's headline numbers sit at the top of summary.json, and kl's matched budgets one level deeper."""
    write_task(tmp_path, 0, {"name": "code"},
               kl={"max_reduction": spread(0.5, 0.1), "at_matched_budget": {"rollouts": {"kl_fst": spread(0.02)}},
                   "final_kl": {"fst": spread(0.1)}})
    lines = section(pool(tmp_path).stdout, "kl")
    assert "| — | max_reduction | 0.5 | 0.5 | 0 | 1 |" in lines
    assert "| at_matched_budget | rollouts.kl_fst | 0.02 | 0.02 | 0 | 1 |" in lines
    assert "| final_kl | fst | 0.1 | 0.1 | 0 | 1 |" in lines


def test_claims_are_read_on_three_axes_per_task_and_pooled(tmp_path):
    """Claim 1 on problems, rollouts and seconds: per task mean ± std over seeds, pooled over tasks, and a tally of
    tasks above / below the level value (1×) by more than one standard error over seeds."""
    write_task(tmp_path, 0, {"name": "code"},
               efficiency={"fst": {"efficiency_vs_rl": spread(4.0, 1.0), "efficiency_vs_rl_rollouts": spread(2.5, 0.3),
                                   "efficiency_vs_rl_seconds": spread(1.5, 0.9)}},
               asymptote={"A_fst_minus_rl": spread(0.05, 0.01), "A_fst_minus_rl_rollouts": spread(0.04, 0.01),
                          "A_fst_minus_rl_seconds": spread(0.03, 0.02)})
    write_task(tmp_path, 1, {"name": "strings", "args": {"program_seed": 7}},
               efficiency={"fst": {"efficiency_vs_rl": spread(1.0, 0.2, n=2, dropped=1),
                                   "efficiency_vs_rl_rollouts": spread(0.6, 0.1),
                                   "efficiency_vs_rl_seconds": spread(0.5, 0.1)}})
    lines = section(pool(tmp_path).stdout, "Claims on three axes")
    assert lines[2].startswith("| claim | axis | paper | code | strings (program_seed=7) | pooled (mean ± sd over tasks) |")
    claim = "1. sample efficiency: RL's budget to its peak ÷ FST's"
    rows = {line.split(" | ")[1]: line for line in lines if line.startswith(f"| {claim} |")}
    assert list(rows) == ["problems", "rollouts", "seconds"]
    # code 4.0 is above 1 by 3 standard errors (1/√3); strings 1.0 is level; pooled (4 + 1) / 2 = 2.5, sd 2.12
    assert rows["problems"] == (f"| {claim} | problems | 3.0× / 1.4× / 3.0× | 4.00× ± 1.00 | 1.00× ± 0.20 (2 of 3 seeds) "
                                "| 2.50× ± 2.12 (2 tasks) | 1 / 0 / 1 |")
    # per rollout the string task falls below 1 by more than a standard error: against
    assert rows["rollouts"].endswith("| 2.50× ± 0.30 | 0.60× ± 0.10 | 1.55× ± 1.34 (2 tasks) | 1 / 1 / 0 |")
    # per second the code task's 1.5 ± 0.9 is within one standard error (0.52) of 1: a tie
    assert rows["seconds"].endswith("| 1.50× ± 0.90 | 0.50× ± 0.10 | 1.00× ± 0.71 (2 tasks) | 0 / 1 / 1 |")
    asymptote = [line for line in lines if line.startswith("| 2. higher asymptote")]
    assert [line.split(" | ")[1] for line in asymptote] == ["problems", "rollouts", "seconds"]
    assert asymptote[0].endswith("| 5.00 points ± 1.00 | — | 5.00 points (1 task) | 1 / 0 / 0 |")
    assert not any(line.startswith("| 3.") or line.startswith("| 4.") for line in lines)  # nothing measured: no row


def test_a_task_where_fst_never_reached_rls_peak_counts_against_claim_1(tmp_path):
    """Every seed undefined (FST never reached RL's peak): shown, counted against, and not left out of the tally, where
    it would leave claim 1 to the tasks that FST wins."""
    write_task(tmp_path, 0, {"name": "code"}, efficiency={"fst": {"efficiency_vs_rl": spread(16.0, 6.0)}})
    write_task(tmp_path, 1, {"name": "strings", "args": {"program_seed": 7}},
               efficiency={"fst": {"efficiency_vs_rl": spread(None, None, n=0, dropped=3)}})
    write_task(tmp_path, 2, {"name": "strings", "args": {"program_seed": 38}},  # one seed of three got there
               efficiency={"fst": {"efficiency_vs_rl": spread(2.0, None, n=1, dropped=2)}})
    lines = section(pool(tmp_path).stdout, "Claims on three axes")
    claim = "1. sample efficiency: RL's budget to its peak ÷ FST's"
    row = next(line for line in lines if line.startswith(f"| {claim} | problems |"))
    assert row.endswith("| 16.00× ± 6.00 | never reached RL's peak (0 of 3 seeds) | 2.00× (1 of 3 seeds) "
                        "| 9.00× ± 9.90 (2 tasks); 1 task(s) never reached RL's peak | 1 / 2 / 0 |")
    assert not any(line.startswith(f"| {claim} | rollouts |") for line in lines)  # nothing there at all: no row


def test_a_folder_without_tasks_says_what_it_expected(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 1 and "task.json" in run.stderr


def test_a_gap_that_rounds_to_zero_is_a_tie(tmp_path):
    """Where FST kept the seed prompt its weights are RL's: a KL reduction of 3e-7 ± 4e-7 (one standard error 2.6e-7)
    is float noise, shown as 0.00% and tallied as a tie, not a win; 1% ± 0.1 still counts."""
    write_task(tmp_path, 0, {"name": "cipher"}, kl={"max_reduction": spread(3.3e-7, 4.5e-7)})
    write_task(tmp_path, 1, {"name": "code"}, kl={"max_reduction": spread(0.01, 0.001)})
    lines = section(pool(tmp_path).stdout, "Claims on three axes")
    row = next(line for line in lines if line.startswith("| 3. less KL at matched accuracy"))
    assert row.endswith("| 0.00% ± 0.00 | 1.00% ± 0.10 | 0.50% ± 0.71 (2 tasks) | 1 / 0 / 1 |")


def test_a_collect_of_ablations_only_has_no_claims_section(tmp_path):
    write_task(tmp_path, 0, {"name": "strings", "args": {"program_seed": 7}},
               **{"k-sweep": {"K=1": {"peak_accuracy": spread(0.6, 0.05)}, "rl": {"peak_accuracy": spread(0.63)}}})
    out = pool(tmp_path).stdout
    assert "## Claims on three axes" not in out
    assert "| K=1 | peak_accuracy | 0.6 | 0.6 | 0 | 1 |" in section(out, "k-sweep")
