"""Config values that select a mode."""

import pytest

from fastslow.config import parse_config
from fastslow.errors import FastSlowError


def test_fst_distill_is_a_mode_and_does_not_split_rollouts_over_the_population():
    config = parse_config({"mode": "fst-distill", "loop": {"population_size": 3, "rollouts_per_problem": 8}})
    assert config.mode == "fst-distill"  # every rollout is the student's, under the seed prompt: K need not divide G
    with pytest.raises(FastSlowError, match="population_size"):
        parse_config({"mode": "fst", "loop": {"population_size": 3, "rollouts_per_problem": 8}})


def test_an_unknown_mode_names_the_field_and_the_modes():
    with pytest.raises(FastSlowError) as error:
        parse_config({"mode": "distill"})
    assert "mode" in str(error.value) and "'fst-distill'" in str(error.value)


def test_a_gepa_round_that_cannot_fit_a_cycles_budget_is_refused():
    # a cycle's anchors: T x problems_per_step = 2 x 4 = 8 problems; budget_passes 3 -> 24 metric calls
    sizes = {"loop": {"steps_per_cycle": 2, "problems_per_step": 4}, "gepa": {"budget_passes": 3}}
    fits = parse_config({**sizes, "gepa": {"budget_passes": 3, "proposals_per_iteration": 4}})  # 2 x 3 x 4 = 24
    assert fits.gepa.proposals_per_iteration == 4
    with pytest.raises(FastSlowError) as error:  # 2 x 3 x 5 = 30 > 24: GEPA's stopper would never start a round
        parse_config({**sizes, "gepa": {"budget_passes": 3, "proposals_per_iteration": 5}})
    message = str(error.value)
    assert message.startswith("config: gepa.proposals_per_iteration:") and "30" in message and "24" in message
    with pytest.raises(FastSlowError, match="gepa.max_metric_calls"):
        parse_config({**sizes, "gepa": {"max_metric_calls": 10, "reflection_minibatch_size": 2, "proposals_per_iteration": 3}})
    # RL runs no fast phase; a small training set makes the anchor set (and the budget) smaller
    assert parse_config({**sizes, "mode": "rl", "gepa": {"budget_passes": 0.5}}).mode == "rl"
    with pytest.raises(FastSlowError, match="budget of 12 metric calls"):
        parse_config({**sizes, "task": {"train_size": 4}, "gepa": {"budget_passes": 3, "proposals_per_iteration": 3}})


def test_auto_proposals_are_four_per_round_or_what_the_cycles_budget_pays_for():
    gepa = parse_config({}).gepa
    assert gepa.proposals_per_iteration == "auto"
    # each proposal costs 2 x reflection_minibatch_size (3) metric calls: its parent's and its child's minibatch
    assert [gepa.proposals(budget) for budget in (960, 24, 23, 12, 6, 5)] == [4, 4, 3, 2, 1, 1]
    assert parse_config({"gepa": {"proposals_per_iteration": 7}}).gepa.proposals(960) == 7
    with pytest.raises(FastSlowError, match="2 x 3 x 1 = 6"):  # not even one proposal fits: GEPA would never run
        parse_config({"loop": {"steps_per_cycle": 1, "problems_per_step": 1}})


def test_an_experiment_base_config_that_names_no_model_and_no_task_is_refused_before_any_run(tmp_path):
    from fastslow.experiments import run_experiment

    (tmp_path / "base.yaml").write_text("# nothing yet\n")
    with pytest.raises(FastSlowError, match="base.yaml: names neither a model nor a task"):
        run_experiment("efficiency", tmp_path / "base.yaml", out=tmp_path / "out")
    with pytest.raises(FastSlowError, match="--set seed.x: seed holds the value 0"):
        run_experiment("efficiency", None, out=tmp_path / "out", overrides={"seed": 0, "seed.x": 1})
    assert not (tmp_path / "out").exists()
