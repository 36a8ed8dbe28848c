"""Train the reflector on (issue 24) and measure it against today's, in one GPU call.

    bash benchmarks/gpu.sh train_reflector          (device: one H100 or H200, carry [".whl"]; ~7 minutes in all)
    python benchmarks/train_reflector.py --steps 2 --batch-size 4 --eval-n 2 --device cpu --out /tmp/smoke  (smoke test)

1. `fastslow micro pretrain --version reflector2 --init fastslow/micro/model ...`: today's reflector (`micro`) trained
   on, on the reflector2 corpus (fastslow.micro.corpus: string programs first), into a scratch folder.
2. Four `fastslow micro eval`s side by side, one process each, the same cases for both reflectors: micro-v4 with the
   new reflector and with today's (`reflector_improves`, its copies, the near-miss reflections), and each reflector's
   own abilities (v3's: instructions on held-out and pretraining programs, counting, cipher, star graphs).
3. The rule (`verdict`): the new checkpoint replaces fastslow/micro/model only if its `reflector_improves` is higher
   than today's on the same cases and it keeps v3's abilities: each within 0.03 of today's, the seed prompt still
   <= 0.15 on held-out programs and star graphs still 0 under it.
4. $OUT: `reflector.tar.part-*` (the checkpoint in 15 MB parts: `cat reflector.tar.part-* | tar -x -C DIR` gives
   DIR/reflector), `train_reflector.json` (training command and losses, every evaluation, the verdict, timings);
   gpu.sh adds the log (hardware lines first) and packs the rest into results.tgz.part-* (`cat results.tgz.part-* |
   tar xz` first). Replacing is done by hand, after reading the verdict:
   `cp DIR/reflector/* fastslow/micro/model/`.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

TODAY = "micro"  # today's reflector: fastslow/micro/model
POLICY = "micro-v4"
PART_BYTES = 15 * 1024 * 1024  # the device returns files of at most 16 MiB
# v3's abilities (fastslow micro eval's rows: name, prompt): kept means within TOLERANCE of today's
ABILITIES = [("strings, held-out programs", "instruction"), ("strings, pretraining programs (2-3 ops)", "instruction"),
             ("counting", "instruction"), ("cipher (best expressible instruction)", "instruction"),
             ("stargraph", "instruction")]
TOLERANCE = 0.03  # about 1.5 standard errors of a rate near 0.95 on 100 cases
LIMITS = {("strings, held-out programs", "seed prompt"): 0.15, ("stargraph", "seed prompt"): 0.0}  # at most


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/out")),
                        help="where the checkpoint parts and train_reflector.json go (default $OUT)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/train_reflector"), help="scratch folder")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=4.5,
                        help="training time, compilation included (default 4.5: the call takes ~7 minutes)")
    length.add_argument("--steps", type=int, default=None, help="optimizer steps instead of --minutes")
    parser.add_argument("--version", default="reflector2", help="corpus (fastslow micro pretrain --version)")
    parser.add_argument("--init", default="fastslow/micro/model", help="checkpoint to train on (today's reflector)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=3, help="seeds the corpus (the reflector's own run used 2)")
    parser.add_argument("--workers", type=int, default=None, help="corpus workers (default: cores - 2)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--eval-n", type=int, default=200,
                        help="`micro eval --n` for micro-v4 with each reflector (n/2 reflection cases; default 200)")
    parser.add_argument("--abilities-n", type=int, default=None,
                        help="`micro eval --n` for each reflector's own abilities (default: half of --eval-n)")
    args = parser.parse_args(argv)
    if args.steps is not None:
        args.minutes = None
    return args


def pretrain_command(args: argparse.Namespace, checkpoint: Path, device: str) -> list[str]:
    return ([sys.executable, "-m", "fastslow", "micro", "pretrain", "--out", str(checkpoint), "--version", args.version,
             "--init", args.init, "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--warmup", str(args.warmup),
             "--seed", str(args.seed), "--device", device]
            + (["--minutes", str(args.minutes)] if args.steps is None else ["--steps", str(args.steps)])
            + (["--workers", str(args.workers)] if args.workers is not None else [])
            + (["--compile"] if device.startswith("cuda") else []))


def evaluate(model: str, n: int, device: str, reflector: str | None) -> dict:
    """One `fastslow micro eval` (in a worker process)."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 4) // 4))
    from fastslow.micro.evaluate import evaluate_micro

    started = time.perf_counter()
    results = evaluate_micro(model, n=n, seed=0, device=device, reflector_path=reflector)
    return {"model": model, "reflector": reflector, "n": n, "summary": results["summary"],
            "rows": [list(row) for row in results["rows"]], "reflection_examples": results["reflection_examples"],
            "seconds": round(time.perf_counter() - started, 1)}


def row_value(evaluation: dict, name: str, prompt: str) -> float | None:
    return next((score for row_name, row_prompt, score, _ in evaluation["rows"] if (row_name, row_prompt) == (name, prompt)),
                None)


def standard_error(rate: float | None, cases: int) -> float | None:
    return None if rate is None or cases == 0 else math.sqrt(rate * (1 - rate) / cases)


