"""The tasks of a suite (issue 13: tasks in the paper's regime, screened by benchmarks/task_suite.py), side by side on
one machine: one process per task, each with its share of the workers.

    python benchmarks/suite.py task 5                # print a suite task's config as JSON (for --set "task=...")
    python benchmarks/suite.py arms --only 0 1 2 --collect $OUT/suite         # FST against RL per task
    python benchmarks/suite.py experiments --only 5 6 --steps 100 --collect $OUT/suite  # claims 1-4 per task, pooled

`arms`: benchmarks/confident_prompts.py per task (full-preset sizes, its --arms, --seeds), the policy `--model`
with `--reflector` as its separate reflection LM; writes COLLECT/suite.md (each task's tables). 7 tasks x 6 runs on
one H200 (2026-12-01) left every FST run at 23-48 of its 60 steps after 400 s: give a call at most ~18 runs.
`experiments`: benchmarks/run_experiments.py per task (--preset full, --experiments), then the per-task and pooled
tables of benchmarks/suite_pool.py in COLLECT/pooled.md (7 tasks x 9 runs do not fit one call: give a call 2-3 tasks).
Both copy each task's runs (metrics, populations, configs; no checkpoints) and results to COLLECT; runs and their
checkpoints stay under --out, so a rerun on a still-warm machine trains only what is missing. On the GPU machine:
`bash benchmarks/gpu.sh suite arms ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "docs/logs/suite/task_suite_v4_2026-12-01_h200.json"
SCRATCH = ("checkpoints", ".lock", "gepa", "trl", "export")  # not copied to COLLECT


def suite_tasks(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text())["suite"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"{path}: not a suite file of benchmarks/task_suite.py --json ({exc})") from None


def model_settings(args) -> list[str]:
    return ["--set", f"model.path={args.model}", "--set", "model.max_new_tokens=48", "--set", "reflection.kind=local",
            "--set", f"reflection.model={args.reflector}", *(x for kv in args.set for x in ("--set", kv))]


def run_side_by_side(commands: dict[int, list[str]], logs: Path, limit_s: float) -> dict[int, int]:
    """Start every task's command at once (each in its own process group, its output in logs/<task>.log), wait up to
    `limit_s`, then stop what is still running, worker processes included; so does a SIGTERM to this process (what
    gpu.sh's time limit sends). Returns task -> exit code (-15: stopped)."""
    logs.mkdir(parents=True, exist_ok=True)
    procs = {}

    def stop(*_) -> None:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        if _:  # called as the SIGTERM handler
            raise SystemExit(143)

    signal.signal(signal.SIGTERM, stop)
    for task, command in commands.items():
        with open(logs / f"{task}.log", "w") as log:
            procs[task] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                           preexec_fn=os.setpgrp)
    deadline = time.monotonic() + limit_s
    for task, proc in procs.items():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            stop()
            proc.wait()
        print(f"== task {task}: exit {proc.returncode}", flush=True)
    return {task: proc.returncode for task, proc in procs.items()}


def copy_runs(source: Path, target: Path) -> None:
    """The run directories under `source` without checkpoints and scratch."""
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(*SCRATCH), dirs_exist_ok=True)


def arms(args, tasks: dict[int, dict]) -> int:
    per_task = len(args.arms) * args.seeds
    commands = {i: [sys.executable, str(ROOT / "benchmarks/confident_prompts.py"), "--out", str(args.out / str(i)),
                    "--seeds", str(args.seeds), "--workers", str(per_task), "--arms", *args.arms,
                    "--task", json.dumps(task), *model_settings(args), *(["--tiny"] if args.tiny else [])]
                for i, task in tasks.items()}
    codes = run_side_by_side(commands, args.collect / "logs", args.limit_s)
    parts = []
    for i, task in tasks.items():
        tables = args.out / str(i) / "confident_prompts.md"
        log = (args.collect / "logs" / f"{i}.log").read_text().splitlines()
        parts.append(f"# task {i}: {json.dumps(task)}\n\n"
                     + (tables.read_text() if tables.is_file() else "no tables; the log ends:\n\n" + "\n".join(log[-20:])))
        copy_runs(args.out / str(i) / "runs", args.collect / "runs" / str(i))
    (args.collect / "suite.md").write_text("\n\n".join(parts) + "\n")
    print("\n".join(line for line in "\n".join(parts).splitlines()
                    if line.startswith("# task") or "running best >=" in line))
    return int(any(code != 0 for code in codes.values()))


