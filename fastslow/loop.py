"""Fast-Slow Training, one cycle at a time (the paper's Algorithm 1). The baselines are settings of the same loop:
`rl` never runs the fast phase, `gepa` never runs the slow one, and `fst-distill`'s slow phase distils the best
prompt into the weights (reverse KL, the student under the seed prompt) instead of RL.

  for each cycle c:
      anchors    = problems of the next T planned batches
      fast phase = re-score the population under the current weights, GEPA on the anchors, top-K of the front
      slow phase = T CISPO steps; each problem's G rollouts split G/K over the population (with
                   loop.reuse_fast_rollouts filled first from the fast phase's rollouts under those members)
                   (fst-distill: T steps of reverse KL from π_θ(· | seed prompt) to π_base(· | best prompt))
      evaluate every `eval.every` steps; checkpoint at the end of the cycle
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, set_seed

from fastslow import engine
from fastslow.checkpoint import latest_checkpoint, load_weights, read_checkpoint, save_checkpoint, set_rng_state
from fastslow.config import Config
from fastslow.evaluation import evaluate
from fastslow.fast.adapter import PolicyAdapter, RolloutCounter
from fastslow.fast.gepa_driver import run_fast_phase
from fastslow.fast.population import SEED_ID, Member
from fastslow.guards import preflight
from fastslow.policy import Sampling, load_model
from fastslow.rundir import RunDir

Observer = Callable[[dict[str, Any]], None]


def run(config: Config, resume: bool = False, observer: Observer | None = None,
        reflection_lm: Callable[[str], str] | None = None) -> Path:
    """Train as `config` says; returns the run directory. `reflection_lm` overrides config.reflection
    (any callable prompt -> text)."""
    with RunDir.claim(config, resume) as run_dir:  # one process per run directory, before anything is touched
        return run_in(run_dir, config, resume, observer, reflection_lm)


def run_in(run_dir: RunDir, config: Config, resume: bool, observer: Observer | None,
           reflection_lm: Callable[[str], str] | None) -> Path:
    # --- everything that can fail on bad input happens before the run directory is written ---
    set_seed(config.seed)
    processes = PartialState()  # one process per GPU under `accelerate launch`; rank 0 owns the run directory
    is_main = processes.is_main_process
    own_reflection = config.mode != "rl" and reflection_lm is None
    ready = preflight(config, processes.num_processes, reflection=own_reflection)  # what `fastslow check` runs
    task, val, seed_prompt, plan = ready.task, ready.val, ready.seed_prompt, ready.plan
    tokenizer, prompt_room, reflection_lm = ready.tokenizer, ready.prompt_room, ready.reflection_lm or reflection_lm
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
    if own_reflection and config.reflection.kind == "self":  # the starting weights this process holds, no copy
        reflection_lm.share_weights(base or (lambda: nullcontext(policy)))
    sampling = Sampling.of(config.model)  # how every rollout is sampled, by one engine (None: transformers on `policy`)
    sampler = engine.vllm_engine(config, learner)
    fast_counter = RolloutCounter()
    adapter = PolicyAdapter(policy, tokenizer, task, sampling, fast_counter, sampler)

    population = [Member(SEED_ID, seed_prompt)]
    student = Member(SEED_ID, seed_prompt)  # fst-distill: the prompt the distilled weights are used with
    counters = {"samples": 0, "rl_rollouts": 0, "fast_rollouts": 0, "reflection_calls": 0, "reflection_failures": 0,
                "reflection_repeats": 0, "fast_rounds": 0, "budget_carry": 0}
    first_step, started = 1, time.perf_counter()

    def deployed_prompt() -> str:  # fst-distill's weights are used under the seed prompt: they hold the best one
        return seed_prompt if config.mode == "fst-distill" else population[0].text

    def evaluation(step: int) -> dict[str, Any]:
        result = evaluate(policy, base, tokenizer, task, val, deployed_prompt(), seed_prompt,
                          samples=config.eval.samples, kl_prompts=config.eval.kl_prompts, sampling=sampling,
                          seed=config.seed * 1_000_003 + step, engine=sampler)
        return asdict(result)

    def log(row: dict[str, Any]) -> None:
        row = {"mode": config.mode, **counters, "best_prompt_id": population[0].id,
               "wall_time": time.perf_counter() - started, **row}
        row.pop("budget_carry")
        run_dir.log(row)  # a no-op on ranks that do not own the run directory
        if is_main and observer:
            observer(row)

    checkpoint = latest_checkpoint(run_dir.checkpoints) if resume else None
    if checkpoint is not None:
        state, trainer_state, rng = read_checkpoint(checkpoint)
        if learner is not None:
            load_weights(learner.policy, checkpoint / "model")
            learner.load_optimizer_state(trainer_state)
        set_rng_state(rng)
        population = [Member.from_json(m) for m in state["population"]]
        counters, first_step = {**counters, **state["counters"]}, state["step"] + 1
        run_dir.truncate_metrics(state["step"])
    else:
        if resume:  # killed before its first checkpoint: start over
            run_dir.truncate_metrics(-1)
        log({"step": 0, "cycle": 0, **(evaluation(0) if is_main else {})})

    last_step = config.loop.steps
    for cycle in range(plan.cycle_of(first_step), plan.cycle_of(last_step) + 1):
        fast_seconds = {"seconds_generate": 0.0, "seconds_score": 0.0, "seconds_reflect": 0.0}
        reflection_failed, reusable = None, None

        # --- fast phase: evolve the prompts on this cycle's anchor set, weights frozen ---
        if config.mode != "rl":
            anchors = plan.anchor_set(cycle, last_step)
            budget = config.gepa.budget(len(anchors)) + counters["budget_carry"]
            work_dir = run_dir.path / "gepa" / f"cycle-{cycle}"
            fast = None
            if is_main:
                shutil.rmtree(work_dir, ignore_errors=True)  # scratch left by a run killed mid-cycle
                fast_counter.seconds_generate = fast_counter.seconds_score = 0.0
                fast = run_fast_phase(population, anchors, adapter, reflection_lm, cycle=cycle, budget=budget,
                                      population_size=config.loop.population_size,
                                      minibatch_size=config.gepa.reflection_minibatch_size,
                                      proposals_per_iteration=config.gepa.proposals(budget),
                                      template=config.reflection.resolved_template(config.model.path), seed=config.seed + cycle,
                                      work_dir=work_dir, rescore_population=config.gepa.rescore_population,
                                      keep_signal_member=config.loop.keep_signal_member,
                                      refuse=prompt_room.refusal,
                                      keep_rollouts=config.mode == "fst" and config.loop.reuse_fast_rollouts,
                                      skip_repeats=config.gepa.skip_repeats)
            if processes.num_processes > 1:
                fast = broadcast_object_list([fast])[0]  # every rank trains on rank 0's population
            population, reusable = fast.population, fast.reusable  # the cycle's steps consume `reusable`
            counters["fast_rollouts"] += fast.rollouts
            counters["budget_carry"] = budget - fast.budget_spent
            counters["reflection_calls"] += fast.reflection_calls
            counters["reflection_failures"] += fast.reflection_failures
            counters["reflection_repeats"] += fast.reflection_repeats
            counters["fast_rounds"] += fast.rounds
            reflection_failed = fast.reflection_failed
            fast_seconds = {"seconds_generate": fast_counter.seconds_generate,
                            "seconds_score": fast_counter.seconds_score, "seconds_reflect": fast.seconds_reflect}
            run_dir.write_population(cycle, population, reflection_failed=fast.reflection_failed,
                                     metric_calls=fast.metric_calls, rounds=fast.rounds,
                                     reflection_calls=fast.reflection_calls, reflection_failures=fast.reflection_failures)

        # --- slow phase: T RL steps with the population frozen (fst-distill: T distillation steps) ---
        measured: dict[str, list[float]] = {}  # member id -> within-prompt reward variance, per step
        for step in plan.cycle_steps(cycle, last_step):
            batch = plan.batch(step)
            row: dict[str, Any] = {"step": step, "cycle": cycle, "reflection_failed": reflection_failed}
            if learner is not None:
                stats = (learner.distill_step(batch, student, teacher=population[0]) if config.mode == "fst-distill"
                         else learner.step(batch, population, reusable))
                counters["rl_rollouts"] += stats.fresh_rollouts
                row |= stats.metrics()
                for member_id, variance in stats.member_signal.items():
                    if variance is not None:
                        measured.setdefault(member_id, []).append(variance)
            else:  # gepa mode: the best prompt's score on this step's problems (already measured on the anchors)
                scores = population[0].scores
                row |= {"reward_mean": sum(scores.get(p.id, 0.0) for p in batch) / len(batch), "seconds_update": 0.0}
            counters["samples"] += len(batch)
            for key, seconds in fast_seconds.items():  # the fast phase's time goes to the cycle's first step
                row[key] = row.get(key, 0.0) + seconds
            fast_seconds = dict.fromkeys(fast_seconds, 0.0)
            if is_main and (step % config.eval.every == 0 or step == last_step):
                row |= evaluation(step)
            log(row)

        for member in population:  # what the weights could learn under each prompt, for the next selection
            if member.id in measured:
                member.signal = sum(measured[member.id]) / len(measured[member.id])

        # --- checkpoint at the cycle boundary ---
        if is_main:
            save_checkpoint(
                run_dir.checkpoints, step,
                learner.policy if learner is not None else None,
                learner.optimizer_state() if learner is not None else None,
                {"step": step, "cycle": cycle, "population": [m.to_json() for m in population],
                 "best_prompt": population[0].text, "deployed_prompt": deployed_prompt(), "counters": counters},
                keep=config.checkpoint.keep,
            )
    return run_dir.path
