"""loop.fast_phase overlap: the next cycle's fast phase runs in a worker process beside the slow phase, on the weights
the cycle started from. It computes what a synchronous fast phase computes from the same job; a dead worker is
replaced, a failing one leaves the carried population; the settings come from the config in one place."""

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from doubles import DyingReflectionLM, ScriptedReflectionLM, ShortAnswerTask
from test_loop import rows, tiny_config

import fastslow.loop as loop
from fastslow.checkpoint import load_weights
from fastslow.config import parse_config
from fastslow.fast.adapter import PolicyAdapter, batch_rows
from fastslow.fast.gepa_driver import FastJob, FastPhaseSettings
from fastslow.fast.phase import FastPhase, OverlapFastPhase, WorkerSpec, build
from fastslow.fast.population import Member
from fastslow.guards import no_instruction
from fastslow.policy import Sampling, load_model, load_tokenizer

T = 2


def overlap_config(tmp_path, model_path, **loop_settings):
    return tiny_config(tmp_path, model_path, "fst", loop={"steps": 6, "steps_per_cycle": T, "fast_phase": "overlap",
                                                          **loop_settings}, checkpoint={"keep": 10})


def population_file(run, cycle):
    return json.loads((Path(run) / "population" / f"cycle-{cycle}.json").read_text())


def chosen(member: dict) -> dict:
    """What the fast phase decides about a member: which prompt, from which parent, scoring what."""
    return {k: member[k] for k in ("id", "text", "parent", "scores")}


def sync_fast_phase(config, weights, job: FastJob, scratch):
    """The fast phase run here, synchronously, on the policy at `weights` (a checkpoint's model dir)."""
    model = load_model(config.model.path)
    if weights is not None:
        load_weights(model, weights)
    adapter = PolicyAdapter(model, load_tokenizer(config.model.path), ShortAnswerTask(), Sampling.of(config.model),
                            batch_rows=batch_rows(config))
    phase = FastPhase(FastPhaseSettings.of(config), adapter, ScriptedReflectionLM(), scratch)
    phase.start(job)
    return phase.result()


@pytest.mark.slow
def test_overlap_computes_each_cycles_population_from_the_weights_the_previous_cycle_started_from(tmp_path,
                                                                                                   tiny_model_path):
    config = parse_config(overlap_config(tmp_path, tiny_model_path))
    run = loop.run(config, reflection_lm=ScriptedReflectionLM())
    metrics = rows(run)
    assert [r["step"] for r in metrics] == list(range(7))
    # cycle 0 ran on the starting weights before the first step; cycle c > 0 on the weights of cycle c-1's start
    assert [population_file(run, c)["weights_step"] for c in range(3)] == [0, 0, 2]
    assert [r["fast_phase_staleness"] for r in metrics[1:]] == [0, 1, 2, 3, 2, 3]
    for r in metrics[1:]:  # the trainer waits, if at all, before a cycle's first step
        if r["step"] % T == 1:
            assert math.isfinite(r["fast_phase_wait_s"]) and r["fast_phase_wait_s"] >= 0
            assert r["fast_phase_s"] == 0  # the training process never runs it itself
        else:
            assert r["fast_phase_wait_s"] is None and r["fast_phase_s"] is None
    assert metrics[1]["fast_phase_wait_s"] > 0  # cycle 0: nothing to run beside, the trainer waits for all of it
    for cycle in range(3):  # the worker's clocks add to the cycle's first step's own (its RL generation, scoring)
        first, population = metrics[1 + cycle * T], population_file(run, cycle)
        assert population["seconds"] >= population["seconds_generate"] > 0
        assert first["seconds_generate"] > population["seconds_generate"]
        assert first["seconds_reflect"] == population["seconds_reflect"]

    # (a) cycle 2's population is exactly what a synchronous fast phase computes from the same job: the weights of
    # the checkpoint at step 2, cycle 1's population (as its file holds it, with the signals measured so far), the
    # anchors of cycle 2, the same budget and seed
    previous, expected = population_file(run, 1), population_file(run, 2)
    from fastslow.data import DataPlan

    task = ShortAnswerTask()
    plan = DataPlan(task.problems("train", config.task.train_size, config.seed), config.loop.problems_per_step, T,
                    config.seed)
    job = FastJob(2, [Member.from_json(m) for m in previous["members"]], plan.anchor_set(2, config.loop.steps),
                  expected["budget"], seed=config.seed + 2, weights_step=2)
    result = sync_fast_phase(config, Path(run) / "checkpoints" / "step-000002" / "model", job, tmp_path / "sync")
    # `signal` aside: the loop brings it up to date with what cycle 1's RL steps measured, after the fast phase
    assert [chosen(m.to_json()) for m in result.population] == [chosen(m) for m in expected["members"]]
    assert result.metric_calls == expected["metric_calls"] and result.rounds == expected["rounds"]


