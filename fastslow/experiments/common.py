"""What the eight experiments share: building run configs, training runs in parallel processes with a cache,
exporting and re-evaluating trained weights, plots and the results page.

Layout of an experiment folder `out/` (default `experiments/<preset>/`):
    out/runs/<run name>/       every training run, shared by all experiments (the cache: a run is trained once
                               per config; the name ends with a hash of the full config and of the model files)
    out/<experiment>/          results.md, summary.json, PNG plots, report.html, runs.json (labels -> run dirs)
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date
from multiprocessing import active_children, get_context
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from fastslow import report, stats
from fastslow.config import Config, load_config, parse_config, set_dotted
from fastslow.errors import FastSlowError

ReflectionLM = Callable[[str], str]


# ---------------------------------------------------------------- the experiment and its run configs


@dataclass
class Experiment:
    name: str
    preset: str
    seeds: int
    out: Path  # the folder shared by all experiments (holds runs/)
    base: dict[str, Any]  # run config (as a dict) before mode, seed and experiment-specific changes
    settings: dict[str, Any]  # experiment-specific settings (tasks, stages, ...): preset defaults + config's `experiment:`
    workers: int
    command: str  # how to rerun it, for results.md
    reflection_lm: ReflectionLM | None = None  # overrides config.reflection (tests; a library caller's own LM)
    runs_from: Path | None = None  # analyse runs trained elsewhere (e.g. on a GPU machine), found here: train nothing
    started: float = field(default_factory=time.perf_counter)

    @property
    def dir(self) -> Path:
        return self.out / self.name

    @property
    def runs_root(self) -> Path:
        return self.out / "runs"

    def say(self, message: str) -> None:
        print(f"[{self.name} {time.perf_counter() - self.started:6.0f}s] {message}", file=sys.stderr, flush=True)

    def config(self, mode: str, seed: int, tag: str | None = None, **overrides: Any) -> Config:
        """The run config for (mode, seed): the base config with dotted `overrides` (e.g. {"task.name": "counting"}),
        named `<tag or task>-<mode>-s<seed>-<hash>` under the shared runs folder."""
        data = copy.deepcopy(self.base)
        data.update(mode=mode, seed=seed)
        for key, value in overrides.items():
            set_dotted(data, key, copy.deepcopy(value))
        data.update(name="pending", output_dir=str(self.runs_root))
        config = parse_config(data, source=f"experiment {self.name}")
        label = _slug(tag or config.task.name)
        # runs trained elsewhere are found by content: no hash of this machine's model files (which may be absent)
        config.name = f"{label}-{mode}-s{seed}-{'elsewhere' if self.runs_from else config_hash(config)}"
        return config

    def train(self, configs: Sequence[Config], limit_s: float | None = None) -> list[Path]:
        """Train every config not trained before (in parallel processes); returns their run directories. Runs still
        training after `limit_s` seconds are stopped as by SIGTERM (at a safe point: a later call resumes them) and
        those not started are left; their directories hold what they wrote, or nothing. With `runs_from`, each
        config's finished run is looked up there instead, and nothing is trained."""
        if self.runs_from is not None:
            return [trained_elsewhere(c, self.runs_from) for c in configs]
        todo = [c for c in configs if not is_complete(c)]
        if len(todo) < len(configs):
            self.say(f"{len(configs) - len(todo)} of {len(configs)} runs already trained (cache: {self.runs_root})")
        jobs = [(c.model_dump(mode="json"), (c.run_dir / "config.yaml").is_file(), self.reflection_lm) for c in todo]
        labels = [c.name for c in todo]
        parallel(train_job, jobs, self.workers, self.say, labels, limit_s)
        return [c.run_dir for c in configs]

    def evaluate(self, jobs: Sequence[EvalJob]) -> list[list[float]]:
        """Accuracy of each job's model under each of its prompts (in parallel processes)."""
        labels = [job.label for job in jobs]
        return parallel(evaluate_job, [(job,) for job in jobs], self.workers, self.say, labels)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text.rsplit(":", 1)[-1].rsplit(".", 1)[-1])[:40]


