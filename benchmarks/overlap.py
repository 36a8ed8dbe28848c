"""Asynchronous FST (issue 23): what `loop.fast_phase: overlap` costs per step against RL and FST (sync), where each
cycle's time goes, and what it reaches per training problem, per rollout sampled and per second.

    python benchmarks/overlap.py time --task JSON --out DIR [--steps 60] [--preset full|small] [--set K=V ...]
    python benchmarks/overlap.py summary --time DIR [DIR ...] [--accuracy DIR] [--out FILE]

time     RL, FST (sync), FST (overlap) and FST (overlap + reuse) on one task, one seed (`--set seed=N` for
         another), one after another in this process (after an unmeasured warm-up run), so each has the device to
         itself: wall clock per step (evaluations left out) and a per-cycle timeline (the trainer's slow phase, its
         wait for the fast phase, the worker's busy time beside the previous cycle). The sizes are
         benchmarks/confident_prompts.py's (the full preset), so its accuracy runs and these timings describe the
         same runs. Writes DIR/time.md, DIR/time.json and DIR/runs/ARM, each arm's run directory (kept: a run that
         crashes or is cut off keeps its metrics).
summary  joins a `time` directory with the accuracy runs of `python benchmarks/confident_prompts.py --arms rl fst
         fst-overlap fst-overlap-reuse` (3 seeds; those share the device, so their own clocks are not used), or
         reads several `time --evaluate` directories, one seed each (`--time DIR_S0 DIR_S1 DIR_S2`):
         running best validation accuracy (mean and spread over seeds) at matched training problems, at matched
         rollouts sampled (fast phase included) and at matched wall clock (each arm's seconds per step measured alone),
         and the time until the mean running best reaches RL's final one.
`--tiny`: a few small steps, to check the wiring on a CPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from confident_prompts import ARMS as ACCURACY_ARMS  # noqa: E402  (light: argparse, json, numpy)

ARMS = {name: ACCURACY_ARMS[name] for name in ("rl", "fst", "fst-lean", "fst-overlap", "fst-overlap-reuse",
                                                "fst-overlap-n16", "fst-overlap-lean")}
DEFAULT_ARMS = ["rl", "fst", "fst-overlap", "fst-overlap-reuse"]


def config_for(task: dict, arm: str, steps: int | None, tiny: bool, out: Path, extra: dict, name: str,
               evaluate: bool = False, preset: str = "full"):
    from confident_prompts import base_config

    from fastslow.config import parse_config
    from fastslow.experiments.presets import PRESETS

    settings = {k: v for k, v in ARMS[arm].items() if k != "mode"}
    extra = dict(extra)
    seed = int(extra.pop("seed", 0))  # --set seed=N: another seed of the same measurement
    task = extra.pop("task", None) or task  # a whole task given as an override (--random-shape, --set task=...)
    light = {} if evaluate else {"eval.every": 10_000, "task.val_size": 8, "eval.samples": 1, "eval.kl_prompts": 0}
    sizes = {} if preset == "full" else {**PRESETS[preset]["overrides"], "rl.bf16": False}  # confident_prompts: full
    data = base_config(tiny, {**sizes, **({"loop.steps": steps} if steps else {}), **settings, **extra, **light},
                       copy.deepcopy(task))
    data.update(name=name, mode=ARMS[arm]["mode"], seed=seed, output_dir=str(out))
    return parse_config(data)


def timeline(rows: list[dict], populations: dict[int, dict]) -> list[dict]:
    """Per cycle: the trainer's seconds in slow phase (RL steps, evaluation), running the fast phase itself, and
    waiting for the worker; and the worker's busy seconds on the population this cycle used (it ran beside the
    previous cycle)."""
    cycles: dict[int, dict] = {}
    for before, row in zip(rows, rows[1:]):
        c = cycles.setdefault(row["cycle"], {"cycle": row["cycle"], "trainer s": 0.0, "fast phase here s": 0.0,
                                             "waited s": 0.0, "evaluation s": 0.0})
        c["trainer s"] += row["wall_time"] - before["wall_time"]
        c["fast phase here s"] += row.get("fast_phase_s") or 0.0
        c["waited s"] += row.get("fast_phase_wait_s") or 0.0
        c["evaluation s"] += row.get("seconds_eval") or 0.0
    for c in cycles.values():
        c["slow phase s"] = c["trainer s"] - c["fast phase here s"] - c["waited s"] - c["evaluation s"]
        c["worker busy s"] = populations.get(c["cycle"], {}).get("seconds") if populations else None
    return list(cycles.values())


def measure(config) -> dict:
    from fastslow.loop import run

    start = time.perf_counter()
    path = Path(run(config))
    total = time.perf_counter() - start
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    populations = {int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in (path / "population").glob("cycle-*.json")}
    return {**step_seconds(rows), "rollouts sampled": rows[-1]["rl_rollouts"] + rows[-1]["fast_rollouts"],
            "run total incl. setup (s)": total, "timeline": timeline(rows, populations), "rows": rows}


def step_seconds(rows: list[dict]) -> dict:
    """Seconds per step from a run's metrics rows (step 0 first), its evaluations left out: they are the same work in
    every arm, and at Qwen3-1.7B's shape one light evaluation (8 problems, 512 tokens) costs most of an RL step.
    Also after cycle 0, whose fast phase nothing can hide: what each further cycle costs (a long run's price)."""
    def per_step(before: dict, steps: list[dict]) -> float:
        evaluation = sum(row.get("seconds_eval") or 0.0 for row in steps)
        return (steps[-1]["wall_time"] - before["wall_time"] - evaluation) / len(steps)

    first = next((i for i, row in enumerate(rows) if row["cycle"] >= 1), None)
    return {"seconds per step": per_step(rows[0], rows[1:]),
            "seconds per step after cycle 0": per_step(rows[first - 1], rows[first:]) if first else None}


def random_model_run(shape: str, folder: Path) -> dict:
    """Overrides for a model of a real shape with random weights (no download; benchmarks/random_model.py), the micro
    tokenizer with a token for every id the model samples (so its answers and reflections are text), a synthetic
    task whose rewards always vary, and long completions: where generation dominates."""
    import torch
    from random_model import TINY_VOCAB, VOCAB, decodable, random_qwen3

    from fastslow.policy import load_tokenizer

    vocab = VOCAB if shape != "tiny" else TINY_VOCAB
    tokenizer = decodable(load_tokenizer("micro"), vocab)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = random_qwen3(shape, tokenizer, torch.bfloat16 if device == "cuda" else torch.float32, device, vocab)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # 8 rows per micro-batch: at 16 the trainer's update (54.8 GiB) and the overlap worker (24.3 GiB) did not fit one
    # 80 GB card at Qwen3-1.7B's shape (docs/RESULTS.md, issue 23)
    return {"model.path": str(folder), "model.max_new_tokens": 512, "reflection.kind": "self",
            "reflection.template": "gepa", "reflection.max_new_tokens": 256, "rl.micro_batch_rows": 8,
            "task": {"name": "random_model:AlternatingRewardTask", "args": {"prompt_chars": 200}}}


def time_arms(args) -> None:
    from fastslow.cli import parse_overrides

    import torch

    extra = parse_overrides(args.set)
    if args.random_shape:
        extra = {**random_model_run(args.random_shape, Path(tempfile.mkdtemp()) / args.random_shape), **extra}
    if args.task is None and "task" not in extra:
        raise SystemExit("overlap.py time: give --task or --random-shape")
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    results = {}
    args.out.mkdir(parents=True, exist_ok=True)
    runs = args.out / "runs"  # each arm's run directory stays: a run that crashes or is cut off keeps its metrics
    with tempfile.TemporaryDirectory() as tmp:
        # not measured: the first run in a process pays one-time costs (CUDA's context, kernels, imports)
        if args.warm_up_steps:
            measure(config_for(args.task, "rl", args.warm_up_steps, args.tiny, Path(tmp), extra, "warm-up",
                               preset=args.preset))
        for arm in args.arms:
            print(f"{arm}: running (metrics in {runs / arm})", flush=True)
            shutil.rmtree(runs / arm, ignore_errors=True)  # an earlier measurement's
            results[arm] = measure(config_for(args.task, arm, args.steps, args.tiny, runs, extra, arm,
                                              args.evaluate, args.preset))
            print(f"{arm}: {results[arm]['seconds per step']:.3f} s per step "
                  f"({results[arm]['run total incl. setup (s)']:.0f} s in all)", flush=True)
            write_tables(args, results, extra, device)  # after every arm: a run cut short by a time limit keeps them
    print((args.out / "time.md").read_text())


def write_tables(args, results: dict, extra: dict, device: str) -> None:
    rl = results["rl"]["seconds per step"] if "rl" in results else float("nan")
    rl_steady = (results["rl"]["seconds per step after cycle 0"] or float("nan")) if "rl" in results else float("nan")
    steps = len(next(iter(results.values()))["rows"]) - 1
    lines = [f"{steps} steps, {device}, {time.strftime('%Y-%m-%d %H:%M')}, task {json.dumps(args.task)}"
             + "".join(f", --set {k}={v}" for k, v in extra.items()), "",
             "| arm | s/step | × RL | s/step after cycle 0 | × RL | rollouts sampled | run incl. setup (s) |",
             "|---|---|---|---|---|---|---|"]
    for arm, r in results.items():
        steady = r["seconds per step after cycle 0"] or float("nan")
        lines.append(f"| {arm} | {r['seconds per step']:.3f} | **{r['seconds per step'] / rl:.2f}** | "
                     f"{steady:.3f} | **{steady / rl_steady:.2f}** | "
                     f"{r['rollouts sampled']} | {r['run total incl. setup (s)']:.1f} |")
    keys = ["cycle", "trainer s", "slow phase s", "fast phase here s", "waited s", "evaluation s", "worker busy s"]
    for arm, r in results.items():
        if arm != "rl":
            lines += ["", f"Timeline, {arm} (worker busy: on the population this cycle used, beside the previous one)",
                      "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join("—" if c[k] is None else f"{c[k]:.2f}" if isinstance(c[k], float) else str(c[k])
                                        for k in keys) + " |" for c in r["timeline"]]
    (args.out / "time.md").write_text("\n".join(lines) + "\n")
    (args.out / "time.json").write_text(json.dumps({"task": args.task, "device": device, "arms": {
        arm: {k: v for k, v in r.items() if k != "rows"} for arm, r in results.items()}}, indent=1))