def verdict(new_with_v4: dict, today_with_v4: dict, new_alone: dict, today_alone: dict) -> dict:
    """Whether the new reflector replaces today's: a higher `reflector_improves` on the same cases, and v3's
    abilities kept (ABILITIES within TOLERANCE of today's, LIMITS under the seed prompt)."""
    new, today = new_with_v4["summary"]["reflector_improves"], today_with_v4["summary"]["reflector_improves"]
    reasons = [] if new > today else [f"reflector_improves {new:.3f} is not above today's {today:.3f}"]
    for name, prompt in ABILITIES:
        a, b = row_value(new_alone, name, prompt), row_value(today_alone, name, prompt)
        if a < b - TOLERANCE:
            reasons.append(f"{name} ({prompt}) fell from {b:.2f} to {a:.2f}")
    for (name, prompt), limit in LIMITS.items():
        a = row_value(new_alone, name, prompt)
        if a > limit:
            reasons.append(f"{name} ({prompt}) is {a:.2f}, above {limit:.2f}")
    return {"replace": not reasons, "why_not": reasons,
            "rule": f"reflector_improves above today's on the same cases; {', '.join(n for n, _ in ABILITIES)} "
                    f"(instruction) each within {TOLERANCE} of today's; " +
                    ", ".join(f"{n} ({p}) <= {limit}" for (n, p), limit in LIMITS.items())}


def pack(checkpoint: Path, out: Path, name: str = "reflector") -> list[str]:
    """The checkpoint folder as a tar in parts of PART_BYTES: out/<name>.tar.part-aa, -ab, ..."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(checkpoint, arcname=name)
    data, parts = buffer.getvalue(), []
    for i, start in enumerate(range(0, len(data), PART_BYTES)):
        part = out / f"{name}.tar.part-a{chr(ord('a') + i)}"
        part.write_bytes(data[start:start + PART_BYTES])
        parts.append(part.name)
    return parts


def table(evaluations: dict[str, dict]) -> str:
    """The rows that decide, side by side (markdown)."""
    keys = ["reflector_improves", "reflector_copies", "near_miss_reflector_improves", "near_miss_reflector_copies",
            "near_miss_reflector_near_copies"]
    lines = ["| measure | new | today's |", "|---|---|---|"]
    for key in keys:
        new, today = (evaluations[f"{who}_with_v4"]["summary"][key] for who in ("new", "today"))
        lines.append(f"| {key} (micro-v4's failures) | {new:.3f} | {today:.3f} |")
    for name, prompt in ABILITIES + list(LIMITS):
        new, today = (row_value(evaluations[f"{who}_alone"], name, prompt) for who in ("new", "today"))
        lines.append(f"| {name}, {prompt} | {new:.2f} | {today:.2f} |")
    for name in ("reflection_improves", "reflection_copies", "near_miss_reflection_improves"):
        new, today = (evaluations[f"{who}_alone"]["summary"][name] for who in ("new", "today"))
        lines.append(f"| {name} (on its own failures) | {new:.3f} | {today:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.work / "reflector"
    started = time.perf_counter()
    command = pretrain_command(args, checkpoint, device)
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)
    trained = time.perf_counter() - started
    parts = pack(checkpoint, args.out)
    print(f"trained in {trained:.0f} s; checkpoint in {args.out}: {', '.join(parts)}", flush=True)

    abilities_n = args.abilities_n or max(2, args.eval_n // 2)
    jobs = {"new_with_v4": (POLICY, args.eval_n, device, str(checkpoint)),
            "today_with_v4": (POLICY, args.eval_n, device, TODAY),
            "new_alone": (str(checkpoint), abilities_n, device, None),
            "today_alone": (TODAY, abilities_n, device, None)}
    with ProcessPoolExecutor(len(jobs), mp_context=get_context("spawn")) as pool:
        futures = {label: pool.submit(evaluate, *job) for label, job in jobs.items()}
        evaluations = {label: future.result() for label, future in futures.items()}
    decided = verdict(evaluations["new_with_v4"], evaluations["today_with_v4"], evaluations["new_alone"],
                      evaluations["today_alone"])
    cases = evaluations["new_with_v4"]["summary"]["reflection_cases"]
    log = json.loads((checkpoint / "pretrain_log.json").read_text())
    result = {
        "command": " ".join(["python benchmarks/train_reflector.py", *(argv if argv is not None else sys.argv[1:])]),
        "pretrain": {k: v for k, v in log.items() if k != "init"},
        "reflector_improves": {who: {"rate": evaluations[f"{who}_with_v4"]["summary"]["reflector_improves"],
                                     "standard_error": standard_error(
                                         evaluations[f"{who}_with_v4"]["summary"]["reflector_improves"], cases),
                                     "cases": cases} for who in ("new", "today")},
        "verdict": decided, "evaluations": evaluations,
        "seconds": {"training": round(trained, 1), "total": round(time.perf_counter() - started, 1),
                    **{label: e["seconds"] for label, e in evaluations.items()}},
    }
    (args.out / "train_reflector.json").write_text(json.dumps(result, indent=1) + "\n")
    print(table(evaluations))
    print(f"reflector_improves: new {result['reflector_improves']['new']['rate']:.3f} ± "
          f"{result['reflector_improves']['new']['standard_error']:.3f}, today's "
          f"{result['reflector_improves']['today']['rate']:.3f} ± "
          f"{result['reflector_improves']['today']['standard_error']:.3f} ({cases} cases)")
    print("verdict: " + ("REPLACE fastslow/micro/model" if decided["replace"] else "keep today's: "
                         + "; ".join(decided["why_not"])))
    print(f"total {result['seconds']['total']:.0f} s (training {trained:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
