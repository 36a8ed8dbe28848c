"""The paper's eight measurements (arXiv 2605.12484) as one command each: `fastslow experiment NAME`.

Each experiment trains the runs it needs (FST and its baselines, several seeds, in parallel processes),
reuses runs another experiment already trained with the same config, and writes `out/NAME/` with
results.md, summary.json, PNG plots and report.html. See fastslow.experiments.common for the folder layout
and fastslow.experiments.presets for the sizes and defaults.
"""

from __future__ import annotations

import copy
import importlib
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from fastslow.config import read_yaml_mapping, require_what_to_train, set_dotted
from fastslow.errors import FastSlowError
from fastslow.experiments.common import Experiment, default_workers
from fastslow.experiments import presets as preset_table

# name -> module whose `run(exp: Experiment) -> Path` measures it
REGISTRY: dict[str, str] = {
    "efficiency": "fastslow.experiments.efficiency",  # samples FST needs to reach RL's peak
    "asymptote": "fastslow.experiments.asymptote",  # fitted ceiling A, FST vs RL
    "kl": "fastslow.experiments.kl",  # KL to the base model at matched accuracy
    "decomposition": "fastslow.experiments.decomposition",  # {base, trained} weights x {seed, evolved} prompt
    "ood": "fastslow.experiments.ood",  # other task families, base vs RL vs FST weights
    "plasticity": "fastslow.experiments.plasticity",  # fresh RL on a new task from base / RL / FST weights
    "continual": "fastslow.experiments.continual",  # one run over three task families
    "zero-reward": "fastslow.experiments.zero_reward",  # steps until the reward leaves 0
    "k-sweep": "fastslow.experiments.ablation",  # FST at K = 1, 2, 4, 8 against RL
    "t-sweep": "fastslow.experiments.ablation",  # FST at T = 3, 6, 12 against RL
}


def read_config_file(path: Path) -> tuple[dict, dict]:
    """(run config, `experiment:` section) of a YAML file; the run config is validated later, per run."""
    data = read_yaml_mapping(path)
    section = data.pop("experiment", None) or {}
    if not isinstance(section, dict):
        raise FastSlowError(f"{path}: experiment: expected a mapping of experiment settings")
    return data, section


def _yaml_value(value: Any) -> str:
    """A value as --set reads it back (YAML, one line)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def run_experiment(name: str, config_path: Path | None = None, seeds: int = 3, preset: str = "small",
                   out: Path | None = None, workers: int | None = None, *,
                   overrides: dict[str, Any] | None = None,
                   reflection_lm: Callable[[str], str] | None = None, runs_from: Path | None = None) -> Path:
    """Run experiment `name` and return its folder (`out/name`, out defaulting to experiments/<preset>).

    `config_path`: the base run config (model, task, reflection), plus an optional `experiment:` section of
    settings (see presets.SETTINGS); without it, the micro model and the experiment's default task.
    The preset's sizes override the config's loop/eval/GEPA sizes; `overrides` (dotted keys, the CLI's --set, e.g.
    {"loop.rollout_allocation": "signal"}) apply last, to every run. `reflection_lm` (a callable prompt -> text,
    picklable when workers > 1) replaces config.reflection. `runs_from`: a folder of runs trained elsewhere (e.g. a
    GPU machine's, copied without their checkpoints), each found by its config; nothing is trained."""
    if name not in REGISTRY:
        raise FastSlowError(f"experiment: unknown experiment {name!r}; expected one of {', '.join(REGISTRY)}")
    if seeds < 1:
        raise FastSlowError(f"--seeds: expected at least 1 seed, got {seeds}")
    if workers is not None and workers < 1:
        raise FastSlowError(f"--workers: expected at least 1 worker process, got {workers}")
    preset_table.preset(preset)  # unknown preset: a clear error before anything runs
    if runs_from is not None and not Path(runs_from).is_dir():
        raise FastSlowError(f"--runs-from: {runs_from} is not a folder of runs")
    # `--set experiment.modes=[fst,rl]` sets one of the experiment's settings, as the config file's `experiment:`
    # section does; the other --set keys override every run's config
    given = dict(overrides or {})  # as the caller gave them, for the command line
    overrides = {key: value for key, value in given.items() if not key.startswith("experiment.")}
    from_set = {key.removeprefix("experiment."): value for key, value in given.items() if key.startswith("experiment.")}
    if config_path is not None:
        base, from_config = read_config_file(Path(config_path))
        require_what_to_train(base, str(config_path), overrides)
    else:
        base, from_config = copy.deepcopy(preset_table.MICRO_BASE), {}
    settings = preset_table.experiment_settings(name, preset, {**from_config, **from_set})
    if config_path is None and "task" in settings:
        base["task"] = copy.deepcopy(settings["task"])
    # the preset's overrides, then the caller's in their own order: `task={...}` then `task.train_size=384` is 384
    for key, value in [*settings.pop("overrides").items(), *overrides.items()]:
        try:
            set_dotted(base, key, copy.deepcopy(value))
        except FastSlowError as exc:
            raise FastSlowError(f"{'--set ' if key in overrides else 'experiment.overrides: '}{key}: {exc}") from None

    out = Path(out) if out is not None else Path("experiments") / preset
    command = " ".join(["fastslow experiment", name]
                       + ([f"--config {shlex.quote(str(config_path))}"] if config_path else [])
                       + [f"--seeds {seeds}", f"--preset {preset}", f"--out {shlex.quote(str(out))}"]
                       + ([f"--workers {workers}"] if workers else [])
                       + ([f"--runs-from {shlex.quote(str(runs_from))}"] if runs_from is not None else [])
                       + [f"--set {shlex.quote(f'{key}={_yaml_value(value)}')}" for key, value in given.items()])
    experiment = Experiment(name, preset, seeds, out, base, settings, workers or default_workers(), command,
                            reflection_lm, Path(runs_from) if runs_from is not None else None)
    return importlib.import_module(REGISTRY[name]).run(experiment)


__all__ = ["REGISTRY", "run_experiment", "read_config_file"]
