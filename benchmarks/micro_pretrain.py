"""Pretrain micro models on one GPU, side by side, then evaluate them (docs/MICRO.md): what trained micro-v4 and its
reflector (issue 13), and what continues the reflector (issue 24).

    python benchmarks/micro_pretrain.py --minutes 5 --collect $OUT/models             # v4 and the reflector
    python benchmarks/micro_pretrain.py --models reflector --minutes 5 --screen       # the reflector alone
    bash benchmarks/gpu.sh micro_pretrain --models reflector --extra reflector="--init /tmp/reflector"

Each model is `fastslow micro pretrain` with the options below and --compile (`--extra NAME="..."` appends to them;
later options win), all at once on the card, the cores split between their data workers. Then `fastslow micro eval` of each
trained model (micro-v4 with the new reflector and with `micro` as its reflector, the reflector's own v3 abilities),
and with --screen the task-suite screen of micro-v4 (benchmarks/task_suite.py). The checkpoints and logs go to
--collect (a checkpoint is ~20 MB: gpu.sh packs and splits them into 15 MB parts that come back).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {  # the commands of 2026-12-01 (docs/MICRO.md, "v4 and its reflector, trained")
    "v4": "--version v4 --batch-size 512 --lr 0.002 --warmup 200 --seed 0",
    "reflector": "--version reflector --init fastslow/micro/model --batch-size 256 --lr 0.0005 --warmup 100 --seed 2",
}


def extra_arg(text: str) -> tuple[str, str]:
    name, sep, options = text.partition("=")
    if not sep or name not in MODELS:
        raise argparse.ArgumentTypeError(f"expected NAME=\"OPTIONS\" with NAME one of {sorted(MODELS)}, got {text!r}")
    return name, options


def fastslow(*args: str, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "fastslow", *args], stdout=out, stderr=subprocess.STDOUT,
                                cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--minutes", type=float, default=5.0, help="each model trains about this long")
    parser.add_argument("--steps", type=int, default=None, help="each model takes this many steps instead")
    parser.add_argument("--extra", type=extra_arg, action="append", default=[], metavar='NAME="OPTIONS"',
                        help="more `fastslow micro pretrain` options for one model")
    parser.add_argument("--no-compile", action="store_true", help="leave out --compile (e.g. a check on a CPU)")
    parser.add_argument("--eval-n", type=int, default=100, help="cases per measurement of `fastslow micro eval`")
    parser.add_argument("--screen", action="store_true", help="then screen the task suite with the trained v4")
    parser.add_argument("--out", type=Path, default=Path("/tmp/micro_pretrain"), help="checkpoints are written here")
    parser.add_argument("--collect", type=Path, default=None,
                        help="checkpoints, logs and evaluations (default: $OUT/models, else OUT/collect)")
    args = parser.parse_args()
    collect = args.collect or (Path(os.environ["OUT"]) / "models" if os.environ.get("OUT") else args.out / "collect")
    logs = collect / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    workers = max(1, os.cpu_count() // len(args.models) - 2)
    extra = {name: [] for name in args.models}
    for name, options in args.extra:
        extra.setdefault(name, []).extend(shlex.split(options))

    length = ["--steps", str(args.steps)] if args.steps else ["--minutes", str(args.minutes)]
    procs = {name: fastslow("micro", "pretrain", "--out", str(args.out / name), *length,
                            "--workers", str(workers), *shlex.split(MODELS[name]),
                            *([] if args.no_compile else ["--compile"]), *extra[name],
                            log=logs / f"pretrain_{name}.log") for name in args.models}
    failed = [name for name, proc in procs.items() if proc.wait() != 0]
    for name in args.models:
        print(f"== pretrain {name}: exit {procs[name].returncode}\n"
              + "\n".join((logs / f"pretrain_{name}.log").read_text().splitlines()[-2:]), flush=True)
        if name not in failed:
            shutil.copytree(args.out / name, collect / name, dirs_exist_ok=True)

    trained = {name: str(args.out / name) for name in args.models if name not in failed}
    evaluations = {}  # label -> `fastslow micro eval` options (on the GPU where there is one)
    if "v4" in trained and "reflector" in trained:
        evaluations["v4_new_reflector"] = ["--model", trained["v4"], "--reflector", trained["reflector"]]
    if "v4" in trained:
        evaluations["v4_micro_reflects"] = ["--model", trained["v4"], "--reflector", "micro"]
    if "reflector" in trained:
        evaluations["reflector"] = ["--model", trained["reflector"]]
    for label, options in evaluations.items():
        code = fastslow("micro", "eval", *options, "--n", str(args.eval_n), log=logs / f"eval_{label}.md").wait()
        print(f"== eval {label}: exit {code}", flush=True)
    if args.screen and "v4" in trained:
        with open(logs / "suite.md", "w") as out:
            code = subprocess.run([sys.executable, str(ROOT / "benchmarks/task_suite.py"), "--model", trained["v4"],
                                   "--json", str(logs / "suite.json")], stdout=out, stderr=subprocess.STDOUT).returncode
        print(f"== task suite screen: exit {code}\n" + "\n".join((logs / "suite.md").read_text().splitlines()[-4:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
