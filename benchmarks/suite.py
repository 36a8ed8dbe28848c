"""The tasks of a suite (issue 13: tasks in the paper's regime, screened by benchmarks/task_suite.py; by default
micro-v4's, indices 0-6), side by side on one machine: one process per task, every run of a task at once.

    python benchmarks/suite.py task 5                     # a suite task's config as JSON (for --set "task=...")
    bash benchmarks/gpu.sh suite arms --tasks 0 1 2                                  # FST against RL per task
    bash benchmarks/gpu.sh suite experiments --tasks 0 --steps 100                   # claims 1-4 per task, pooled
    bash benchmarks/gpu.sh suite experiments --tasks 5 --experiments k-sweep --steps 60   # an ablation
    python benchmarks/suite.py experiments --tasks 3 --preset small --steps 4 --seeds 1 --workers 2 --out /tmp/x
                                                          # (the last: a CPU smoke test, 2.3 min on 2 busy cores)
    bash benchmarks/gpu.sh suite --suite docs/logs/smollm2/suite.json experiments --tasks 0 1 \
        --config configs/smollm2-text.yaml --model /tmp/smollm2/smollm2.gguf --reflector self ...
                                                          # smollm2's suite (benchmarks/smollm2_transfer.py: the calls)

`arms`: benchmarks/confident_prompts.py per task (full-preset sizes, its --arms, --seeds), the policy `--model`
with `--reflector` as its separate reflection LM; writes COLLECT/suite.md (each task's tables). 7 tasks x 6 runs on
one H200 (2026-12-01) left every FST run at 23-48 of its 60 steps after 400 s: give a call at most ~18 runs.

`experiments` (issues 13 and 24): benchmarks/run_experiments.py per task (on --config, if given), the same policy
and reflector, the paper's claims 1-4 by default (efficiency with FST-distill as an arm, asymptote, kl,
decomposition; the last three reuse efficiency's runs) or the ablations (`--experiments k-sweep t-sweep`), each task
with a worker per run it trains (`RUNS` x seeds; `--workers` sets it). Then benchmarks/suite_pool.py COLLECT into
COLLECT/pooled.md: the claims on three axes (training problems, rollouts sampled, wall clock), per task and pooled,
and every measured quantity per experiment; the claims table is printed. Every run of every task shares the machine,
so the wall-clock axis is read within a call (the results pages say so). 7 tasks x 12 runs do not fit one call: give
a call 1-2 tasks; pool several calls with `python benchmarks/suite_pool.py DIR` on their COLLECT folders together.

What goes where (both): runs and their checkpoints under --out (OUT/<task>/), so a rerun on a still-warm machine
trains only what is missing; to COLLECT (default $OUT/suite, else OUT/collect): each task's results
(`experiments`: COLLECT/<task>/task.json and <experiment>/results.md, summary.json, plots), its log
(COLLECT/logs/<task>.log) and runs without checkpoints (COLLECT/runs/<task>/: metrics, populations, configs).
A task still running after --limit-s is stopped with its workers (SIGTERM, SIGKILL 10 s later), as on a SIGTERM to
this process (gpu.sh's LIMIT_S, which should exceed --limit-s by ~30 s); what it finished stays, and the end of
each failed task's log is printed.

Back here, `experiments --runs-from RUNS` with a call's own arguments analyses its COLLECT/runs (unpacked from
results.tgz) again, without training: each run is found by its config (e.g. after a fix to the analysis, or to add
an experiment that reads metrics only: efficiency, asymptote, kl, k-sweep, t-sweep; decomposition needs the
checkpoints, which stay on the GPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "docs/logs/suite/task_suite_v4_2026-12-01_h200.json"
SCRATCH = ("checkpoints", ".lock", "gepa", "trl", "export")  # not copied to COLLECT
CLAIMS_1_4 = ["efficiency", "asymptote", "kl", "decomposition"]
# runs each experiment trains per seed (fastslow/experiments/presets.py, SETTINGS: efficiency's four modes, RL and
# K = 1, 2, 4, 8, RL and T = 3, 6, 12); asymptote, kl and decomposition reuse efficiency's runs
RUNS = {"efficiency": 4, "k-sweep": 5, "t-sweep": 4}
EXPERIMENTS = CLAIMS_1_4 + ["k-sweep", "t-sweep"]
GRACE_S = 10.0  # between SIGTERM and SIGKILL


def suite_tasks(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text())["suite"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"{path}: not a suite file of benchmarks/task_suite.py --json ({exc})") from None


def model_settings(args) -> list[str]:
    """Every run's --set pairs: the policy and its reflector (without --config: micro-v4 reflected on by micro, answers
    of 48 tokens; with it, the config's own unless --model or --reflector names another), then --set."""
    config = getattr(args, "config", None)
    model = args.model or (None if config else "micro-v4")
    reflector = args.reflector or (None if config else "micro")
    pairs = [f"model.path={model}"] if model else []
    pairs += [] if config else ["model.max_new_tokens=48"]
    if reflector == "self":
        pairs.append("reflection.kind=self")
    elif reflector:
        pairs += ["reflection.kind=local", f"reflection.model={reflector}"]
    return [x for kv in pairs + args.set for x in ("--set", kv)]


