"""Where a fast phase's time goes, as the overlap worker runs it: a fresh process builds the worker's policy copy,
task and reflection LM (fastslow.fast.worker), then runs cycle 0's fast phase (`--runs` times; the first pays what a
fresh process pays once) under cProfile, and prints each run's clocks (generation, scoring, reflection, rounds),
every `generate` call it made (rows, longest prompt, new tokens, seconds: which sampling dominates a round) and the
profile's top entries by cumulative time.

    python benchmarks/fast_phase_profile.py --task "$(python benchmarks/suite.py task 0)" \\
        --set model.path=micro-v4 --set model.max_new_tokens=48 --set reflection.kind=local --set reflection.model=micro
    python benchmarks/fast_phase_profile.py --random-shape qwen3-1.7b --runs 1 --set gepa.proposals_per_iteration=16

Sizes: benchmarks/confident_prompts.py's (`--preset full`, for a GPU) or the small preset (`--preset small`, CPU).
Why: on one H100 the worker's first fast phase took 35-39 s of which its own clocks accounted for ~5 (issue 23).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", type=json.loads, default=None, metavar="JSON", help="a task config")
    parser.add_argument("--random-shape", default=None, choices=["qwen3-1.7b", "qwen3-4b", "tiny"],
                        help="instead of a task: random weights of this shape (benchmarks/overlap.py time's)")
    parser.add_argument("--runs", type=int, default=2, help="fast phases run one after another (default 2)")
    parser.add_argument("--preset", default="full", choices=["full", "small"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="run config overrides")
    parser.add_argument("--top", type=int, default=30, help="profile entries shown per run")
    parser.add_argument("--out", type=Path, default=Path("/tmp/fast_phase_profile"))
    args = parser.parse_args()

    import cProfile
    import io
    import pstats

    import torch
    from overlap import config_for, random_model_run

    from fastslow import shared_prefix
    from fastslow.cli import parse_overrides
    from fastslow.data import DataPlan
    from fastslow.fast.gepa_driver import FastJob, FastPhaseSettings
    from fastslow.fast.phase import WorkerSpec
    from fastslow.fast.population import Member
    from fastslow.fast.worker import build_fast_phase
    from fastslow.tasks import load_task

    extra = parse_overrides(args.set)
    if args.random_shape:
        extra = {**random_model_run(args.random_shape, args.out / args.random_shape), **extra}
    elif args.task is None:
        raise SystemExit("fast_phase_profile.py: give --task or --random-shape")
    config = config_for(args.task, "fst-overlap", None, False, args.out, extra, "profile", preset=args.preset)
    calls = record_generate_calls(shared_prefix)
    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else None
    started = time.perf_counter()
    fast = build_fast_phase(WorkerSpec(config, FastPhaseSettings.of(config), args.out / "scratch", None, device, None))
    print(f"worker built in {time.perf_counter() - started:.1f} s on {device or 'CPU'}", flush=True)
    task = load_task(config.task.name, **config.task.args)
    plan = DataPlan(task.problems("train", config.task.train_size, config.seed), config.loop.problems_per_step,
                    config.loop.steps_per_cycle, config.seed)
    anchors = plan.anchor_set(0, config.loop.steps)
    seed_prompt = config.task.seed_prompt or task.seed_prompt
    for attempt in range(1, args.runs + 1):
        calls.clear()
        print(f"\nrun {attempt}, each generate call as it ends (a run cut short still shows where its time went):\n\n"
              "| generate call | rows | longest prompt | new tokens | seconds |\n|---|---|---|---|---|", flush=True)
        job = FastJob(0, [Member("seed", seed_prompt)], anchors, config.gepa.budget(len(anchors)), seed=config.seed)
        fast.phase.scratch = args.out / f"scratch-{attempt}"
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        result = fast.run(job)
        profile.disable()
        total = time.perf_counter() - started
        print(f"\n## run {attempt}: {total:.2f} s; generation {result.seconds_generate:.2f}, scoring "
              f"{result.seconds_score:.2f}, reflection {result.seconds_reflect:.2f}, rounds {result.rounds}, "
              f"reflection calls {result.reflection_calls} ({result.reflection_failures} failed)", flush=True)
        print(f"| all {len(calls)} generate calls | {sum(c['rows'] for c in calls)} | | | "
              f"{sum(c['seconds'] for c in calls):.2f} |\n", flush=True)
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(args.top)
        print(text.getvalue(), flush=True)
    return 0


def record_generate_calls(shared_prefix) -> list[dict]:
    """Wrap `shared_prefix.generate` (every sampling of the policy and of a local reflection LM goes through it) so
    that each call appends its shape and seconds to the returned list."""
    import torch

    calls, generate = [], shared_prefix.generate

    def timed(model, prompts, *args, **kwargs):
        started = time.perf_counter()
        out = generate(model, prompts, *args, **kwargs)
        if out.is_cuda:
            torch.cuda.synchronize()
        calls.append({"rows": len(prompts), "prompt": max(map(len, prompts), default=0), "new": out.shape[1],
                      "seconds": time.perf_counter() - started})
        print(f"| {len(calls)} | {len(prompts)} | {calls[-1]['prompt']} | {out.shape[1]} | "
              f"{calls[-1]['seconds']:.2f} |", flush=True)
        return out

    shared_prefix.generate = timed
    return calls


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
