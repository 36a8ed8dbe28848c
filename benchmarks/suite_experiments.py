"""The paper's experiments on tasks of micro-v4's suite, side by side on one machine, then per task and pooled
(issues 13 and 24): claims 1-4 (efficiency with FST-distill as an arm, asymptote, kl, decomposition), or the
ablations (k-sweep, t-sweep).

    bash benchmarks/gpu.sh suite_experiments --tasks 0 --steps 100                       (device: carry [".whl"])
    python benchmarks/suite_experiments.py --tasks 3 --preset small --steps 4 --seeds 1 --out /tmp/x   (a CPU smoke test)

For each chosen task (an index into the suite JSON's "suite"), one `benchmarks/run_experiments.py` process with the
policy micro-v4 and the reflector (`micro`) as its separate reflection LM, writing OUT/suite/<i>/ (task.json, each
experiment's results.md and summary.json, runs/ with every run's metrics); then `benchmarks/suite_pool.py OUT/suite`
into OUT/pooled.md (claims on three axes, per task and pooled). Every run of every task shares the machine, so the
wall-clock axis is read within a call: the results pages say so. A task still running at --limit is stopped (what it
finished stays); gpu.sh packs OUT into results.tgz (checkpoints left out).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "docs/logs/suite/task_suite_v4_2026-12-01_h200.json"
CLAIMS_1_4 = ["efficiency", "asymptote", "kl", "decomposition"]
RUNS = {"efficiency": 4, "k-sweep": 5, "t-sweep": 4}  # arms trained per seed (the others reuse efficiency's runs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, default=SUITE, help="a task_suite.py JSON (default micro-v4's)")
    parser.add_argument("--tasks", type=int, nargs="+", required=True, help="indices into the suite")
    parser.add_argument("--experiments", nargs="+", default=CLAIMS_1_4,
                        help="default: claims 1-4; or k-sweep t-sweep")
    parser.add_argument("--steps", type=int, default=None, help="loop.steps (default the preset's)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--preset", default="full")
    parser.add_argument("--workers", type=int, default=None,
                        help="run processes per task (default: every run of a task at once)")
    parser.add_argument("--limit", type=float, default=510, help="seconds before a task still running is stopped")
    parser.add_argument("--model", default="micro-v4")
    parser.add_argument("--reflector", default="micro")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/out")))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more run config overrides")
    return parser.parse_args(argv)


def command(args: argparse.Namespace, task: dict, folder: Path) -> list[str]:
    workers = args.workers or max(RUNS.get(name, 0) for name in args.experiments) * args.seeds or None
    overrides = [f"task={json.dumps(task)}", f"model.path={args.model}", "model.max_new_tokens=48",
                 "reflection.kind=local", f"reflection.model={args.reflector}",
                 *([f"loop.steps={args.steps}"] if args.steps else []), *args.set]
    return ([sys.executable, str(ROOT / "benchmarks/run_experiments.py"), "--preset", args.preset, "--seeds",
             str(args.seeds), "--out", str(folder), "--only", *args.experiments]
            + (["--workers", str(workers)] if workers else []) + [a for o in overrides for a in ("--set", o)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    suite = json.loads(args.suite.read_text())["suite"]
    if any(not 0 <= i < len(suite) for i in args.tasks):
        print(f"--tasks: expected indices 0..{len(suite) - 1} of {args.suite}", file=sys.stderr)
        return 2
    started, procs = time.perf_counter(), {}
    for i in args.tasks:
        folder = args.out / "suite" / str(i)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "task.json").write_text(json.dumps(suite[i]) + "\n")
        cmd = command(args, suite[i], folder)
        print(f"task {i}: {json.dumps(suite[i])}\n$ {' '.join(cmd[1:])}", flush=True)
        procs[i] = subprocess.Popen(cmd, stdout=(folder / "run.log").open("w"), stderr=subprocess.STDOUT, cwd=ROOT,
                                    start_new_session=True)  # its own process group: stopped with its workers
    failed = []
    for i, proc in procs.items():
        try:
            proc.wait(timeout=max(1.0, args.limit - (time.perf_counter() - started)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.returncode != 0:
            failed.append(i)
        print(f"task {i}: exit {proc.returncode} after {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    pooled = subprocess.run([sys.executable, str(ROOT / "benchmarks/suite_pool.py"), str(args.out / "suite"),
                             "--out", str(args.out / "pooled.md")], capture_output=True, text=True)
    print(pooled.stdout or pooled.stderr)
    for i in failed:  # the end of a failed task's log says why
        print(f"--- task {i}, end of run.log:\n" + "".join((args.out / "suite" / str(i) / "run.log").read_text()
                                                         .splitlines(keepends=True)[-15:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
