"""One FST cycle on CPU with the micro model: T=6 RL steps, K=4 prompts, G=8 rollouts, 16 problems per step,
GEPA with the default budget (5 passes over the 96-problem anchor set), reflection by the micro model itself.
Prints a table of seconds per phase (target from issue #3: the whole cycle <= 60 s on 2 CPU cores).

    python benchmarks/fst_cycle.py [--task strings] [--threads 2] [--proposals 1 4 8] [--bf16]

`--proposals` compares GEPA proposals per iteration (gepa.proposals_per_iteration; default 4, as in the micro
presets and the demo; the library's default is GEPA's 1): with more than one, an iteration's rollouts and
reflection calls go out as one batched generation each.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="strings")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-passes", type=float, default=5.0)
    parser.add_argument("--proposals", type=int, nargs="+", default=[4])
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (rl.bf16), for CPUs with bf16 instructions")
    args = parser.parse_args()
    import torch  # after the arguments: --help answers at once

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    rows = [cycle(args, proposals) for proposals in args.proposals]
    print("| what | " + " | ".join(f"{p} proposal(s) per iteration" for p in args.proposals) + " |")
    print("|---|" + "---|" * len(rows))
    for key in rows[0]:
        print(f"| {key} | " + " | ".join(str(r[key]) for r in rows) + " |")


def cycle(args, proposals: int) -> dict:
    from fastslow.config import parse_config
    from fastslow.loop import run

    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config({
            "name": "bench", "output_dir": tmp, "model": {"path": "micro", "max_new_tokens": 24},
            "task": {"name": args.task, "train_size": 96, "val_size": 8},
            "loop": {"steps": 6, "steps_per_cycle": 6, "population_size": 4, "rollouts_per_problem": 8,
                     "problems_per_step": 16},
            "rl": {"learning_rate": 1e-4, "bf16": args.bf16},
            "gepa": {"budget_passes": args.budget_passes, "proposals_per_iteration": proposals},
            "reflection": {"kind": "self", "max_new_tokens": 96},
            "eval": {"every": 1000, "samples": 1, "kl_prompts": 0},
        })
        start = time.perf_counter()
        path = run(config)
        total = time.perf_counter() - start
        rows = [json.loads(line) for line in (Path(path) / "metrics.jsonl").read_text().splitlines()][1:]
        population = json.loads((Path(path) / "population" / "cycle-0.json").read_text())
    sums = {k: sum(r.get(k) or 0.0 for r in rows) for k in ("seconds_generate", "seconds_score", "seconds_reflect",
                                                            "seconds_update")}
    return {
        "torch threads": args.threads,
        "bf16 autocast": args.bf16,
        "RL rollouts": rows[-1]["rl_rollouts"],
        "GEPA rollouts (incl. re-scoring)": rows[-1]["fast_rollouts"],
        "reflection calls": population["reflection_calls"],
        "GEPA children among the K kept prompts": sum(m["parent"] is not None for m in population["members"]),
        "problems with reward variance (trained on), of 96": sum(r.get("kept_problems") or 0 for r in rows),
        **{key: f"{seconds:.1f}" for key, seconds in sums.items()},
        "**whole cycle incl. evaluation at steps 0 and 6 (s)**": f"**{total:.1f}**",
    }


if __name__ == "__main__":
    main()
