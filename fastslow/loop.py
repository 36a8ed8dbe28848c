"""Fast-Slow Training, one cycle at a time (the paper's Algorithm 1). The baselines are settings of the same loop:
`rl` never runs the fast phase, `gepa` never runs the slow one, and `fst-distill`'s slow phase distils the best
prompt into the weights (reverse KL, the student under the seed prompt) instead of RL.

  for each cycle c:
      anchors    = problems of the next T planned batches
      fast phase = re-score the population under the current weights, GEPA on the anchors, top-K of the front
                   (loop.fast_phase overlap: computed beside cycle c-1's slow phase, on the weights c-1 started from)
      slow phase = T CISPO steps; each problem's G rollouts split G/K over the population (with
                   loop.reuse_fast_rollouts filled first from the fast phase's rollouts under those members)
                   (fst-distill: T steps of reverse KL from π_θ(· | seed prompt) to π_base(· | best prompt))
      evaluate every `eval.every` steps; checkpoint at the end of every `checkpoint.every`-th cycle
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, set_seed

from fastslow import engine
from fastslow.checkpoint import (latest_checkpoint, load_weights, read_checkpoint, read_object, save_checkpoint,
                                 save_weights, set_rng_state)
from fastslow.config import Config
from fastslow.evaluation import evaluate
from fastslow.fast import phase as fast_phases
from fastslow.fast.adapter import PolicyAdapter, batch_rows
from fastslow.fast.gepa_driver import FastJob, FastPhaseResult, FastPhaseSettings
from fastslow.fast.population import SEED_ID, Member
from fastslow.guards import preflight
from fastslow.policy import Sampling, load_model
from fastslow.rundir import RunDir

Observer = Callable[[dict[str, Any]], None]


def run(config: Config, resume: bool = False, observer: Observer | None = None,
        reflection_lm: Callable[[str], str] | None = None) -> Path:
    """Train as `config` says; returns the run directory. `reflection_lm` overrides config.reflection
    (any callable prompt -> text)."""
    # one process per run directory, claimed before anything is touched; `cleanup` ends what the run starts
    with RunDir.claim(config, resume) as run_dir, ExitStack() as cleanup:
        return run_in(run_dir, config, resume, observer, reflection_lm, cleanup)


def run_in(run_dir: RunDir, config: Config, resume: bool, observer: Observer | None,
           reflection_lm: Callable[[str], str] | None, cleanup: ExitStack) -> Path:
    # --- everything that can fail on bad input happens before the run directory is written ---
    set_seed(config.seed)
    processes = PartialState()  # one process per GPU under `accelerate launch`; rank 0 owns the run directory
    is_main = processes.is_main_process
    reflection_override, own_reflection = reflection_lm, config.mode != "rl" and reflection_lm is None
    ready = preflight(config, processes.num_processes, reflection=own_reflection)  # what `fastslow check` runs
    task, val, seed_prompt, plan = ready.task, ready.val, ready.seed_prompt, ready.plan
    tokenizer, prompt_room, reflection_lm = ready.tokenizer, ready.prompt_room, ready.reflection_lm or reflection_lm
    fast_phase = None  # overlap: its worker starts now and loads its own weights while this process loads these
    if config.mode != "rl":
        fast_phase = cleanup.enter_context(fast_phases.build(
            config, FastPhaseSettings.of(config, prompt_room.refusal), run_dir.path / "gepa", reflection_override,
            worker=is_main))  # rank 0 runs the fast phase
    model = load_model(config.model.path, config.model.dtype)
    run_dir.start()
    processes.wait_for_everyone()

    # --- the two learners ---
    learner = None
    if config.mode != "gepa":
        from fastslow.slow.trainer import SlowLearner

        learner = SlowLearner(config, model, tokenizer, task, run_dir.path / "trl")
        policy, base = learner.policy, learner.base_weights
    else:
        policy, base = model.requires_grad_(False), None  # frozen weights: KL is 0 by construction
        if torch.cuda.is_available():
            policy.cuda()
    sampling = Sampling.of(config.model)  # how every rollout is sampled, by one engine (None: transformers on `policy`)
    sampler = engine.vllm_engine(config, learner)
    overlap = fast_phase is not None and config.loop.fast_phase == "overlap"  # its worker holds its own weights
    if fast_phase is not None and not overlap:  # sync: the fast phase samples the policy here
        if own_reflection and config.reflection.kind == "self":  # the starting weights this process holds, no copy
            reflection_lm.share_weights(base or (lambda: nullcontext(policy)))
        fast_phase.attach(PolicyAdapter(policy, tokenizer, task, sampling, engine=sampler,
                                        batch_rows=batch_rows(config)), reflection_lm)

    population = [Member(SEED_ID, seed_prompt)]
    student = Member(SEED_ID, seed_prompt)  # fst-distill: the prompt the distilled weights are used with
    counters = {"samples": 0, "rl_rollouts": 0, "fast_rollouts": 0, "reflection_calls": 0, "reflection_failures": 0,
                "reflection_repeats": 0, "fast_rounds": 0, "budget_carry": 0}
    first_step, started = 1, time.perf_counter()
    worker_weights: Path | None = None  # overlap: where the worker's next job loads its weights (None: the starting)
    ahead: FastPhaseResult | None = None  # overlap: the next cycle's fast phase, collected at this cycle's end
    boundary: dict[str, float] = {}  # the last cycle boundary's seconds_checkpoint, for the next cycle's first step

    def deployed_prompt() -> str:  # fst-distill's weights are used under the seed prompt: they hold the best one
        return seed_prompt if config.mode == "fst-distill" else population[0].text

    def evaluation(step: int) -> dict[str, Any]:
        start = time.perf_counter()
        result = evaluate(policy, base, tokenizer, task, val, deployed_prompt(), seed_prompt,
                          samples=config.eval.samples, kl_prompts=config.eval.kl_prompts, sampling=sampling,
                          seed=config.seed * 1_000_003 + step, engine=sampler)
        return asdict(result) | {"seconds_eval": time.perf_counter() - start}

    def log(row: dict[str, Any]) -> None:
        row = {"mode": config.mode, **counters, "best_prompt_id": population[0].id,
               "wall_time": time.perf_counter() - started, **row}
        row.pop("budget_carry")
        run_dir.log(row)  # a no-op on ranks that do not own the run directory
        if is_main and observer:
            observer(row)

    def fast_job(cycle: int, weights_step: int) -> FastJob:
        """The fast phase of `cycle`, from the population and the weights as they are now, after `weights_step`
        optimizer steps: a worker loads them from `worker_weights` (saved at the last cycle boundary)."""
        anchors = plan.anchor_set(cycle, last_step)
        return FastJob(cycle, population, anchors, config.gepa.budget(len(anchors)) + counters["budget_carry"],
                       seed=config.seed + cycle, weights_step=weights_step,
                       weights=worker_weights if learner is not None else None)

    def start_fast_phase(job: FastJob) -> None:
        if is_main:  # rank 0 runs the fast phase; the others learn its population in collect_fast_phase
            fast_phase.start(job)

    def collect_fast_phase() -> FastPhaseResult:
        result = fast_phase.result() if is_main else None
        return broadcast_object_list([result])[0] if processes.num_processes > 1 else result

    def take(fast: FastPhaseResult, cycle: int) -> dict[str, Any]:
        """The cycle's population and what its fast phase cost; returns the columns of the cycle's first row."""
        nonlocal population
        measured = {m.id: m.signal for m in population}  # overlap: what the slow phase beside the job measured
        population = [replace(m, signal=measured.get(m.id, m.signal)) for m in fast.population]
        for key, spent in (("fast_rollouts", fast.rollouts), ("reflection_calls", fast.reflection_calls),
                           ("reflection_failures", fast.reflection_failures),
                           ("reflection_repeats", fast.reflection_repeats), ("fast_rounds", fast.rounds)):
            counters[key] += spent
        counters["budget_carry"] = fast.budget - fast.budget_spent
        run_dir.write_population(cycle, population, reflection_failed=fast.reflection_failed,
                                 metric_calls=fast.metric_calls, rounds=fast.rounds,
                                 reflection_calls=fast.reflection_calls, reflection_failures=fast.reflection_failures,
                                 budget=fast.budget, schedule=config.loop.fast_phase, weights_step=fast.weights_step,
                                 seconds=fast.seconds, seconds_generate=fast.seconds_generate,
                                 seconds_score=fast.seconds_score, seconds_reflect=fast.seconds_reflect,
                                 fallback=fast.fallback, anchor_rollouts_reused=fast.anchor_rollouts_reused)
        return {"seconds_generate": fast.seconds_generate, "seconds_score": fast.seconds_score,
                "seconds_reflect": fast.seconds_reflect, "fast_phase_s": 0.0 if overlap else fast.seconds,
                "fast_phase_wait_s": fast.seconds_waited}  # the seconds_* add to the first step's own

    last_step = config.loop.steps
    checkpoint = latest_checkpoint(run_dir.checkpoints) if resume else None
    if checkpoint is not None:
        state, trainer_state, rng = read_checkpoint(checkpoint)
        if learner is not None:
            load_weights(learner.policy, checkpoint / "model")
            learner.load_optimizer_state(trainer_state)
        set_rng_state(rng)
        population = [Member.from_json(m) for m in state["population"]]
        counters, first_step = {**counters, **state["counters"]}, state["step"] + 1
        started -= state.get("wall_time", 0.0)  # the clock goes on from the checkpoint's (older ones: from 0)
        ahead, worker_weights = read_object(checkpoint, "fast_phase"), checkpoint / "model"
        run_dir.truncate_metrics(state["step"])
    else:
        if resume:  # killed before its first checkpoint: start over
            run_dir.truncate_metrics(-1)
        log({"step": 0, "cycle": 0, **(evaluation(0) if is_main else {})})

    for cycle in range(plan.cycle_of(first_step), plan.cycle_of(last_step) + 1):
        steps = plan.cycle_steps(cycle, last_step)
        fast_row, reflection_failed, reusable = boundary, None, None

        # --- fast phase: evolve the prompts on this cycle's anchor set, weights frozen ---
        if fast_phase is not None:
            if ahead is None:  # sync: every cycle; overlap: the run's first, with no slow phase to run beside
                start_fast_phase(fast_job(cycle, steps.start - 1))
                ahead = collect_fast_phase()
            fast_row = fast_row | take(ahead, cycle)
            reflection_failed, reusable = ahead.reflection_failed, ahead.reusable
            weights_step, ahead = ahead.weights_step, None
            if overlap and cycle < plan.cycle_of(last_step):  # the next cycle's, beside this slow phase
                start_fast_phase(fast_job(cycle + 1, steps.start - 1))

        # --- slow phase: T RL steps with the population frozen (fst-distill: T distillation steps) ---
        measured: dict[str, list[float]] = {}  # member id -> within-prompt reward variance, per step
        for step in steps:
            batch = plan.batch(step)
            row: dict[str, Any] = {"step": step, "cycle": cycle, "reflection_failed": reflection_failed}
            if learner is not None:
                stats = (learner.distill_step(batch, student, teacher=population[0])
                         if config.mode == "fst-distill" else learner.step(batch, population, reusable))
                counters["rl_rollouts"] += stats.fresh_rollouts
                row |= stats.metrics()
                for member_id, variance in stats.member_signal.items():
                    if variance is not None:
                        measured.setdefault(member_id, []).append(variance)
                if fast_phase is not None:  # optimizer steps between the prompts' weights and this step's
                    row["fast_phase_staleness"] = step - 1 - weights_step
            else:  # gepa mode: the best prompt's score on this step's problems (already measured on the anchors)
                scores = population[0].scores
                row |= {"reward_mean": sum(scores.get(p.id, 0.0) for p in batch) / len(batch),
                        "seconds_update": 0.0}
            counters["samples"] += len(batch)
            for key, seconds in fast_row.items():  # the fast phase's (and the boundary's) time: the cycle's first step
                row[key] = row.get(key, 0.0) + seconds
            fast_row = {}
            if is_main and (step % config.eval.every == 0 or step == last_step):
                row |= evaluation(step)
            log(row)

        for member in population:  # what the weights could learn under each prompt, for the next selection
            if member.id in measured:
                member.signal = sum(measured[member.id]) / len(measured[member.id])

        # --- checkpoint every `checkpoint.every` cycles and at the end (overlap: with the next cycle's population,
        #     collected first; between checkpoints the worker's next job gets the weights alone) ---
        if overlap and cycle < plan.cycle_of(last_step):
            ahead = collect_fast_phase()
        start = time.perf_counter()
        if is_main and (step == last_step or (cycle + 1) % config.checkpoint.every == 0):
            checkpoint = save_checkpoint(
                run_dir.checkpoints, step,
                learner.policy if learner is not None else None,
                learner.optimizer_state() if learner is not None else None,
                {"step": step, "cycle": cycle, "population": [m.to_json() for m in population],
                 "best_prompt": population[0].text, "deployed_prompt": deployed_prompt(), "counters": counters,
                 "wall_time": time.perf_counter() - started},
                keep=config.checkpoint.keep, objects={"fast_phase": ahead} if ahead is not None else None,
            )
            worker_weights = checkpoint / "model"
        elif is_main and overlap and learner is not None:
            worker_weights = save_weights(run_dir.path / "fast-weights", step, learner.policy)
        boundary = {"seconds_checkpoint": time.perf_counter() - start} if is_main else {}
    if is_main:
        shutil.rmtree(run_dir.path / "fast-weights", ignore_errors=True)
    return run_dir.path
