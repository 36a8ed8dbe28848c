"""`accelerate launch` with one process per GPU on a tiny random model (docs/DESIGN.md, "Several GPUs"): short rl and
fst runs, and rl on a task where no problem has reward variance (every process trains on one zero-weight row and must
not hang); then, under DDP on the GPUs, the update's gradient with shared prompt prefixes against TRL's whole-row pass
(full fine-tuning and LoRA, tests/ddp_shared_prefix_worker.py).

    bash benchmarks/gpu.sh ddp_smoke                 # device kind nvidia-h100-x2 (or any with 2+ GPUs)
    python benchmarks/ddp_smoke.py --cpu --runs rl:ShortAnswerTask --no-gradient-check   # the wiring, on CPU (gloo)

Prints per run its exit code, how many metrics rows it wrote and its last row; exit 1 if anything failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ["rl:ShortAnswerTask", "fst:ShortAnswerTask", "rl:ConstantRewardTask"]  # mode:task of tests/doubles.py


def config(name: str, mode: str, task: str, model: str, out: str) -> dict:
    return {"name": name, "mode": mode, "output_dir": out, "model": {"path": model, "max_new_tokens": 8},
            "task": {"name": f"doubles:{task}", "train_size": 64, "val_size": 8},
            "loop": {"steps": 4, "steps_per_cycle": 2, "problems_per_step": 4, "rollouts_per_problem": 4,
                     "population_size": 2},
            "rl": {"learning_rate": 1.0e-3, "warmup_steps": 0}, "gepa": {"budget_passes": 2},
            "reflection": {"kind": "self", "max_new_tokens": 16}, "eval": {"every": 2, "samples": 2, "kl_prompts": 4}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2, help="processes (one per GPU)")
    parser.add_argument("--runs", nargs="*", default=RUNS, metavar="MODE:TASK", help="runs, each a mode and a task")
    parser.add_argument("--no-gradient-check", action="store_true", help="leave out the shared-prefix gradient check")
    parser.add_argument("--cpu", action="store_true", help="CPU processes (gloo) instead of one per GPU")
    parser.add_argument("--timeout-s", type=float, default=240.0, help="per launch: a hang fails, it does not block")
    args = parser.parse_args()
    import yaml

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_model import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="ddp_smoke_"))
    model = build_tiny_model(work / "tiny")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
           "NCCL_NVLS_ENABLE": "0", **({"ACCELERATE_USE_CPU": "1"} if args.cpu else {})}
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.processes)]
              if args.cpu else  # as the tests run several CPU processes
              [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(args.processes), "--multi_gpu"])
    failed = []

    def run(label: str, command: list[str], cwd: Path) -> subprocess.CompletedProcess | None:
        try:
            done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=args.timeout_s)
        except subprocess.TimeoutExpired:
            print(f"== {label}: timed out after {args.timeout_s:.0f} s (a hang)", flush=True)
            failed.append(label)
            return None
        if done.returncode != 0:
            failed.append(label)
        tail = [line for line in (done.stdout + done.stderr).splitlines() if "Warning" not in line][-8:]
        print("\n".join(tail) + f"\n== {label}: exit {done.returncode}", flush=True)
        return done

    for spec in args.runs:
        mode, _, task = spec.partition(":")
        name = f"ddp-{mode}-{task}"
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config(name, mode, task, model, str(work / "runs"))))
        # from tests/, so that the `doubles:` tasks import
        if run(name, [*launch, "-m", "fastslow", "run", str(path)], ROOT / "tests") is not None:
            metrics = work / "runs" / name / "metrics.jsonl"
            rows = metrics.read_text().splitlines() if metrics.is_file() else []
            print(f"   {len(rows)} metrics rows; last: {json.dumps(json.loads(rows[-1]))[:400] if rows else '-'}")
    if not args.no_gradient_check:
        for flags in ([], ["--lora"]):
            run(f"shared-prefix gradient check {' '.join(flags)}".strip(),
                [*launch, str(ROOT / "tests/ddp_shared_prefix_worker.py"), *flags], ROOT)
    print(f"== failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