def curves(run_dir: Path, seconds_per_step: float) -> dict[str, np.ndarray]:
    """A run's running best validation accuracy at its evaluations, against problems, rollouts and seconds."""
    from fastslow import stats
    from fastslow.report import load_run

    rows = [r for r in load_run(run_dir).rows if r.get("val_accuracy") is not None]
    return {"problems": np.array([r["samples"] for r in rows], float),
            "rollouts": np.array([r["rl_rollouts"] + r["fast_rollouts"] for r in rows], float),
            "seconds": np.array([r["step"] * seconds_per_step for r in rows], float),
            "best": stats.running_max(np.array([r["val_accuracy"] for r in rows], float))}


def at(curve: dict, axis: str, x: float) -> float:
    """The running best reached by `x` on `axis` (the last evaluation at or before it; NaN if none)."""
    reached = curve["best"][curve[axis] <= x + 1e-9]
    return float(reached[-1]) if len(reached) else float("nan")


def summarise(args) -> str:
    timings = [json.loads((folder / "time.json").read_text())["arms"] for folder in args.time]
    timing = {arm: {"seconds per step": float(np.mean([t[arm]["seconds per step"] for t in timings if arm in t]))}
              for arm in timings[0]}  # over the `time` folders given (seeds of one measurement)
    if args.accuracy is not None:  # the runs where they now lie (the file names the GPU machine's paths)
        runs = {arm: [args.accuracy / "runs" / Path(p).name for p in paths] for arm, paths in
                json.loads((args.accuracy / "confident_prompts.json").read_text()).items()}
    else:  # the `time` runs themselves, one seed each (`time --evaluate --set seed=N`)
        runs = {arm: [folder / "runs" / arm for folder in args.time] for arm in timing}
    per_arm = {arm: [curves(d, timing[arm]["seconds per step"]) for d in dirs] for arm, dirs in runs.items()
               if arm in timing}
    rl = per_arm["rl"]
    ends = {axis: min(c[axis][-1] for c in rl) for axis in ("problems", "rollouts", "seconds")}
    rl_final = float(np.mean([c["best"][-1] for c in rl]))
    lines = [f"RL's final running best (mean of {len(rl)} seeds): {rl_final:.3f}; matched at RL's end: "
             f"{ends['problems']:.0f} problems, {ends['rollouts']:.0f} rollouts, {ends['seconds']:.1f} s", "",
             "| arm | s/step alone | × RL | acc @ matched problems | @ matched rollouts | @ matched wall clock | "
             "time to RL's final acc (s) |", "|---|---|---|---|---|---|---|"]
    for arm, cs in per_arm.items():
        cells = []
        for axis in ("problems", "rollouts", "seconds"):
            values = [at(c, axis, ends[axis]) for c in cs]
            cells.append(f"{np.nanmean(values):.3f} ± {np.nanstd(values):.3f}")
        grid = np.unique(np.concatenate([c["seconds"] for c in cs]))
        mean_best = np.array([np.mean([at(c, "seconds", s) for c in cs]) for s in grid])
        reached = grid[mean_best >= rl_final - 1e-9]
        seconds, to_rl = timing[arm]["seconds per step"], f"{reached[0]:.1f}" if len(reached) else "never"
        lines.append(f"| {arm} | {seconds:.3f} | {seconds / timing['rl']['seconds per step']:.2f} | "
                     + " | ".join(cells) + f" | {to_rl} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("time", help="each arm alone on the device: seconds per step and a per-cycle timeline")
    t.add_argument("--task", type=json.loads, default=None, metavar="JSON", help="a task config with its seed prompt")
    t.add_argument("--random-shape", default=None, choices=["qwen3-1.7b", "qwen3-4b", "tiny"],
                   help="instead of a task: random weights of this shape, 512-token completions of a synthetic task "
                   "(step time only: nothing is learnt)")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--steps", type=int, default=None, help="RL steps per run (default: the full preset's 60)")
    t.add_argument("--arms", nargs="*", default=DEFAULT_ARMS, choices=list(ARMS))
    t.add_argument("--warm-up-steps", type=int, default=2, help="RL steps of the unmeasured first run (0: none; "
                   "--random-shape builds its model on the device first, which pays the one-time costs already)")
    t.add_argument("--preset", default="full", choices=["full", "small"],
                   help="sizes: full (benchmarks/confident_prompts.py's, for a GPU) or small (2 CPU cores, fp32)")
    t.add_argument("--threads", type=int, default=None, help="torch threads of the training process (CPU)")
    t.add_argument("--tiny", action="store_true", help="a few small steps (checks the wiring)")
    t.add_argument("--evaluate", action="store_true", help="evaluate as the accuracy runs do (the full preset: every "
                   "6 steps, 64 problems x 4 samples), so these runs give one seed's accuracy against wall clock; "
                   "default: a light evaluation at the end only")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override in every run")
    s = sub.add_parser("summary", help="accuracy per problem, rollout and second, and time to RL's final accuracy")
    s.add_argument("--time", type=Path, nargs="+", required=True, help="`time` output directories (seconds per step: "
                   "their mean)")
    s.add_argument("--accuracy", type=Path, default=None, help="a benchmarks/confident_prompts.py output directory "
                   "(default: the `time` directories' own runs, measured with --evaluate, one seed each)")
    s.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    if args.command == "time":
        time_arms(args)
    else:
        text = summarise(args)
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