def experiments(args, tasks: dict[int, dict]) -> int:
    workers = max(1, (args.workers or len(os.sched_getaffinity(0))) // len(tasks))
    commands = {}
    for i, task in tasks.items():
        (args.collect / str(i)).mkdir(parents=True, exist_ok=True)
        (args.collect / str(i) / "task.json").write_text(json.dumps(task))
        commands[i] = [sys.executable, str(ROOT / "benchmarks/run_experiments.py"), "--preset", "full",
                       "--seeds", str(args.seeds), "--out", str(args.out / str(i)), "--collect",
                       str(args.collect / str(i)), "--workers", str(workers), "--only", *args.experiments,
                       "--set", f"task={json.dumps(task)}", *model_settings(args),
                       *(["--set", f"loop.steps={args.steps}"] if args.steps else [])]
    codes = run_side_by_side(commands, args.collect / "logs", args.limit_s)
    for i in tasks:
        copy_runs(args.out / str(i) / "runs", args.collect / "runs" / str(i))
    pooled = subprocess.run([sys.executable, str(ROOT / "benchmarks/suite_pool.py"), str(args.collect),
                             "--out", str(args.collect / "pooled.md")], capture_output=True, text=True)
    print("\n".join(pooled.stdout.splitlines()[:60]) or pooled.stderr)
    return int(any(code != 0 for code in codes.values()) or pooled.returncode != 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, default=SUITE, help="a suite file of benchmarks/task_suite.py --json")
    commands = parser.add_subparsers(dest="command", required=True)
    task = commands.add_parser("task", help="print a suite task's config as JSON")
    task.add_argument("index", type=int)
    for name, help_text in (("arms", "FST against RL (benchmarks/confident_prompts.py) on each task"),
                            ("experiments", "claims 1-4 (benchmarks/run_experiments.py) on each task, then pooled")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--only", type=int, nargs="*", default=None, help="suite task indices (default: all)")
        sub.add_argument("--seeds", type=int, default=3)
        sub.add_argument("--model", default="micro-v4", help="the policy (a checkpoint path or a short name)")
        sub.add_argument("--reflector", default="micro", help="the reflection LM (local)")
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override in every run")
        sub.add_argument("--out", type=Path, default=Path(f"/tmp/suite_{name}"), help="runs and their checkpoints")
        sub.add_argument("--collect", type=Path, default=None,
                         help="tables, logs and runs without checkpoints (default: $OUT/suite, else OUT/collect)")
        sub.add_argument("--limit-s", type=float, default=480.0, help="stop every task's process after this long")
        if name == "arms":
            sub.add_argument("--arms", nargs="*", default=["rl", "fst"], help="arms of benchmarks/confident_prompts.py")
            sub.add_argument("--tiny", action="store_true", help="toy sizes: checks the wiring on a CPU")
        else:
            sub.add_argument("--experiments", nargs="*", default=["efficiency", "asymptote", "kl", "decomposition"])
            sub.add_argument("--steps", type=int, default=None, help="loop.steps (default: the preset's 36)")
            sub.add_argument("--workers", type=int, default=None, help="run processes in all (default: the cores)")
    args = parser.parse_args()
    suite = suite_tasks(args.suite)
    if args.command == "task":
        if not 0 <= args.index < len(suite):
            raise SystemExit(f"{args.suite}: no task {args.index} (it has {len(suite)})")
        print(json.dumps(suite[args.index]))
        return 0
    chosen = args.only if args.only is not None else list(range(len(suite)))
    if not chosen or any(not 0 <= i < len(suite) for i in chosen):
        raise SystemExit(f"--only: expected indices of the {len(suite)} tasks of {args.suite}, got {chosen}")
    args.collect = args.collect or (Path(os.environ["OUT"]) / "suite" if os.environ.get("OUT") else args.out / "collect")
    args.collect.mkdir(parents=True, exist_ok=True)
    tasks = {i: suite[i] for i in chosen}
    return (arms if args.command == "arms" else experiments)(args, tasks)


if __name__ == "__main__":
    sys.exit(main())
