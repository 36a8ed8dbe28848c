"""FST against RL in the paper's regime: a valid but weak seed prompt with an RL signal from the first step (issue 12).

    python benchmarks/confident_prompts.py --out /tmp/confident --seeds 3            # the GPU machine: all arms
    python benchmarks/confident_prompts.py --out /tmp/confident --tiny --arms rl fst  # a CPU check of the wiring

Task: micro string program `program_seed: 24` (keep every other letter, sort, move the first 3 letters to the end),
seed prompt with the right operations and the first two swapped: 5.5% exact for the base model, 11% of problems
with reward variance; its exact instruction gives 68%. Full-preset sizes: 16 problems x G=8, K=4, T=6, GEPA 2 passes
with 4 proposals per iteration, 60 steps (960 training samples), rl.learning_rate 1e-4, 2 warm-up steps, bf16,
the micro model reflecting on itself. Arms (each 3 seeds, sharing the data plan per seed):

    rl, fst                 the paper's recipe
    fst-keep                loop.keep_signal_member: the member with the most within-prompt signal (first the seed
                            prompt) stays in the population
    rl-hot, fst-hot         sampling temperature 1.3
    fst-signal              keep_signal_member and loop.rollout_allocation: signal
    fst-member              rl.advantage_baseline: member alone
    fst-remedy              all three: advantage_baseline member, rollout_allocation signal, keep_signal_member
    fst-skip                gepa.skip_repeats: proposals that repeat their parent are dropped before GEPA scores them
    fst-reuse               loop.reuse_fast_rollouts (4 proposals per GEPA iteration, as fst)
    fst-reuse-n1, -n16      the same with 1 (classic GEPA: one proposal per round) or 16 proposals per iteration
    fst-overlap             loop.fast_phase: overlap (the next cycle's fast phase beside this cycle's RL steps)
    fst-overlap-reuse       overlap and loop.reuse_fast_rollouts (benchmarks/overlap.py joins these with step times)
    fst-overlap-n16         overlap with 16 proposals per GEPA iteration: fewer, larger rounds, so the fast phase fits
                            beside T RL steps where each generation call is latency-bound
    fst-lean, -overlap-lean fst and fst-overlap-n16 with gepa.reuse_anchor_rollouts: a round's parents evaluated on
                            the re-score's rollouts, one generation call fewer per round

Prints, per arm and seed: best val accuracy by the last step, KL to base at the end, the evaluation entropy under
the best prompt after cycle 0, the mean within-prompt signal and gradient norm; then the mean (over seeds) running
best val accuracy at every evaluation, the matched-sample comparison of each arm with RL. Runs are cached under
OUT/runs (a rerun trains only what is missing, resuming a run that was stopped). With --limit-s the runs still
training then are stopped at a safe point and the tables describe what every run reached (the per-run table's
`steps` says how far each got; the matched table ends where the shortest run did).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

TASK = {"name": "strings", "args": {"program_seed": 24},
        "seed_prompt": "Sort the letters, then keep every other letter, then move the first 3 letters to the end."}
ARMS = {
    "rl": {"mode": "rl"},
    "fst": {"mode": "fst"},
    "fst-keep": {"mode": "fst", "loop.keep_signal_member": True},
    "rl-hot": {"mode": "rl", "model.temperature": 1.3},
    "fst-hot": {"mode": "fst", "model.temperature": 1.3},
    "fst-signal": {"mode": "fst", "loop.keep_signal_member": True, "loop.rollout_allocation": "signal"},
    "fst-member": {"mode": "fst", "rl.advantage_baseline": "member"},
    "fst-remedy": {"mode": "fst", "rl.advantage_baseline": "member", "loop.keep_signal_member": True,
                   "loop.rollout_allocation": "signal"},
    "fst-skip": {"mode": "fst", "gepa.skip_repeats": True},
    "fst-reuse": {"mode": "fst", "loop.reuse_fast_rollouts": True},
    "fst-reuse-n1": {"mode": "fst", "loop.reuse_fast_rollouts": True, "gepa.proposals_per_iteration": 1},
    "fst-reuse-n16": {"mode": "fst", "loop.reuse_fast_rollouts": True, "gepa.proposals_per_iteration": 16},
    "fst-overlap": {"mode": "fst", "loop.fast_phase": "overlap"},
    "fst-overlap-reuse": {"mode": "fst", "loop.fast_phase": "overlap", "loop.reuse_fast_rollouts": True},
    "fst-overlap-n16": {"mode": "fst", "loop.fast_phase": "overlap", "gepa.proposals_per_iteration": 16},
    "fst-lean": {"mode": "fst", "gepa.reuse_anchor_rollouts": True},
    "fst-overlap-lean": {"mode": "fst", "loop.fast_phase": "overlap", "gepa.proposals_per_iteration": 16,
                         "gepa.reuse_anchor_rollouts": True},
}
SIZES = {"loop.steps": 60, "task.train_size": 960, "rl.bf16": True, "model.share_prefixes": False}  # on the full preset
TINY = {"loop.steps": 4, "loop.steps_per_cycle": 2, "loop.problems_per_step": 4, "loop.rollouts_per_problem": 4,
        "loop.population_size": 2, "task.train_size": 32, "task.val_size": 8, "eval.every": 2, "eval.samples": 2,
        "eval.kl_prompts": 4, "gepa.budget_passes": 3.0, "rl.bf16": False}


def base_config(tiny: bool, extra: dict, task: dict = TASK) -> dict:
    from fastslow.experiments.presets import MICRO_BASE, PRESETS

    base = copy.deepcopy(MICRO_BASE)
    base["task"] = copy.deepcopy(task)
    for key, value in {**PRESETS["full"]["overrides"], **SIZES, **(TINY if tiny else {}), **extra}.items():
        section, _, leaf = key.rpartition(".")
        node = base
        for part in section.split(".") if section else []:
            node = node.setdefault(part, {})
        node[leaf] = value
    return base


def arm_rows(label: str, run_dirs: list[Path], steps_per_cycle: int) -> list[list[str]]:
    from fastslow.report import load_run

    rows = []
    for seed, path in enumerate(run_dirs):
        run = load_run(path)
        _, accuracy = run.series("step", "val_accuracy")
        after_cycle0 = next((r for r in run.rows if r["step"] == steps_per_cycle and r.get("entropy") is not None), {})
        signal = [r["within_prompt_signal"] or 0.0 for r in run.rows if r.get("kept_problems") is not None]
        grad = [r["grad_norm"] for r in run.rows if r.get("grad_norm") is not None]
        last = run.rows[-1]
        rounds = (last.get("fast_rounds") or 0) / (last["cycle"] + 1)
        rows.append([label, run.config.get("seed", seed), run.last("step"), f"{accuracy.max():.2f}",
                     f"{run.last('kl_base'):.2f}",
                     f"{after_cycle0.get('entropy', float('nan')):.3f}",
                     f"{np.mean(signal):.2f}" if signal else "—", f"{np.mean(grad):.3g}" if grad else "—",
                     f"{last['wall_time'] / max(last['step'], 1):.2f}", f"{rounds:.1f}",
                     last["rl_rollouts"] + last["fast_rollouts"]])
    return rows


def mean_running_best(run_dirs: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds at the evaluations every run reached (a run cut short by a time limit ends early)."""
    from fastslow import stats
    from fastslow.experiments.common import series

    curves = [series(d, "samples", "val_accuracy") for d in run_dirs]
    reached = min(cx[-1] for cx, _ in curves)
    x = max((cx for cx, _ in curves), key=len)
    x = x[x <= reached]
    return x, np.mean([np.interp(x, cx, stats.running_max(cy)) for cx, cy in curves], axis=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--tiny", action="store_true", help="a few steps at toy sizes: checks the wiring on a CPU")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override in every run")
    parser.add_argument("--task", type=json.loads, default=TASK, metavar="JSON",
                        help="the task config with its seed prompt (default: issue 12's), e.g. one of a suite's tasks")
    parser.add_argument("--limit-s", type=float, default=None,
                        help="stop the runs still training after this many seconds (on the GPU machine: gpu.sh's "
                        "LIMIT_S less ~60 s), then write the tables of what they reached")
    parser.add_argument("--tables-only", action="store_true",
                        help="train nothing: tables of the runs already in OUT/runs (e.g. brought back from the GPU)")
    args = parser.parse_args()
    from fastslow.cli import parse_overrides  # after the arguments: --help answers at once
    from fastslow.experiments.common import Experiment, default_workers, markdown_table

    base = base_config(args.tiny, parse_overrides(args.set), args.task)
    exp = Experiment("confident-prompts", "full", args.seeds, args.out, base, {}, args.workers or default_workers(),
                     " ".join(["python benchmarks/confident_prompts.py", *sys.argv[1:]]))
    if args.tables_only:  # run names are <arm>-<mode>-s<seed>-<hash of config and model files>
        runs = {arm: [next(iter(sorted(exp.runs_root.glob(f"{arm}-{ARMS[arm]['mode']}-s{seed}-*"))))
                      for seed in range(args.seeds)] for arm in args.arms}
    else:
        configs = {arm: [exp.config(ARMS[arm]["mode"], seed, arm, **{k: v for k, v in ARMS[arm].items() if k != "mode"})
                         for seed in range(args.seeds)] for arm in args.arms}
        dirs = exp.train([c for arm in args.arms for c in configs[arm]], args.limit_s)
        runs = {arm: [d for d in dirs[i * args.seeds:(i + 1) * args.seeds] if (d / "metrics.jsonl").is_file()]
                for i, arm in enumerate(args.arms)}  # a run the limit stopped before it started has nothing
        missing = [arm for arm in args.arms if not runs[arm]]
        if missing:
            print(f"no run started in time for: {', '.join(missing)}")
            args.arms = [arm for arm in args.arms if runs[arm]]
    T = base["loop"]["steps_per_cycle"]

    table = markdown_table(["arm", "seed", "steps", "best val acc", "KL to base at the end", "entropy under the best prompt "
                            "after cycle 0", "mean within-prompt signal", "mean grad norm", "s/step (incl. evaluation)",
                            "fast rounds/cycle", "rollouts sampled"],
                           [row for arm in args.arms for row in arm_rows(arm, runs[arm], T)])
    curves = {arm: mean_running_best(runs[arm]) for arm in args.arms}
    x = min((curves[arm][0] for arm in args.arms), key=len)  # the sample counts every arm reached
    curves = {arm: (x, curve[: len(x)]) for arm, (_, curve) in curves.items()}
    matched = markdown_table(["samples", *args.arms], [[int(s), *(f"{curves[a][1][i]:.3f}" for a in args.arms)]
                                                       for i, s in enumerate(x)])
    verdicts = []
    if "rl" in curves:
        for arm in args.arms:
            if arm.startswith("fst"):
                gap = curves[arm][1] - curves["rl"][1]
                verdicts.append(f"- {arm}: running best >= RL's at {int((gap >= 0).sum())} of {len(gap)} matched sample "
                                f"counts (worst gap {gap.min():+.3f} at {int(x[gap.argmin()])} samples)")
    text = "\n".join(["## Per run\n", table, "## Running best val accuracy, mean of seeds, at matched samples\n",
                      matched, *verdicts, ""])
    (args.out / "confident_prompts.md").write_text(text)
    (args.out / "confident_prompts.json").write_text(json.dumps({a: [str(d) for d in runs[a]] for a in args.arms}))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
