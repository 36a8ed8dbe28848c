"""Where a fast phase's time goes, as the overlap worker runs it: a fresh process builds the worker's policy copy,
task and reflection LM (fastslow.fast.worker), then runs cycle 0's fast phase twice (the first pays what a fresh
process pays once) under cProfile, and prints each run's clocks (generation, scoring, reflection, rounds) and the
profile's top entries by cumulative time.

    python benchmarks/fast_phase_profile.py --task "$(python benchmarks/suite.py task 0)" \\
        --set model.path=micro-v4 --set model.max_new_tokens=48 --set reflection.kind=local --set reflection.model=micro

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
    parser.add_argument("--task", type=json.loads, required=True, metavar="JSON", help="a task config")
    parser.add_argument("--preset", default="full", choices=["full", "small"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="run config overrides")
    parser.add_argument("--top", type=int, default=30, help="profile entries shown per run")
    parser.add_argument("--out", type=Path, default=Path("/tmp/fast_phase_profile"))
    args = parser.parse_args()

    import cProfile
    import io
    import pstats

    import torch
    from overlap import config_for

    from fastslow.cli import parse_overrides
    from fastslow.data import DataPlan
    from fastslow.fast.gepa_driver import FastJob, FastPhaseSettings
    from fastslow.fast.phase import WorkerSpec
    from fastslow.fast.population import Member
    from fastslow.fast.worker import build_fast_phase
    from fastslow.tasks import load_task

    config = config_for(args.task, "fst-overlap", None, False, args.out, parse_overrides(args.set), "profile",
                        preset=args.preset)
    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else None
    started = time.perf_counter()
    fast = build_fast_phase(WorkerSpec(config, FastPhaseSettings.of(config), args.out / "scratch", None, device, None))
    print(f"worker built in {time.perf_counter() - started:.1f} s on {device or 'CPU'}", flush=True)
    task = load_task(config.task.name, **config.task.args)
    plan = DataPlan(task.problems("train", config.task.train_size, config.seed), config.loop.problems_per_step,
                    config.loop.steps_per_cycle, config.seed)
    anchors = plan.anchor_set(0, config.loop.steps)
    seed_prompt = config.task.seed_prompt or task.seed_prompt
    for attempt in ("first", "second"):
        job = FastJob(0, [Member("seed", seed_prompt)], anchors, config.gepa.budget(len(anchors)), seed=config.seed)
        fast.phase.scratch = args.out / f"scratch-{attempt}"
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        result = fast.run(job)
        profile.disable()
        total = time.perf_counter() - started
        print(f"\n## {attempt} run: {total:.2f} s; generation {result.seconds_generate:.2f}, scoring "
              f"{result.seconds_score:.2f}, reflection {result.seconds_reflect:.2f}, rounds {result.rounds}, "
              f"reflection calls {result.reflection_calls} ({result.reflection_failures} failed)", flush=True)
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(args.top)
        print(text.getvalue(), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
