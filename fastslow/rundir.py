"""The run directory (docs/RUNDIR.md): resolved config, metrics rows, population per cycle, trackers.

One process writes a run: the directory's lock file (`.lock`, an flock held for the whole run, with the holder's
pid and host inside) refuses a second process before it touches anything. The kernel drops the lock when its
holder dies, so a killed run's lock is taken over; a run that ends removes the file. A fresh run needs an empty
or missing directory; `--resume` needs the same config as the one stored there. A fresh run that fails before its
first checkpoint removes what it wrote, so its name stays free.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from fastslow.checkpoint import checkpoint_dirs, write_text_atomic
from fastslow.config import Config, parse_config, read_yaml_mapping
from fastslow.errors import FastSlowError, named_write_error
from fastslow.fast.population import Member
from fastslow.stopping import deferred

METRIC_KEYS = (
    "step", "cycle", "mode", "samples", "rl_rollouts", "fast_rollouts", "reward_mean", "val_accuracy",
    "val_accuracy_seed_prompt", "kl_base", "entropy", "seconds_generate", "seconds_score", "seconds_reflect",
    "seconds_update", "reflection_failed", "reflection_calls", "reflection_failures", "reflection_repeats",
    "fast_rounds", "best_prompt_id", "wall_time", "kept_problems", "loss", "grad_norm", "within_prompt_signal",
    "within_prompt_variance_share", "member_entropy", "member_signal", "reused_rollouts", "fresh_rollouts",
    "reused_reward_mean", "importance_ratio_mean", "importance_capped_share", "distill_kl", "seconds_eval",
    "fast_phase_s", "fast_phase_wait_s", "fast_phase_staleness", "seconds_reference", "seconds_checkpoint",
)
LOCK = ".lock"


class RunDir:
    """Use as a context manager around the whole run: `with RunDir.claim(config, resume) as run_dir: ...`.
    The constructor takes the lock and checks the directory, writing nothing; `start()` writes config.yaml and
    opens the trackers once every other input has been checked."""

    def __init__(self, config: Config, resume: bool = False, writer: bool = True):
        """`writer` False: another process (rank 0 under accelerate) owns the directory; only paths are set."""
        self.config, self.path, self.resume, self.writer = config, config.run_dir, resume, writer
        self.metrics_path = self.path / "metrics.jsonl"
        self.checkpoints = self.path / "checkpoints"
        self.trackers = []
        self._lock = None
        self._entries_before: set[str] | None = None  # what the directory held before this run; None: it made it
        if writer:
            self._take_lock()
            try:
                self._check_contents()
            except BaseException:
                self._release()
                raise

    @classmethod
    def claim(cls, config: Config, resume: bool = False) -> RunDir:
        """Rank 0 claims the directory; under accelerate every rank learns the verdict (a refusal raises on all)."""
        from accelerate import PartialState
        from accelerate.utils import broadcast_object_list, parse_flag_from_env

        # the first use of accelerate's process state fixes it for the run: read ACCELERATE_USE_CPU as its
        # Accelerator does, else CPU processes under torchrun each see a world of one and all claim the directory
        processes = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
        run_dir, refusal = None, None
        if processes.is_main_process:
            try:
                run_dir = cls(config, resume)
            except FastSlowError as exc:
                refusal = str(exc)
        if processes.num_processes > 1:
            refusal = broadcast_object_list([refusal])[0]
        if refusal is not None:
            raise FastSlowError(refusal)
        return run_dir or cls(config, resume, writer=False)

    @classmethod
    def refusal(cls, config: Config, resume: bool = False) -> str | None:
        """Why `fastslow run` would refuse this run's directory as it stands (without --resume: it holds a run), or
        None; reads only."""
        try:
            cls(config, resume, writer=False)._check_contents()
        except FastSlowError as exc:
            return str(exc)
        return None

    def _take_lock(self) -> None:
        existed = self.path.is_dir()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = RunLock(self.path / LOCK)
        except OSError as exc:
            raise FastSlowError(f"output_dir: cannot write the run directory {self.path} "
                                f"({exc.strerror or exc})") from None
        self._entries_before = set(os.listdir(self.path)) if existed else None

    def _check_contents(self) -> None:
        if not self.path.is_dir():
            if self.resume:
                raise FastSlowError(f"{self.path}: no run to resume (config.yaml missing)")
            return
        stored = self.path / "config.yaml"
        if self.resume:
            if not stored.is_file():
                raise FastSlowError(f"{self.path}: no run to resume (config.yaml missing)")
            previous = parse_config(read_yaml_mapping(stored), source=str(stored))
            if previous.model_dump() != self.config.model_dump():
                changed = [k for k, v in self.config.model_dump().items() if previous.model_dump().get(k) != v]
                raise FastSlowError(f"{stored}: holds a different run (differs in {', '.join(changed)}); "
                                    "resume with the same config or pick another name")
        elif set(os.listdir(self.path)) - {LOCK}:
            hint = " (use --resume to continue it)" if stored.is_file() else ""
            raise FastSlowError(f"{self.path}: run directory already exists and is not empty{hint}; "
                                "pick another name or output_dir")

    def start(self) -> None:
        """Write what a run starts with (a fresh run's config.yaml) and open the trackers."""
        if not self.writer:
            return
        if not self.resume:
            write_text_atomic(self.path / "config.yaml", self.config.to_yaml())
        (self.path / "population").mkdir(exist_ok=True)
        self.trackers = _trackers(self.config, self.path)

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.writer:
            return
        with deferred():  # a signal arriving now waits: the clean-up and the lock's release are not cut short
            try:
                self.close()
            finally:
                if exc_type is not None and not self.resume and not checkpoint_dirs(self.checkpoints):
                    self._remove_what_this_run_wrote()
                self._release()

    def _remove_what_this_run_wrote(self) -> None:
        for name in set(os.listdir(self.path)) - (self._entries_before or set()) - {LOCK}:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)

    def _release(self) -> None:
        if self._lock is None:
            return
        self._lock.release()
        self._lock = None
        if self._entries_before is None and not os.listdir(self.path):  # an empty directory this run made
            self.path.rmdir()

    def log(self, row: dict[str, Any]) -> None:
        if not self.writer:  # other ranks read the directory, never write it
            return
        row = {key: row.get(key) for key in METRIC_KEYS} | row
        append_durably(self.metrics_path, (json.dumps(row) + "\n").encode())
        for tracker in self.trackers:
            tracker(row)

    def rows(self) -> list[dict[str, Any]]:
        """The metrics rows; a line that is not one (half a row from a process killed while appending it) is left
        out, so that --resume, which rewrites the file with the rows up to its checkpoint, drops it."""
        if not self.metrics_path.is_file():
            return []
        rows = []
        for line in self.metrics_path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                rows.append(row)
        return rows

    def truncate_metrics(self, last_step: int) -> None:
        """On resume: drop rows written after the checkpoint (the killed run's lost steps are redone)."""
        if not self.writer:
            return
        kept = [row for row in self.rows() if row["step"] <= last_step]
        write_text_atomic(self.metrics_path, "".join(json.dumps(row) + "\n" for row in kept))

    def write_population(self, cycle: int, population: list[Member], **extra: Any) -> None:
        if not self.writer:
            return
        data = {"cycle": cycle, **extra, "members": [m.to_json() for m in population],
                "best": population[0].id if population else None}
        write_text_atomic(self.path / "population" / f"cycle-{cycle}.json", json.dumps(data, indent=1))

    def close(self) -> None:
        for tracker in self.trackers:
            getattr(tracker, "close", lambda: None)()
        self.trackers = []


