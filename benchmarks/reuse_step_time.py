"""Wall clock per RL step of RL, FST and FST with rollout reuse (loop.reuse_fast_rollouts), on the same data plan.

    python benchmarks/reuse_step_time.py [--preset full] [--steps 12] [--threads 2] [--out DIR] [--tiny] [--set K=V]
                                         [--proposals N [N ...]]

The runs are the efficiency experiment's (the micro model reflecting on itself, its default task) at a preset's
sizes (fastslow.experiments.presets), one seed, one after the other in this process, after an unmeasured warm-up
run. A step's wall clock is the time between two metrics rows, so the cycle's fast phase (re-scoring, GEPA,
reflection) falls on its first step; evaluation is cut to 8 problems x 1 sample, run only at steps 0 and the last.
The process's CPU time per step is measured too: on a shared machine it depends less on what else runs. Prints a
markdown table; with --out, writes it to DIR/results.md and keeps each run's directory under DIR/runs (a run that
crashes or is cut off keeps its metrics there). `--tiny`: a few small steps, to check the script
quickly. `--set KEY=VALUE` changes every run's config last, e.g. the policy and reflection LM of micro world v4
(`--set model.path=micro-v4 --set reflection.kind=local --set reflection.model=micro`) or the task
(`--set 'task={name: code, args: {ops: 3}}'`). `--proposals 1 16` adds a run of FST with reuse at each of those
`gepa.proposals_per_iteration` (the fast phase's rounds per cycle go down as it goes up: `fast rounds per cycle`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

VARIANTS = {"rl": ("rl", False), "fst": ("fst", False), "fst + reuse": ("fst", True)}
TINY = {"loop.steps": 2, "loop.steps_per_cycle": 2, "loop.problems_per_step": 4, "loop.rollouts_per_problem": 4,
        "loop.population_size": 2, "task.train_size": 16, "gepa.budget_passes": 3.0, "model.max_new_tokens": 8,
        "reflection.max_new_tokens": 16}


def config_for(preset: str, mode: str, reuse: bool, steps: int | None, tiny: bool, out: Path, bf16: bool,
               extra: dict | None = None, name: str | None = None):
    from fastslow.config import parse_config, set_dotted
    from fastslow.experiments import presets

    data = copy.deepcopy(presets.MICRO_BASE)
    data["task"] = copy.deepcopy(presets.SETTINGS["efficiency"]["task"])
    overrides = {**presets.preset(preset)["overrides"], "eval.every": 10_000, "task.val_size": 8, "eval.samples": 1,
                 "eval.kl_prompts": 0, "loop.reuse_fast_rollouts": reuse, "rl.bf16": bf16,
                 **({"loop.steps": steps} if steps else {}), **(TINY if tiny else {}), **(extra or {})}
    for key, value in overrides.items():
        set_dotted(data, key, value)
    data.update(name=name or f"{mode}{'-reuse' if reuse else ''}", mode=mode, seed=0, output_dir=str(out))
    return parse_config(data)


def measure(config) -> dict:
    from fastslow.loop import run

    cpu_at_row = []  # this process's CPU seconds (all threads) when each metrics row is logged
    start = time.perf_counter()
    path = run(config, observer=lambda row: cpu_at_row.append(time.process_time()))
    total = time.perf_counter() - start
    rows = [json.loads(line) for line in (Path(path) / "metrics.jsonl").read_text().splitlines()]
    steps = rows[1:]
    wall = [b["wall_time"] - a["wall_time"] for a, b in zip(rows, steps)]
    cpu = [b - a for a, b in zip(cpu_at_row, cpu_at_row[1:])]
    later = [w for w, r in zip(wall, steps) if r["cycle"] >= 1]  # cycle 0 re-scores only the seed prompt

    def per_step(key: str) -> float:
        return sum(r.get(key) or 0.0 for r in steps) / len(steps)

    ratios = [r["importance_ratio_mean"] for r in steps if r.get("importance_ratio_mean") is not None]
    capped = [r["importance_capped_share"] for r in steps if r.get("importance_capped_share") is not None]
    generated = steps[-1]["rl_rollouts"] + steps[-1]["fast_rollouts"]
    return {
        "seconds per RL step": sum(wall) / len(wall),
        "CPU seconds per RL step": sum(cpu) / len(cpu),
        "seconds per step, cycles >= 1": sum(later) / len(later) if later else float("nan"),
        "generate + score (s/step)": per_step("seconds_generate") + per_step("seconds_score"),
        "reflect (s/step)": per_step("seconds_reflect"),
        "fast rounds per cycle": steps[-1]["fast_rounds"] / (steps[-1]["cycle"] + 1),
        "update (s/step)": per_step("seconds_update"),
        "rollouts sampled per step (RL + GEPA)": generated / len(steps),
        "of the RL rollouts, reused per step": per_step("reused_rollouts") if config.mode == "fst" else 0.0,
        "importance ratio mean (reused tokens)": sum(ratios) / len(ratios) if ratios else float("nan"),
        "share of reused tokens capped": sum(capped) / len(capped) if capped else float("nan"),
        "run total incl. setup (s)": total,
        "_rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full", help="sizes: a preset of fastslow.experiments.presets")
    parser.add_argument("--steps", type=int, default=None, help="RL steps per run (default: the preset's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--bf16", action="store_true", help="rl.bf16 (bf16 autocast)")
    parser.add_argument("--out", type=Path, default=None, help="write results.md here, and keep the runs under runs/")
    parser.add_argument("--tiny", action="store_true", help="a few small steps (checks the script)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override in every run")
    parser.add_argument("--proposals", type=int, nargs="*", default=[],
                        help="also FST with reuse at each of these gepa.proposals_per_iteration")
    args = parser.parse_args()
    import torch  # after the arguments: --help answers at once

    from fastslow.cli import parse_overrides

    extra = parse_overrides(args.set)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    variants = {name: (mode, reuse, {}) for name, (mode, reuse) in VARIANTS.items()}
    variants |= {f"fst + reuse, n={n}": ("fst", True, {"gepa.proposals_per_iteration": n}) for n in args.proposals}
    results = {}
    runs = args.out / "runs" if args.out else None
    with tempfile.TemporaryDirectory() as tmp:
        # a 2-step run first, not measured: the first run in a process pays one-time costs (CUDA's context and
        # kernels, imports) that would otherwise land on whichever variant runs first (RL's steps: +50% on a GPU)
        measure(config_for(args.preset, "rl", False, 2, args.tiny, Path(tmp), args.bf16, extra, name="warm-up"))
        for name, (mode, reuse, own) in variants.items():
            run = "-".join("".join(c if c.isalnum() else " " for c in name).split())  # "fst + reuse, n=16": fst-reuse-n-16
            if runs:
                shutil.rmtree(runs / run, ignore_errors=True)  # an earlier measurement's
            results[name] = measure(config_for(args.preset, mode, reuse, args.steps, args.tiny, runs or Path(tmp),
                                               args.bf16, {**extra, **own}, name=run))
            print(f"{name}: {results[name]['seconds per RL step']:.2f} s per step", flush=True)
    rl = results["rl"]["seconds per RL step"]
    keys = [k for k in results["rl"] if not k.startswith("_")]
    steps = len(results["rl"]["_rows"]) - 1
    lines = [f"preset {args.preset}{' (tiny)' if args.tiny else ''}, {steps} steps, {device}, "
             f"load average before start {load:.1f}, {time.strftime('%Y-%m-%d %H:%M')}"
             + "".join(f", --set {k}={v}" for k, v in extra.items()), "",
             "| | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    rl_cpu = results["rl"]["CPU seconds per RL step"]
    lines.append("| **× RL per step** | " + " | ".join(f"**{r['seconds per RL step'] / rl:.2f}**"
                                                      for r in results.values()) + " |")
    lines.append("| × RL in CPU time (robust to other load) | " + " | ".join(
        f"{r['CPU seconds per RL step'] / rl_cpu:.2f}" for r in results.values()) + " |")
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(f"{r[key]:.2f}" for r in results.values()) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