def model_fingerprint(path: str) -> str:
    """Identifies the model's files (so a retrained micro model or a new export is not mistaken for an old one)."""
    from fastslow.models import resolve_model_path

    local = Path(resolve_model_path(path))
    if not local.is_dir():
        return path  # a hub id: its name is all we know
    parts = []
    for file in sorted(local.iterdir()):
        if file.is_file() and (file.suffix in (".json", ".safetensors", ".jinja", ".model") or file.name == "tokenizer.json"):
            info = file.stat()
            parts.append(f"{file.name}:{info.st_size}:{info.st_mtime_ns}")
    return ";".join(parts)


def config_hash(config: Config) -> str:
    data = config.model_dump(mode="json")
    data.pop("name"), data.pop("output_dir")
    text = json.dumps(data, sort_keys=True) + model_fingerprint(config.model.path)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def last_step(run_dir: Path) -> int | None:
    """The step of the last row of the run's metrics.jsonl; None where there is none (or it is cut off)."""
    metrics = run_dir / "metrics.jsonl"
    lines = [line for line in metrics.read_text().splitlines() if line.strip()] if metrics.is_file() else []
    try:
        return json.loads(lines[-1]).get("step") if lines else None
    except json.JSONDecodeError:
        return None


def is_complete(config: Config) -> bool:
    """The run directory holds a finished run: every step logged and a checkpoint written."""
    return (config.run_dir / "checkpoints" / "LATEST").is_file() and last_step(config.run_dir) == config.loop.steps


def trained_elsewhere(config: Config, root: Path) -> Path:
    """The finished run under `root` (at any depth) trained with `config`: the same mode and seed, the same
    config.yaml but for its name and folder, every step logged. Matched by content, not by the name's hash, which
    also fingerprints the model files of the machine that trained it, nor by the name's label (an older version
    named a sweep's default arm apart). Checkpoints are not needed (efficiency, asymptote, kl and the sweeps read
    metrics only; decomposition, ood and plasticity evaluate weights)."""
    def comparable(data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in data.items() if k not in ("name", "output_dir")}

    wanted = comparable(config.model_dump(mode="json"))
    prefix = config.name.rsplit("-", 1)[0] + "-"
    candidates = root.rglob(f"*-{config.mode}-s{config.seed}-*/config.yaml")
    near = []  # the same name up to the hash first: the likeliest near misses to name
    for path in sorted(candidates, key=lambda p: (not p.parent.name.startswith(prefix), str(p))):
        found = comparable(load_config(path).model_dump(mode="json"))
        if found != wanted:
            near.append(f"{path.parent.name} differs in {_first_difference(wanted, found)}")
        elif last_step(path.parent) != config.loop.steps:
            near.append(f"{path.parent.name} did not finish its {config.loop.steps} steps")
        else:
            return path.parent
    raise FastSlowError(f"--runs-from {root}: no finished run {prefix}* with this experiment's config"
                        + (f" ({'; '.join(near[:3])})" if near else ""))


