"""The fast phase as the loop runs it: an object the loop starts for a cycle (`start(job)`) and collects
(`result()`), on the schedule `loop.fast_phase` names.

  sync     the paper's schedule: start, then collect at once; the phase runs here, on the policy as it is, and the
           cycle's first RL step waits for all of it.
  overlap  every fast phase runs in a worker process (fastslow.fast.worker) with its own copy of the weights. The
           loop starts cycle c+1's while cycle c's RL steps train, on the weights cycle c started from (the checkpoint
           written at its boundary: one cycle stale), and collects it at the end of cycle c, before the checkpoint
           that then holds it. A step waits only for what is not finished.

A fast phase is a function of its job (fastslow.fast.gepa_driver.FastJob), so both schedules compute the same
population from the same weights, population, anchor set and seed; what overlap changes is which weights that is.
A worker that dies is started again and given the same job (the answer cannot change); if it dies again, or raises,
the cycle keeps the carried population and the run goes on, saying so in one line (docs/DESIGN.md, "Asynchronous FST").
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import queue
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fastslow.errors import FastSlowError
from fastslow.fast.gepa_driver import FastJob, FastPhaseResult, FastPhaseSettings, run_fast_phase
from fastslow.reflection import one_line

log = logging.getLogger(__name__)


class FastPhase:
    """The sync schedule: `start` remembers the job, `result` runs it here, on `adapter`'s policy as it is now."""

    def __init__(self, settings: FastPhaseSettings, adapter, reflection_lm, scratch: Path):
        self.settings, self.adapter, self.reflection_lm, self.scratch = settings, adapter, reflection_lm, scratch
        self.job: FastJob | None = None

    def attach(self, adapter, reflection_lm) -> None:
        """The policy it samples (a PolicyAdapter) and the reflection LM, once the run has built them."""
        self.adapter, self.reflection_lm = adapter, reflection_lm

    def start(self, job: FastJob) -> None:
        self.job = job

    def result(self) -> FastPhaseResult:
        job, self.job = self.job, None
        return run_job(job, self.settings, self.adapter, self.reflection_lm, self.scratch)

    def close(self) -> None:
        pass

    def __enter__(self) -> FastPhase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_job(job: FastJob, settings: FastPhaseSettings, adapter, reflection_lm, scratch: Path) -> FastPhaseResult:
    """Run a job in this process, in a fresh GEPA directory (what a killed run left there is scratch)."""
    work_dir = scratch / f"cycle-{job.cycle}"
    shutil.rmtree(work_dir, ignore_errors=True)
    return run_fast_phase(job, settings, adapter, reflection_lm, work_dir)


@dataclass
class WorkerSpec:
    """What a worker process is built from: it loads its own model, tokenizer, task and reflection LM."""

    config: Any  # fastslow.config.Config
    settings: FastPhaseSettings
    scratch: Path  # GEPA's directories: the only place the worker writes
    reflection_lm: Any = None  # a callable given to fastslow.loop.run, else None (built from config.reflection)
    device: str | None = None  # the worker's device (cuda:N): loop.fast_phase_device, else the trainer's; None: CPU
    threads: int | None = None  # torch threads on a CPU (None: torch's default)