def test_overlap_with_lora_loads_the_adapters_of_each_checkpoint_and_reflects_with_them_off(tmp_path, tiny_model_path):
    """The worker builds the trainer's adapters on its own copy of the model, loads each checkpoint's adapter weights,
    and, reflecting with the starting policy (reflection.kind self), turns them off."""
    config = parse_config(tiny_config(tmp_path, tiny_model_path, "fst", model={"lora": {"r": 4, "alpha": 8}},
                                      loop={"steps": 6, "steps_per_cycle": T, "fast_phase": "overlap"},
                                      gepa={"budget_passes": 2}))
    run = loop.run(config)  # the reflection LM from the config: the tiny model itself, frozen
    assert [r["step"] for r in rows(run)] == list(range(7))
    populations = [population_file(run, c) for c in range(3)]
    assert [p["weights_step"] for p in populations] == [0, 0, 2] and not any(p["fallback"] for p in populations)
    assert sum(p["reflection_calls"] for p in populations) > 0  # (a cycle's budget may leave no round: carry-over)


def worker_spec(tmp_path, model_path, reflection, task="doubles:ShortAnswerTask"):
    config = parse_config(tiny_config(tmp_path, model_path, "fst", task={"name": task}))
    return config, WorkerSpec(config, FastPhaseSettings.of(config), tmp_path / "worker", reflection, threads=1)


def first_job(config):
    task = ShortAnswerTask()
    return FastJob(0, [Member("seed", "Answer.")], task.problems("train", 8, 0), budget=24, seed=5)


def test_a_worker_that_dies_mid_cycle_is_replaced_and_gives_the_same_population(tmp_path, tiny_model_path, caplog):
    config, spec = worker_spec(tmp_path, tiny_model_path, DyingReflectionLM(tmp_path / "died-once"))
    job = first_job(config)
    with OverlapFastPhase(spec) as phase:
        phase.start(job)
        result = phase.result()
        assert phase.process.is_alive()  # the replacement serves the next jobs
    assert (tmp_path / "died-once").exists() and "worker process died" in caplog.text
    assert not result.fallback and result.seconds_waited > 0
    expected = sync_fast_phase(config, None, job, tmp_path / "sync")
    assert [chosen(m.to_json()) for m in result.population] == [chosen(m.to_json()) for m in expected.population]


def test_a_failing_worker_leaves_the_carried_population_and_says_so(tmp_path, tiny_model_path, caplog):
    config, spec = worker_spec(tmp_path, tiny_model_path, ScriptedReflectionLM(), task="doubles:BrokenVerifierTask")
    job = first_job(config)
    with OverlapFastPhase(spec) as phase:
        phase.start(job)
        result = phase.result()
    assert result.fallback and [m.text for m in result.population] == ["Answer."]
    assert result.budget_spent == result.budget == 24  # charged: the next cycle does not pay for two
    assert "scripted verifier failure" in caplog.text and "keeping the carried population" in caplog.text
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1


def advice(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "gepa.proposals_per_iteration" in r.getMessage()]


def test_overlap_says_once_when_the_fast_phase_outlasts_the_rl_steps_beside_it(tmp_path, tiny_model_path, caplog):
    config, spec = worker_spec(tmp_path, tiny_model_path, ScriptedReflectionLM())
    job = replace(first_job(config), budget=96)  # several GEPA rounds a cycle
    with OverlapFastPhase(spec) as phase:
        for cycle in range(5):  # nothing runs beside the worker: the trainer waits for every fast phase whole
            phase.start(replace(job, cycle=cycle))
            result = phase.result()
    assert result.rounds > 1 and result.seconds_waited > 0
    assert len(advice(caplog)) == 1 and advice(caplog)[0].startswith("fast phase: before cycle 3 the RL steps waited ")