def _first_difference(a: Any, b: Any, at: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{at}.{key}" if at else key)
    return f"{at} ({b!r}, here {a!r})"


# ---------------------------------------------------------------- parallel processes


def available_cpus() -> int:
    """Cores this process may run on (its affinity mask: a caller can hand an experiment a share of the machine)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """CPU: one process per two cores (each gets two torch threads). GPU: one per core, all sharing the GPU —
    a small model leaves it mostly idle, and the processes' Python overhead is the bottleneck."""
    import torch

    cpus = available_cpus()
    return cpus if torch.cuda.is_available() else max(1, cpus // 2)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries."""
    import torch

    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in listed.split(",") if g.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


def _init_worker(threads: int, gpus: list[str], counter) -> None:
    # One GPU per worker, round robin, set before torch touches CUDA: a run that sees several GPUs in one
    # process would be wrapped in nn.DataParallel, which TRL refuses.
    if gpus:
        with counter.get_lock():
            index, counter.value = counter.value, counter.value + 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    torch.set_num_threads(threads)


def parallel(function: Callable, jobs: Sequence[tuple], workers: int, say: Callable[[str], None],
             labels: Sequence[str], limit_s: float | None = None) -> list:
    """`function(*job)` for every job, in up to `workers` spawned processes (in this process when one suffices,
    at most one GPU is visible and there is no time limit), each worker on one GPU; results in job order. A job's
    error is raised here after the other jobs have finished. After `limit_s` seconds the jobs still running get
    SIGTERM, those not started are dropped, and both have None for a result."""
    if not jobs:
        return []
    workers = max(1, min(workers, len(jobs)))
    gpus = visible_gpus()
    if workers == 1 and len(gpus) <= 1 and limit_s is None:
        results = []
        for i, (job, label) in enumerate(zip(jobs, labels)):
            start = time.perf_counter()
            results.append(function(*job))
            say(f"{i + 1}/{len(jobs)} done: {label} ({time.perf_counter() - start:.0f}s)")
        return results
    threads = max(1, available_cpus() // workers)  # no oversubscription: it slows torch down many times
    context = get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(threads, gpus, context.Value("i", 0))) as pool:
        futures = {pool.submit(function, *job): label for job, label in zip(jobs, labels)}
        try:
            for done, future in enumerate(as_completed(futures, timeout=limit_s), start=1):
                say(f"{done}/{len(jobs)} done: {futures[future]}" + (" (failed)" if future.exception() else ""))
        except TimeoutError:
            unfinished = [label for future, label in futures.items() if not future.done()]
            say(f"time limit of {limit_s:.0f} s: stopping {len(unfinished)} unfinished ({', '.join(unfinished)})")
            pool.shutdown(wait=False, cancel_futures=True)
            stop(active_children())  # the pool's workers: each job stops at a safe point (train_job)
            return [future.result() if future.done() and not future.cancelled() and future.exception() is None
                    else None for future in futures]
        return [future.result() for future in futures]  # dicts keep insertion (job) order


def stop(processes, grace_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL for any still alive `grace_s` later."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def train_job(config_data: dict[str, Any], resume: bool, reflection_lm: ReflectionLM | None) -> str:
    from fastslow.loop import run
    from fastslow.stopping import stop_on_signals

    with stop_on_signals():  # SIGTERM (a time limit): the run stops at a safe point, resumable
        return str(run(parse_config(config_data), resume=resume, reflection_lm=reflection_lm))


# ---------------------------------------------------------------- trained weights, re-evaluated


def exported_model(run_dir: Path) -> Path:
    """The run's final weights as a plain HF model directory (made once, kept in the run directory)."""
    from fastslow.export import export_run

    out = run_dir / "export"
    if not (out / "config.json").is_file():
        export_run(run_dir, out)
    return out


def final_prompt(run_dir: Path) -> str:
    """The best prompt of the run's last checkpoint."""
    from fastslow.checkpoint import latest_checkpoint

    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is None:
        raise FastSlowError(f"{run_dir}: no checkpoint (the run did not finish a cycle, or was copied without it)")
    return json.loads((checkpoint / "state.json").read_text())["best_prompt"]


SEED_PROMPT, INSTRUCTION = "task.seed_prompt", "task.instruction"  # prompts named by what the task says


@dataclass
class EvalJob:
    """Accuracy (mean@samples on the val split) of one model under several prompts on one task."""

    label: str
    model_path: str
    tokenizer_path: str  # the base model's: an export's chat template would add its own default system prompt
    task: dict[str, Any]  # {"name": ..., "args": {...}}
    prompts: list[str]  # texts, or SEED_PROMPT / INSTRUCTION
    val_size: int
    split_seed: int
    samples: int
    sampling: dict[str, Any]
    seed: int
    dtype: str = "auto"


def eval_job(config: Config, label: str, model_path: str | Path, prompts: list[str], task: dict | None = None,
             step: int | None = None) -> EvalJob:
    """An EvalJob that measures like the run's own evaluation at `step` (default: the last): same val split,
    samples, sampling and sampling seed — so the run's weights and best prompt reproduce its logged accuracy."""
    step = config.loop.steps if step is None else step
    return EvalJob(label, str(model_path), config.model.path, task or {"name": config.task.name, "args": config.task.args},
                   prompts, config.task.val_size, config.seed, config.eval.samples,
                   {"max_new_tokens": config.model.max_new_tokens, "temperature": config.model.temperature,
                    "top_p": config.model.top_p, "chat_template_kwargs": config.model.chat_template_kwargs,
                    "share_prefixes": config.model.share_prefixes, "prompt_placement": config.model.prompt_placement},
                   seed=config.seed * 1_000_003 + step, dtype=config.model.dtype)  # fastslow.loop's evaluation seed


def seed_prompt(config: Config) -> str:
    """The prompt a run starts from: the config's, else its task's."""
    return config.task.seed_prompt or SEED_PROMPT


def resolve_prompt(task, prompt: str) -> str:
    if prompt == SEED_PROMPT:
        return task.seed_prompt
    if prompt == INSTRUCTION:
        if not getattr(task, "instruction", None):
            raise FastSlowError(f"experiment: task {task.name!r} has no instruction; give the prompt as text")
        return task.instruction
    return prompt


def evaluate_job(job: EvalJob) -> list[float]:
    import torch

    from fastslow.evaluation import accuracy
    from fastslow.policy import Sampling, load_model, load_tokenizer
    from fastslow.tasks import load_task

    task = load_task(job.task["name"], **(job.task.get("args") or {}))
    problems = task.problems("val", job.val_size, job.split_seed)
    tokenizer = load_tokenizer(job.tokenizer_path)
    model = load_model(job.model_path, job.dtype, "cuda" if torch.cuda.is_available() else None).eval()
    sampling = Sampling(**job.sampling)
    results = []
    for prompt in job.prompts:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(job.seed)  # every prompt sees the same sampling noise
            if torch.cuda.is_available():
                torch.cuda.manual_seed_all(job.seed)
            results.append(accuracy(model, tokenizer, task, problems, resolve_prompt(task, prompt), job.samples,
                                    sampling)[0])
    return results


# ---------------------------------------------------------------- reading runs


def series(run_dir: Path, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    from fastslow.report import load_run

    return load_run(run_dir).series(x_key, y_key)


# The three budgets a claim is read against (issue 24): the paper's training problems, the rollouts a user pays for
# (FST's fast phase included) and wall clock.
AXES = {"samples": "training problems", "rollouts": "rollouts sampled (RL + fast phase)", "seconds": "wall clock (s)"}


def axis_curve(run_dir: Path, axis: str, y_key: str = "val_accuracy") -> tuple[np.ndarray, np.ndarray]:
    """(budget spent on `axis`, `y_key`) at each row that measured `y_key`: training problems (`samples`), rollouts
    sampled (`rl_rollouts` + `fast_rollouts`: RL's fresh ones and the fast phase's) or seconds of wall clock since the
    step-0 row (`wall_time`, which holds the step-0 evaluation; where an older version's resume restarted the clock
    at 0, its processes' clocks are added up, as in the run's report)."""
    from fastslow.report import elapsed, load_run

    if axis not in AXES:
        raise FastSlowError(f"axis: expected one of {', '.join(AXES)}, got {axis!r}")
    run = load_run(run_dir)
    rows = run.measured(y_key)
    if axis == "samples":
        x = [r["samples"] for r in rows]
    elif axis == "rollouts":
        x = [(r.get("rl_rollouts") or 0) + (r.get("fast_rollouts") or 0) for r in rows]
    else:
        clock = elapsed(run)
        x = [clock[r["step"]] - clock[run.rows[0]["step"]] for r in rows]
    return np.array(x, dtype=float), np.array([r[y_key] for r in rows], dtype=float)


def at_matched_budget(curve_a: tuple[np.ndarray, np.ndarray], curve_b: tuple[np.ndarray, np.ndarray],
                      transform: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[float, float, float]:
    """(budget, a's value, b's value) at the largest budget both runs reached: each run's last measurement at or
    before it (after `transform`, e.g. stats.running_max)."""
    budget = float(min(curve_a[0][-1], curve_b[0][-1]))
    a, b = ((x, transform(y) if transform else y) for x, y in (curve_a, curve_b))
    return budget, stats.value_at(*a, budget), stats.value_at(*b, budget)


def sharing_note(exp: Experiment) -> str:
    """What the seconds axis means: runs of one call share its machine."""
    if exp.runs_from is not None:
        return (f"Wall clock is each run's own, measured where it trained (the runs are read from {exp.runs_from}): "
                "runs trained side by side there shared that machine, so compare seconds between runs of one call.")
    together = (f"trains up to {exp.workers} runs at a time" if exp.workers > 1 else "trains one run at a time")
    return (f"Wall clock is each run's own, measured beside the others: this experiment {together} ({hardware()}), "
            "runs may come from the cache of another experiment of the same call, and experiments of one call may run "
            "side by side; a run's seconds include waiting on the runs beside it (one that finished early left the "
            "device to the rest). Compare seconds between runs of one call.")


def last_value(run_dir: Path, key: str) -> Any:
    from fastslow.report import load_run

    return load_run(run_dir).last(key)


# ---------------------------------------------------------------- tables and plots


def fmt(spread: stats.Spread, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
    """'mean ± std (min–max, n=3)' with the values multiplied by `scale`."""
    if spread.n == 0:
        return "n/a" + (f" ({spread.dropped} of {spread.dropped} seeds undefined)" if spread.dropped else "")
    m = spread.mean * scale
    if spread.n == 1:
        text = f"{m:.{digits}f}{unit} (n=1)"
    else:
        text = (f"{m:.{digits}f}{unit} ± {spread.std * scale:.{digits}f} "
                f"({spread.min * scale:.{digits}f}–{spread.max * scale:.{digits}f}, n={spread.n})")
    return text + (f", {spread.dropped} seed(s) undefined" if spread.dropped else "")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


figure = report.figure  # the report's figure style, shared by the experiments' own plots


def mean_band(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeds' curves on the first curve's x grid (interpolated if a seed measured elsewhere): x, mean, min, max."""
    x = np.asarray(curves[0][0], dtype=float)
    ys = np.array([np.interp(x, cx, cy) for cx, cy in curves])
    return x, ys.mean(0), ys.min(0), ys.max(0)


def plot_mean_curves(ax, groups: dict[str, list[tuple[np.ndarray, np.ndarray]]], transform=None) -> None:
    """One line per group (mean over seeds) with a min–max band; `transform` maps each seed's y first."""
    for i, (label, curves) in enumerate(groups.items()):
        curves = [(x, transform(y) if transform else y) for x, y in curves if len(x)]
        if not curves:
            continue
        x, mean, low, high = mean_band(curves)
        ax.plot(x, mean, color=f"C{i}", linewidth=2, label=f"{label} (mean of {len(curves)})")
        if len(curves) > 1:
            ax.fill_between(x, low, high, color=f"C{i}", alpha=0.15)
    ax.legend(fontsize=8, title="band: min–max over seeds", title_fontsize=8)


def plot_bars(title: str, categories: Sequence[str], groups: dict[str, list[list[float]]],
              ylabel: str = "val accuracy") -> Figure:
    """Grouped bars: for each category, one bar per group (mean over seeds) with each seed as a dot."""
    fig, ax = figure(title, "", ylabel)
    width = 0.8 / len(groups)
    for g, (label, per_category) in enumerate(groups.items()):
        positions = np.arange(len(categories)) + (g - (len(groups) - 1) / 2) * width
        ax.bar(positions, [np.mean(v) for v in per_category], width, color=f"C{g}", label=label)
        for x, v in zip(positions, per_category):
            ax.plot([x] * len(v), v, "k.", markersize=4)
    ax.set_xticks(np.arange(len(categories)), categories, fontsize=8)
    ax.legend(fontsize=8, title="bars: mean · dots: seeds", title_fontsize=8)
    return fig


def save(fig: Figure, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path.name


# ---------------------------------------------------------------- the results page


def hardware() -> str:
    import torch

    cpus = os.cpu_count()
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{platform.machine()}, {cpus} CPU cores{gpu}, torch {torch.__version__}"


def trained_on(exp: Experiment) -> str:
    if exp.runs_from is None:
        return hardware()
    return f"runs trained elsewhere, read from `{exp.runs_from}`; analysed on {hardware()}"


def _load() -> str:
    """Other work on the machine slows every timing: say how busy it was."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def _jsonable(value: Any) -> Any:
    if isinstance(value, stats.Spread):
        return {k: _jsonable(v) for k, v in value.__dict__.items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_results(exp: Experiment, title: str, claim: str, paper: str, body: Sequence[str], plots: Sequence[str],
                  runs: dict[str, Path], summary: dict[str, Any], notes: Sequence[str] = ()) -> Path:
    """results.md (claim, paper's number, our tables, plots, how to rerun), summary.json, runs.json and
    report.html (fastslow.report over the experiment's runs); returns the experiment folder."""
    from fastslow.report import make_report, summary_table

    exp.dir.mkdir(parents=True, exist_ok=True)
    run_dirs = list(dict.fromkeys(runs.values()))
    elapsed = (time.perf_counter() - exp.started) / 60
    text = [f"# {title}\n", f"**Claim.** {claim}\n", f"**Paper.** {paper}\n", "## Ours\n", *body]
    if notes:
        text += ["\n**Notes.**\n", *[f"- {n}" for n in notes], ""]
    text += ["\n## Plots\n", *[f"![{p}]({p})" for p in plots], "", "Every run in detail: [report.html](report.html).\n"]
    if run_dirs:
        text += ["## Runs\n", summary_table(run_dirs)]
    text += ["## How this was measured\n",
             f"- command: `{exp.command}`",
             f"- preset `{exp.preset}`, {exp.seeds} seed(s), {exp.workers} worker process(es)",
             f"- hardware: {trained_on(exp)}; date {date.today().isoformat()}; {elapsed:.1f} min wall clock "
             f"(runs reused from the cache not included; load average at the end {_load()})",
             f"- runs: `{exp.runs_from or exp.runs_root}` (listed in runs.json)", ""]
    (exp.dir / "results.md").write_text("\n".join(text))
    (exp.dir / "summary.json").write_text(json.dumps(_jsonable({"experiment": exp.name, "preset": exp.preset,
                                                                 "seeds": exp.seeds, **summary}), indent=1) + "\n")
    (exp.dir / "runs.json").write_text(json.dumps({k: str(v) for k, v in runs.items()}, indent=1) + "\n")
    if run_dirs:
        make_report(run_dirs, exp.dir, notes=list(notes) or None)
    exp.say(f"results: {exp.dir / 'results.md'}")
    return exp.dir


# ---------------------------------------------------------------- runs of several modes and seeds


def train_modes(exp: Experiment, modes: Sequence[str], tag: str | None = None, **overrides: Any) -> dict[str, list[Path]]:
    """Runs of every mode for seeds 0..seeds-1 on the same data plan (trained together); run dirs by mode."""
    configs = [exp.config(mode, seed, tag, **overrides) for mode in modes for seed in range(exp.seeds)]
    dirs = exp.train(configs)
    return {mode: dirs[i * exp.seeds:(i + 1) * exp.seeds] for i, mode in enumerate(modes)}


def labelled(by_mode: dict[str, list[Path]], prefix: str = "") -> dict[str, Path]:
    return {f"{prefix}{mode} seed {seed}": path for mode, paths in by_mode.items() for seed, path in enumerate(paths)}