class OverlapFastPhase(FastPhase):
    """The overlap schedule: jobs run in a worker process, started by `build` and kept for the run."""

    retries = 1  # a job whose worker died is given to a new worker this many times
    advise_after = 2  # cycles in a row whose wait exceeded half the RL steps' time beside it, before saying so

    def __init__(self, spec: WorkerSpec):
        super().__init__(spec.settings, None, None, spec.scratch)
        self.spec, self.process = spec, None
        if spec.reflection_lm is not None:
            try:
                pickle.dumps(spec.reflection_lm)
            except Exception as exc:
                raise FastSlowError(f"loop.fast_phase: overlap runs the reflection LM in a worker process, and the "
                                    f"one given cannot be sent there ({one_line(exc)}); use loop.fast_phase: sync") from None
        self._context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        self._trainer_threads = None
        self._started, self._longer, self._advised = 0.0, 0, False
        if spec.device is None and spec.threads:  # on a CPU the trainer leaves the worker its cores
            import torch

            self._trainer_threads = torch.get_num_threads()
            torch.set_num_threads(max(1, cores() - spec.threads))

    def spawn(self) -> None:
        from fastslow.fast.worker import serve

        self.jobs, self.results = self._context.Queue(), self._context.Queue()
        self.process = self._context.Process(target=serve, args=(self.spec, self.jobs, self.results),
                                             name="fastslow-fast-phase", daemon=True)
        self.process.start()

    def start(self, job: FastJob) -> None:
        if self.process is None:
            self.spawn()
        self.job, self._started = job, time.perf_counter()  # a worker that died since is replaced in result()
        self.jobs.put(pickle.dumps(job))  # now: the queue pickles later, and the loop goes on updating its members

    def result(self) -> FastPhaseResult:
        """Wait for the started job (its `seconds_waited`: how long); a dead worker is replaced and given the job again."""
        job, started = self.job, time.perf_counter()
        beside = started - self._started  # what the trainer did meanwhile: the RL steps
        for attempt in range(self.retries + 1):
            outcome = self._wait()
            if outcome[0] != "died" or attempt == self.retries:
                break
            log.warning("fast phase: the worker process died (%s) in cycle %d; starting a new one on the same job",
                        outcome[1], job.cycle)
            self.spawn()
            self.jobs.put(pickle.dumps(job))
        self.job, waited = None, time.perf_counter() - started
        if outcome[0] == "done":
            self._advise(outcome[1], job.cycle, waited, beside)
            return replace(outcome[1], seconds_waited=waited)
        if outcome[0] == "user error":  # bad input the worker found (a reflection LM it cannot reach): as in sync mode
            raise FastSlowError(outcome[1])
        if outcome[0] == "start failed":  # it could never run one: stop, as a sync run failing to load would
            raise FastSlowError(f"loop.fast_phase: the fast phase's worker could not start ({outcome[1]})")
        log.warning("fast phase: the worker %s in cycle %d; keeping the carried population for this cycle",
                    "died again" if outcome[0] == "died" else f"failed ({outcome[1]})", job.cycle)
        return replace(carried(job), seconds_waited=waited)

    def _advise(self, result: FastPhaseResult, cycle: int, waited: float, beside: float) -> None:
        """Say once when the fast phase is the longer phase: overlap then hides only the RL steps' length. On one H100
        (docs/RESULTS.md) the trainer waited 0.3-4.5 s a cycle after 1.2-1.9 s of RL steps with GEPA's default rounds,
        and mostly 0-0.5 s with one round a cycle, at about half the price per step."""
        if cycle < 2 or self._advised:  # cycle 0 runs beside nothing; cycle 1's may still pay the worker's start
            return
        self._longer = self._longer + 1 if waited > beside / 2 and result.rounds > 1 else 0
        if self._longer == self.advise_after:
            self._advised = True
            log.warning("fast phase: before cycle %d the RL steps waited %.1f s for the worker after %.1f s of their "
                        "own; its %d GEPA rounds run one after another, so fewer, larger ones shorten it: raise "
                        "gepa.proposals_per_iteration (now %s) until a cycle is one round (docs/DESIGN.md)",
                        cycle, waited, beside, result.rounds, self.settings.gepa.proposals_per_iteration)

    def _wait(self) -> tuple[str, Any]:
        while True:
            try:
                return self.results.get(timeout=0.5)
            except queue.Empty:
                if not self.process.is_alive():  # its last words may still be in the queue
                    try:
                        return self.results.get(timeout=1.0)
                    except queue.Empty:
                        return "died", f"exit code {self.process.exitcode}"

    def close(self) -> None:
        """End the worker: at once if a job is in flight (the run is ending early: a signal, an error), else once it
        has read the end of its queue."""
        if self.process is not None and self.process.is_alive():
            if self.job is None:
                self.jobs.put(None)
                self.process.join(timeout=10)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        self.process = None
        if self._trainer_threads is not None:
            import torch

            torch.set_num_threads(self._trainer_threads)
            self._trainer_threads = None


def carried(job: FastJob) -> FastPhaseResult:
    """A fast phase that proposed nothing: the job's population as it came (its scores from the last cycle). Its
    budget counts as spent: the next cycle does not pay for two."""
    return FastPhaseResult(population=list(job.population), metric_calls=0, budget_spent=job.budget, rescore_rollouts=0,
                           reflection_calls=0, reflection_failures=0, reflection_repeats=0, rounds=0,
                           seconds_reflect=0.0, reflection_failed=False, weights_step=job.weights_step,
                           fallback=True, budget=job.budget)


def build(config, settings: FastPhaseSettings, scratch: Path, reflection_override=None,
          worker: bool = True) -> FastPhase:
    """The fast phase `loop.fast_phase` names. sync runs here, on what `attach` gives it; overlap starts its worker
    now (unless `worker` is False: a process that never runs the fast phase), which builds its own policy and
    reflection LM from the config (or `reflection_override`, a callable given to fastslow.loop.run)."""
    if config.loop.fast_phase == "sync" or not worker:
        return FastPhase(settings, None, None, scratch)
    import torch

    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else None
    if config.loop.fast_phase_device is not None:
        wanted, count = config.loop.fast_phase_device, torch.cuda.device_count()  # 0 without CUDA
        if int(wanted.removeprefix("cuda:")) >= count:
            raise FastSlowError(f"loop.fast_phase_device: {wanted}, but this machine has {count} CUDA device(s); "
                                f"give cuda:0 to cuda:{count - 1} or remove it" if count else
                                f"loop.fast_phase_device: {wanted}, but this machine has no CUDA device; remove it")
        device = wanted
    threads = None if device else max(1, cores() // 2)  # on a CPU, half the cores each rather than both on all
    if device is None:
        log.warning("loop.fast_phase: overlap on a CPU splits its %d cores between the trainer and the fast phase; "
                    "sampling there is throughput-bound, so expect no gain over sync (docs/RESULTS.md)", cores())
    phase = OverlapFastPhase(WorkerSpec(config, settings, scratch, reflection_override, device, threads))
    phase.spawn()  # loading its model and reflection LM overlaps with the training process's own start
    return phase


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