class RunLock:
    """An exclusive flock on `path`, which names its holder (pid, host, since) for the message of a refused process.

    flock, not a library: filelock keeps the file after release by design, and its 3.x versions truncate the
    file on open, erasing the holder's name. Released by closing the file after unlinking it, while still held;
    a process that locked the file just as it was unlinked sees a different inode at the path and tries again.
    """

    def __init__(self, path: Path):
        self.path = path
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise FastSlowError(f"{path.parent}: in use by another fastslow process ({self.holder()}); "
                                        "wait for it to end, or stop it first") from None
                raise
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # the file we locked was unlinked by its releasing holder: lock the new one
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self.fd = fd

    def holder(self) -> str:
        try:
            holder = json.loads(self.path.read_text())
            return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self.fd)


def append_durably(path: Path, data: bytes) -> None:
    """Append `data` to `path` and fsync it; on a failed write (a full disk) the file is cut back to what it held, so
    no half row is left for --resume to choke on, and the error names the file."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:  # unbuffered: nothing is left in a buffer to be flushed after the cut
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise named_write_error(exc, path) from exc
    finally:
        os.close(fd)


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
    """wandb writes into the run directory (run_dir/wandb/); WANDB_MODE=offline keeps it there, to sync later."""

    def __init__(self, config: Config, path: Path):
        import wandb

        self.run = wandb.init(project="fastslow", name=config.name, config=config.model_dump(mode="json"),
                              dir=str(path))

    def __call__(self, row):
        self.run.log(_numeric(row), step=row["step"])

    def close(self):
        self.run.finish()


class _Trackio:
    """trackio logs locally into its own store (TRACKIO_DIR), where `trackio show` finds every project."""

    def __init__(self, config: Config):
        import trackio

        self.trackio = trackio
        trackio.init(project="fastslow", name=config.name, config=config.model_dump(mode="json"))

    def __call__(self, row):
        self.trackio.log(_numeric(row), step=row["step"])

    def close(self):
        self.trackio.finish()


def _trackers(config: Config, path: Path) -> list:
    makers = {"tensorboard": lambda: _TensorBoard(path), "wandb": lambda: _Wandb(config, path), "trackio": lambda: _Trackio(config)}
    trackers = []
    for name in config.report_to:
        try:
            trackers.append(makers[name]())
        except ImportError:
            raise FastSlowError(f"report_to: {name} is not installed (pip install 'fastslow[tracking]')") from None
    return trackers
