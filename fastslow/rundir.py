"""The run directory (docs/RUNDIR.md): resolved config, metrics rows, population per cycle, trackers.

It never overwrites another run: a fresh run needs an empty or missing directory; `--resume` needs the
same config as the one stored there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from fastslow.checkpoint import write_text_atomic
from fastslow.config import Config, parse_config
from fastslow.errors import FastSlowError
from fastslow.fast.population import Member

METRIC_KEYS = (
    "step", "cycle", "mode", "samples", "rl_rollouts", "fast_rollouts", "reward_mean", "val_accuracy",
    "val_accuracy_seed_prompt", "kl_base", "entropy", "seconds_generate", "seconds_score", "seconds_reflect",
    "seconds_update", "reflection_failed", "best_prompt_id", "wall_time", "kept_problems", "loss", "grad_norm",
    "within_prompt_signal", "within_prompt_variance_share", "member_entropy",
)


class RunDir:
    def __init__(self, config: Config, resume: bool = False, writer: bool = True):
        """`writer` False: another process (rank 0 under accelerate) owns the directory; only paths are set."""
        self.config, self.path = config, config.run_dir
        self.metrics_path = self.path / "metrics.jsonl"
        self.checkpoints = self.path / "checkpoints"
        self.trackers = []
        if not writer:
            return
        stored = self.path / "config.yaml"
        if resume:
            if not stored.is_file():
                raise FastSlowError(f"{self.path}: no run to resume (config.yaml missing)")
            previous = parse_config(yaml.safe_load(stored.read_text()), source=str(stored))
            if previous.model_dump() != config.model_dump():
                changed = [k for k, v in config.model_dump().items() if previous.model_dump().get(k) != v]
                raise FastSlowError(f"{stored}: holds a different run (differs in {', '.join(changed)}); "
                                    "resume with the same config or pick another name")
        elif self.path.exists() and any(self.path.iterdir()):
            hint = " (use --resume to continue it)" if stored.is_file() else ""
            raise FastSlowError(f"{self.path}: run directory already exists and is not empty{hint}; "
                                "pick another name or output_dir")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            write_text_atomic(stored, config.to_yaml())
        (self.path / "population").mkdir(exist_ok=True)
        self.trackers = _trackers(config, self.path)

    def log(self, row: dict[str, Any]) -> None:
        row = {key: row.get(key) for key in METRIC_KEYS} | row
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for tracker in self.trackers:
            tracker(row)

    def rows(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, last_step: int) -> None:
        """On resume: drop rows written after the checkpoint (the killed run's lost steps are redone)."""
        kept = [row for row in self.rows() if row["step"] <= last_step]
        write_text_atomic(self.metrics_path, "".join(json.dumps(row) + "\n" for row in kept))

    def write_population(self, cycle: int, population: list[Member], **extra: Any) -> None:
        data = {"cycle": cycle, **extra, "members": [m.to_json() for m in population],
                "best": population[0].id if population else None}
        write_text_atomic(self.path / "population" / f"cycle-{cycle}.json", json.dumps(data, indent=1))

    def close(self) -> None:
        for tracker in self.trackers:
            getattr(tracker, "close", lambda: None)()


def _numeric(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}


class _TensorBoard:
    def __init__(self, path: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(path / "tensorboard"))

    def __call__(self, row):
        for key, value in _numeric(row).items():
            self.writer.add_scalar(key, value, row["step"])
        self.writer.flush()

    def close(self):
        self.writer.close()


class _Wandb:
    def __init__(self, config: Config):
        import wandb

        self.run = wandb.init(project="fastslow", name=config.name, config=config.model_dump(mode="json"))

    def __call__(self, row):
        self.run.log(_numeric(row), step=row["step"])

    def close(self):
        self.run.finish()


class _Trackio:
    def __init__(self, config: Config):
        import trackio

        self.trackio = trackio
        trackio.init(project="fastslow", name=config.name, config=config.model_dump(mode="json"))

    def __call__(self, row):
        self.trackio.log(_numeric(row), step=row["step"])

    def close(self):
        self.trackio.finish()


def _trackers(config: Config, path: Path) -> list:
    makers = {"tensorboard": lambda: _TensorBoard(path), "wandb": lambda: _Wandb(config), "trackio": lambda: _Trackio(config)}
    trackers = []
    for name in config.report_to:
        try:
            trackers.append(makers[name]())
        except ImportError:
            raise FastSlowError(f"report_to: {name} is not installed (pip install 'fastslow[tracking]')") from None
    return trackers
