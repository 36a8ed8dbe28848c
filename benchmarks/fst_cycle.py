"""One FST cycle on CPU with the micro model: T=6 RL steps, K=4 prompts, G=8 rollouts, 16 problems per step,
GEPA with the default budget (5 passes over the 96-problem anchor set), reflection by the micro model itself.
Prints a table of seconds per phase (target from issue #3: the whole cycle <= 60 s on 2 CPU cores).

    python benchmarks/fst_cycle.py [--task strings] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="strings")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-passes", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    from fastslow.config import parse_config
    from fastslow.loop import run

    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config({
            "name": "bench", "output_dir": tmp, "model": {"path": "micro", "max_new_tokens": 24},
            "task": {"name": args.task, "train_size": 96, "val_size": 8},
            "loop": {"steps": 6, "steps_per_cycle": 6, "population_size": 4, "rollouts_per_problem": 8,
                     "problems_per_step": 16},
            "rl": {"learning_rate": 1e-4}, "gepa": {"budget_passes": args.budget_passes},
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
    print(f"| what | value |\n|---|---|")
    print(f"| threads | {args.threads} |")
    print(f"| RL rollouts | {rows[-1]['rl_rollouts']} |")
    print(f"| GEPA rollouts (incl. re-scoring) | {rows[-1]['fast_rollouts']} |")
    print(f"| reflection calls | {population['reflection_calls']} |")
    for key, seconds in sums.items():
        print(f"| {key} | {seconds:.1f} |")
    print(f"| whole cycle incl. evaluation at step 0 and 6 (s) | {total:.1f} |")


if __name__ == "__main__":
    main()
