"""Validation accuracy of FST with and without rollout reuse (loop.reuse_fast_rollouts), RL for reference, at matched
training samples, over seeds.

    python benchmarks/reuse_accuracy.py [--preset small] [--seeds 3] [--out experiments/reuse] [--workers N]
                                        [--steps N] [--no-rl]

The efficiency experiment's runs (micro model, its default task, the preset's sizes; same data plan per seed):
runs are trained by fastslow.experiments (cached under OUT/runs). Per run: val accuracy at the last step, its running
peak, and its mean over all evaluations (every `eval.every` steps, so at matched samples); then the per-seed
difference reuse - no reuse, and what each run sampled and how long it took. Writes OUT/reuse/results.md.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("experiments/reuse"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="RL steps per run (default: the preset's; to check)")
    parser.add_argument("--no-rl", action="store_true", help="leave out the RL reference runs")
    args = parser.parse_args()
    from fastslow import stats  # after the arguments: --help answers at once
    from fastslow.config import set_dotted
    from fastslow.experiments import presets
    from fastslow.experiments.common import Experiment, default_workers, fmt, last_value, markdown_table, series
    from fastslow.report import load_run

    base = copy.deepcopy(presets.MICRO_BASE)
    settings = presets.experiment_settings("efficiency", args.preset, None)
    base["task"] = copy.deepcopy(settings["task"])
    for key, value in {**settings["overrides"], **({"loop.steps": args.steps} if args.steps else {})}.items():
        set_dotted(base, key, value)
    command = (f"python benchmarks/reuse_accuracy.py --preset {args.preset} --seeds {args.seeds} --out {args.out}"
               + (f" --steps {args.steps}" if args.steps else "") + (" --no-rl" if args.no_rl else ""))
    exp = Experiment("reuse", args.preset, args.seeds, args.out, base, settings, args.workers or default_workers(),
                     command)
    variants = {"fst": ("fst", False), "fst + reuse": ("fst", True), **({} if args.no_rl else {"rl": ("rl", False)})}
    configs = {name: [exp.config(mode, seed, tag="reuse" if reuse else None, **{"loop.reuse_fast_rollouts": reuse})
                      for seed in range(args.seeds)] for name, (mode, reuse) in variants.items()}
    started = time.perf_counter()
    dirs = dict(zip(configs, [exp.train(group) for group in configs.values()]))
    exp.say(f"trained in {time.perf_counter() - started:.0f}s")

    def per_run(run_dir: Path) -> dict[str, float]:
        _, accuracy = series(run_dir, "samples", "val_accuracy")
        rows = load_run(run_dir).rows
        steps = [r for r in rows if r["step"] > 0]
        ratios = [r["importance_ratio_mean"] for r in steps if r.get("importance_ratio_mean") is not None]
        capped = [r["importance_capped_share"] for r in steps if r.get("importance_capped_share") is not None]
        return {"final": float(accuracy[-1]), "peak": float(np.max(stats.running_max(accuracy))),
                "mean": float(np.mean(accuracy[1:])), "wall": float(last_value(run_dir, "wall_time")) / len(steps),
                "sampled": (last_value(run_dir, "rl_rollouts") or 0) + (last_value(run_dir, "fast_rollouts") or 0),
                "reused": sum(r.get("reused_rollouts") or 0 for r in steps),
                "ratio": float(np.mean(ratios)) if ratios else float("nan"),
                "capped": float(np.mean(capped)) if capped else float("nan")}

    measured = {name: [per_run(d) for d in group] for name, group in dirs.items()}
    keys = [("final", "val acc at the last step (%)", 100, 1), ("peak", "peak val acc, running max (%)", 100, 1),
            ("mean", "mean val acc over evaluations (%)", 100, 1), ("wall", "wall clock per step (s)", 1, 2),
            ("sampled", "rollouts sampled (RL + GEPA)", 1, 0), ("reused", "RL rollouts reused", 1, 0),
            ("ratio", "importance ratio mean (reused tokens)", 1, 3), ("capped", "share of reused tokens capped", 1, 4)]
    rows = [[label] + [fmt(stats.summarize([m[key] for m in measured[name]]), scale, digits) for name in measured]
            for key, label, scale, digits in keys]
    pairs = list(zip(measured["fst"], measured["fst + reuse"]))
    diffs = [[label, fmt(stats.summarize([b[key] - a[key] for a, b in pairs]), 100, 1)] for key, label, _, _ in keys[:3]]
    text = "\n".join([
        f"# FST with and without rollout reuse ({args.preset} preset, {args.seeds} seeds)", "",
        f"`{command}` — {time.strftime('%Y-%m-%d')}, training took {time.perf_counter() - started:.0f} s", "",
        markdown_table(["", *measured], rows), "",
        "Per seed, reuse minus no reuse (percentage points; mean ± std, min–max):", "",
        markdown_table(["", "fst + reuse − fst"], diffs), "",
        "Runs: " + ", ".join(f"{name} {[d.name for d in group]}" for name, group in dirs.items()), ""])
    exp.dir.mkdir(parents=True, exist_ok=True)
    (exp.dir / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