def test_overlap_gives_no_advice_where_the_rl_steps_outlast_the_fast_phase(tmp_path, tiny_model_path, caplog):
    config, spec = worker_spec(tmp_path, tiny_model_path, ScriptedReflectionLM())
    job = replace(first_job(config), budget=96)
    with OverlapFastPhase(spec) as phase:
        phase.start(job)
        seconds = phase.result().seconds
        for cycle in range(1, 4):
            phase.start(replace(job, cycle=cycle))
            time.sleep(2 * seconds + 0.2)  # the RL steps, twice as long as a fast phase
            result = phase.result()
    assert result.rounds > 1 and advice(caplog) == []


def test_a_worker_that_cannot_start_stops_the_run_in_one_line(tmp_path, tiny_model_path):
    from fastslow.errors import FastSlowError

    config, spec = worker_spec(tmp_path, tiny_model_path, ScriptedReflectionLM(), task="doubles:NoSuchTask")
    with OverlapFastPhase(spec) as phase, pytest.raises(FastSlowError) as caught:
        phase.start(first_job(config))
        phase.result()
    assert str(caught.value).startswith("loop.fast_phase: the fast phase's worker could not start (task.name: ")
    assert "\n" not in str(caught.value)


def test_a_reflection_lm_that_cannot_travel_to_the_worker_is_refused_in_one_line(tmp_path, tiny_model_path):
    from fastslow.errors import FastSlowError

    _, spec = worker_spec(tmp_path, tiny_model_path, lambda prompt: "```\nAnswer.\n```")
    with pytest.raises(FastSlowError, match="loop.fast_phase: overlap runs the reflection LM in a worker process"):
        OverlapFastPhase(spec)


@pytest.mark.parametrize("schedule", ["sync", "overlap"])
def test_the_fast_phase_settings_come_from_the_config(tmp_path, schedule):
    def settings(**sections):
        data = {"mode": "fst", "model": {"path": "micro"}, "loop": {"fast_phase": schedule}, **sections}
        return parse_config(data)

    plain = FastPhaseSettings.of(settings())
    assert (plain.population_size, plain.template, plain.keep_rollouts, plain.keep_signal_member) == (
        4, "compact", False, False)  # the paper's K, the template the micro model was trained on
    assert plain.refuse is no_instruction and plain.gepa.proposals(960) == 4
    tuned = FastPhaseSettings.of(settings(loop={"fast_phase": schedule, "population_size": 2, "reuse_fast_rollouts": True,
                                                "keep_signal_member": True},
                                          reflection={"kind": "litellm", "model": "openai/gpt-4.1-mini"},
                                          gepa={"proposals_per_iteration": 16}))
    assert (tuned.population_size, tuned.template, tuned.keep_rollouts, tuned.keep_signal_member) == (
        2, "gepa", True, True)
    assert tuned.gepa.proposals(960) == 16
    distill = FastPhaseSettings.of(settings(mode="fst-distill", loop={"fast_phase": schedule,
                                                                      "reuse_fast_rollouts": True}))
    assert distill.keep_rollouts is False  # only fst's RL steps train on the fast phase's rollouts
    phase = build(settings(), plain, tmp_path)
    assert isinstance(phase, OverlapFastPhase) is (schedule == "overlap") and phase.job is None
    phase.close()


def test_the_workers_device_is_checked_in_one_line(tmp_path):
    from fastslow.errors import FastSlowError

    def config(**loop):
        return parse_config({"mode": "fst", "model": {"path": "micro"}, "loop": loop})

    with pytest.raises(FastSlowError) as caught:
        config(fast_phase="overlap", fast_phase_device="gpu1")
    assert str(caught.value).startswith("config: loop.fast_phase_device: ") and "should match pattern" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert config(fast_phase="sync", fast_phase_device="cuda:1").loop.fast_phase_device == "cuda:1"  # ignored there:
    # one override can serve every arm of a comparison (benchmarks/overlap.py gives its --set to RL's too)
    overlap = config(fast_phase="overlap", fast_phase_device="cuda:1")
    assert overlap.loop.fast_phase_device == "cuda:1"
    if not torch.cuda.is_available():  # no card to place the worker on: refused before a worker starts
        with pytest.raises(FastSlowError, match=r"^loop.fast_phase_device: cuda:1, but this machine has no CUDA device"):
            build(overlap, FastPhaseSettings.of(overlap), tmp_path)
