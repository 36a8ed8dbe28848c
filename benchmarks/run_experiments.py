"""Run the paper's eight experiments and collect their results under one folder.

    python benchmarks/run_experiments.py --preset full --out /tmp/experiments --collect $OUT/experiments
    bash benchmarks/gpu.sh run_experiments --preset full --workers gpu --out /tmp/experiments --collect $OUT/collect

`--workers gpu`: one run process per 7.5 GiB of GPU memory, at most one per core (a full-preset run of the micro
model holds ~7 GiB at its peak: 16 processes on one 80 GB H100 ran out of memory).

With 8 or more cores, the experiments that train on different tasks (efficiency, continual, zero-reward) run at
the same time, each pinned to its share of the cores; the others then reuse efficiency's runs from the cache
(out/runs) and train or evaluate only what they add. With fewer cores everything runs one after the other. `--collect DIR` copies the results (results.md, summary.json, PNGs, report.html — not the
runs and checkpoints) to DIR and writes DIR/ALL.md, all results.md files in one page. The ablations (k-sweep,
t-sweep) run only when `--only` names them, after the others.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

FIRST_WAVE = {"efficiency": 0.5, "continual": 0.25, "zero-reward": 0.25}  # share of the workers each gets
SECOND_WAVE = ["asymptote", "kl", "decomposition", "ood", "plasticity", "k-sweep", "t-sweep"]
EIGHT = ["efficiency", "asymptote", "kl", "decomposition", "ood", "plasticity", "continual", "zero-reward"]
ORDER = EIGHT + ["k-sweep", "t-sweep"]  # the ablations only when asked for (--only)


GIB_PER_WORKER = 7.5


def workers_arg(text: str) -> int | str:
    if text == "gpu":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or 'gpu', got {text!r}") from None


def gpu_workers() -> int:
    """One worker per GIB_PER_WORKER of the GPUs' memory (nvidia-smi), at most one per core."""
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit("--workers gpu: nvidia-smi found no GPU") from None
    return max(1, min(int(sum(float(mib) for mib in listed) / 1024 / GIB_PER_WORKER), len(os.sched_getaffinity(0))))


def command(name: str, args, workers: int | None) -> list[str]:
    return [sys.executable, "-c", "import sys; from fastslow.cli import parse_overrides; "
            "from fastslow.experiments import run_experiment as r; "
            "r(sys.argv[1], sys.argv[2] or None, seeds=int(sys.argv[3]), preset=sys.argv[4], out=sys.argv[5], "
            "workers=int(sys.argv[6]) if sys.argv[6] else None, runs_from=sys.argv[7] or None, "
            "overrides=parse_overrides(sys.argv[8:]))",
            name, args.config or "", str(args.seeds), args.preset, str(args.out), str(workers or ""),
            str(args.runs_from or ""), *args.set]


def start(name: str, args, cores: list[int], workers: int | None) -> subprocess.Popen:
    """The experiment in its own process, pinned to `cores` (its worker processes inherit the pinning)."""
    return subprocess.Popen(command(name, args, workers), preexec_fn=lambda: os.sched_setaffinity(0, cores))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="full")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--config", default=None, help="base run config (default: the micro model)")
    parser.add_argument("--out", type=Path, default=Path("experiments/full"))
    parser.add_argument("--workers", type=workers_arg, default=None,
                        help="worker processes, or 'gpu': one per 7.5 GiB of GPU memory (default: the experiments' own)")
    parser.add_argument("--collect", type=Path, default=None)
    parser.add_argument("--only", nargs="*", default=None, choices=ORDER, metavar="EXPERIMENT",
                        help="run only these experiments (default the eight claims; also k-sweep, t-sweep)")
    parser.add_argument("--runs-from", type=Path, default=None, metavar="DIR",
                        help="analyse runs trained elsewhere, found in DIR by their config: train nothing")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a run config field in every run, e.g. --set loop.rollout_allocation=signal")
    args = parser.parse_args()
    if args.workers == "gpu":
        args.workers = gpu_workers()
        print(f"== {args.workers} workers", flush=True)
    wanted = set(args.only or EIGHT)
    args.out.mkdir(parents=True, exist_ok=True)
    started, failed = time.perf_counter(), []

    def collect(name: str) -> None:
        # as soon as the experiment ends, so a time limit that stops this runner keeps what finished
        source, target = args.out / name, args.collect / name
        if (source / "results.md").is_file():
            target.mkdir(parents=True, exist_ok=True)
            for file in source.iterdir():
                if file.suffix in (".md", ".json", ".png", ".html"):
                    shutil.copy2(file, target / file.name)

    def wait_all(procs: dict[str, subprocess.Popen]) -> None:
        for name, proc in procs.items():
            if proc.wait() != 0:
                failed.append(name)
            print(f"== {name}: exit {proc.returncode} after {(time.perf_counter() - started) / 60:.1f} min", flush=True)
            if args.collect:
                collect(name)

    cores = sorted(os.sched_getaffinity(0))
    first = {n: share for n, share in FIRST_WAVE.items() if n in wanted}
    if len(cores) >= 8 and len(first) > 1:  # disjoint core sets: no oversubscription
        procs, at = {}, 0
        for i, (name, share) in enumerate(first.items()):
            count = len(cores) - at if i == len(first) - 1 else max(1, round(len(cores) * share / sum(first.values())))
            mine = cores[at:at + count]
            at += count
            workers = args.workers and max(1, round(args.workers * len(mine) / len(cores)))  # None: its default
            procs[name] = start(name, args, mine, workers)
        wait_all(procs)
    else:
        for name in first:
            wait_all({name: start(name, args, cores, args.workers)})
    for name in [n for n in SECOND_WAVE if n in wanted]:
        wait_all({name: start(name, args, cores, args.workers)})

    if args.collect:  # experiments are collected as they finish, so a time limit keeps what finished
        pages = []
        for name in [n for n in ORDER if n in wanted]:
            results = args.collect / name / "results.md"
            pages.append(results.read_text().replace("](", f"]({name}/") if results.is_file()
                         else f"# {name}\n\nfailed: no results.md\n")
        args.collect.mkdir(parents=True, exist_ok=True)
        (args.collect / "ALL.md").write_text("\n\n---\n\n".join(pages))
    print(f"== done in {(time.perf_counter() - started) / 60:.1f} min; failed: {failed or 'none'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
