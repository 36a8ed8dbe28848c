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