def signal_groups(procs, sig: int) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, sig)  # the group outlives its leader while a worker is left
        except ProcessLookupError:
            pass


def stop(procs) -> None:
    """SIGTERM to the process group of each one still running, SIGKILL to what is left of it GRACE_S later."""
    procs = [proc for proc in procs if proc.poll() is None]
    signal_groups(procs, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    signal_groups(procs, signal.SIGKILL)
    for proc in procs:
        proc.wait()


def run_side_by_side(commands: dict[int, list[str]], logs: Path, limit_s: float) -> dict[int, int]:
    """Start every task's command at once (each in its own process group, its output in logs/<task>.log), wait up to
    `limit_s`, then stop what is still running, worker processes included; so does a SIGTERM to this process. Prints
    the end of each failed task's log. Returns task -> exit code (negative: stopped by that signal)."""
    logs.mkdir(parents=True, exist_ok=True)
    procs = {}

    def on_sigterm(*_) -> None:
        stop(procs.values())
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    try:
        for task, command in commands.items():
            print(f"== task {task}: {shlex.join(command[1:])}", flush=True)
            with open(logs / f"{task}.log", "w") as log:
                procs[task] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                               start_new_session=True)
        for task, proc in procs.items():
            try:
                proc.wait(timeout=max(0.0, started + limit_s - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"== --limit-s {limit_s:.0f} reached: stopping every task still running", flush=True)
                stop(procs.values())
            print(f"== task {task}: exit {proc.returncode} after {(time.monotonic() - started) / 60:.1f} min",
                  flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    for task, proc in procs.items():
        if proc.returncode != 0:  # the end of its log says why
            tail = (logs / f"{task}.log").read_text(errors="replace").splitlines()[-15:]
            print(f"--- task {task}, end of {logs / f'{task}.log'}:\n" + "\n".join(tail), flush=True)
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
    workers = args.workers or max(RUNS.get(name, 0) for name in args.experiments) * args.seeds or None
    commands = {}
    for i, task in tasks.items():
        (args.collect / str(i)).mkdir(parents=True, exist_ok=True)
        (args.collect / str(i) / "task.json").write_text(json.dumps(task) + "\n")
        commands[i] = [sys.executable, str(ROOT / "benchmarks/run_experiments.py"), "--preset", args.preset,
                       "--seeds", str(args.seeds), "--out", str(args.out / str(i)), "--collect",
                       str(args.collect / str(i)), "--only", *args.experiments,
                       *(["--config", str(args.config)] if args.config else []),
                       *(["--workers", str(workers)] if workers else []),
                       *(["--runs-from", str(args.runs_from / str(i))] if args.runs_from else []),
                       "--set", f"task={json.dumps(task)}", *model_settings(args),
                       *(["--set", f"loop.steps={args.steps}"] if args.steps else [])]
    codes = run_side_by_side(commands, args.collect / "logs", args.limit_s)
    for i in tasks:
        copy_runs(args.out / str(i) / "runs", args.collect / "runs" / str(i))
    pooled = subprocess.run([sys.executable, str(ROOT / "benchmarks/suite_pool.py"), str(args.collect),
                             "--out", str(args.collect / "pooled.md")], capture_output=True, text=True)
    claims = pooled.stdout.split("\n## ")[0]  # the claims table; every measured quantity follows in pooled.md
    print(f"{claims}\n\n(per experiment, every quantity: {args.collect / 'pooled.md'})" if pooled.returncode == 0
          else pooled.stderr, flush=True)
    return int(any(code != 0 for code in codes.values()) or pooled.returncode != 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, default=SUITE, help="a suite file of benchmarks/task_suite.py --json")
    commands = parser.add_subparsers(dest="command", required=True)
    task = commands.add_parser("task", help="print a suite task's config as JSON")
    task.add_argument("index", type=int)
    for name, help_text in (("arms", "FST against RL (benchmarks/confident_prompts.py) on each task"),
                            ("experiments", "claims 1-4 or the ablations (benchmarks/run_experiments.py) on each "
                                            "task, then per task and pooled (benchmarks/suite_pool.py)")):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--tasks", type=int, nargs="+", default=None, help="suite task indices (default: all)")
        sub.add_argument("--seeds", type=int, default=3)
        sub.add_argument("--model", default=None, help="the policy, a checkpoint path or a short name (default "
                         "micro-v4; with --config, the config's)")
        sub.add_argument("--reflector", default=None, help="the separate reflection LM (reflection.kind=local), or "
                         "'self': the policy reflects on itself (default micro; with --config, the config's)")
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override in every run")
        sub.add_argument("--out", type=Path, default=Path(f"/tmp/suite_{name}"), help="runs and their checkpoints")
        sub.add_argument("--collect", type=Path, default=None,
                         help="tables, logs and runs without checkpoints (default: $OUT/suite, else OUT/collect)")
        sub.add_argument("--limit-s", type=float, default=510.0,
                         help="seconds before every task still running is stopped (default 510: gpu.sh's LIMIT_S "
                              "is 540)")
        if name == "arms":
            sub.add_argument("--arms", nargs="+", default=["rl", "fst"], help="arms of benchmarks/confident_prompts.py")
            sub.add_argument("--tiny", action="store_true", help="toy sizes: checks the wiring on a CPU")
        else:
            sub.add_argument("--experiments", nargs="+", default=CLAIMS_1_4, choices=EXPERIMENTS, metavar="EXPERIMENT",
                             help=f"default: claims 1-4 ({' '.join(CLAIMS_1_4)}); or k-sweep, t-sweep")
            sub.add_argument("--steps", type=int, default=None, help="loop.steps (default: the preset's)")
            sub.add_argument("--preset", default="full",
                             help="run sizes (fastslow/experiments/presets.py): full, small")
            sub.add_argument("--config", type=Path, default=None,
                             help="every run's base config (run_experiments.py --config; default the micro model's)")
            sub.add_argument("--workers", type=int, default=None,
                             help="run processes per task (default: every run of a task at once, RUNS x seeds)")
            sub.add_argument("--runs-from", type=Path, default=None, metavar="RUNS",
                             help="a call's COLLECT/runs (RUNS/<task>/<run>/): analyse those runs, train nothing")
    args = parser.parse_args()
    suite = suite_tasks(args.suite)
    if args.command == "task":
        if not 0 <= args.index < len(suite):
            raise SystemExit(f"{args.suite}: no task {args.index} (it has {len(suite)})")
        print(json.dumps(suite[args.index]))
        return 0
    chosen = args.tasks if args.tasks is not None else list(range(len(suite)))
    if any(not 0 <= i < len(suite) for i in chosen):
        raise SystemExit(f"--tasks: expected indices 0-{len(suite) - 1} of {args.suite}, got {chosen}")
    args.collect = args.collect or (Path(os.environ["OUT"]) / "suite" if os.environ.get("OUT") else args.out / "collect")
    args.collect.mkdir(parents=True, exist_ok=True)
    tasks = {i: suite[i] for i in dict.fromkeys(chosen)}
    return (arms if args.command == "arms" else experiments)(args, tasks)


if __name__ == "__main__":
    sys.exit(main())
