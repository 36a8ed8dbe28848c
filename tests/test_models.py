"""The model registry (fastslow.models): short names, local directories and hub ids, and its one-line errors."""

import pytest

from fastslow.errors import FastSlowError
from fastslow.models import MICRO_MODELS, display_name, hub_id, is_micro, resolve_model_path


def test_short_names_local_dirs_and_hub_ids_resolve_to_what_transformers_loads(tmp_path):
    assert resolve_model_path("micro") == str(MICRO_MODELS["micro"])
    assert resolve_model_path("micro-v4") == str(MICRO_MODELS["micro-v4"])
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)
    assert resolve_model_path("Qwen/Qwen3-1.7B") == "Qwen/Qwen3-1.7B"  # a hub id is left to transformers


def test_a_path_that_is_no_model_is_refused_naming_the_field(tmp_path):
    with pytest.raises(FastSlowError, match=rf"^reflection.model: {tmp_path} has no config.json"):
        resolve_model_path(str(tmp_path), "reflection.model")
    with pytest.raises(FastSlowError, match=r"^model.path: ./nowhere does not exist; .* micro, micro-v4"):
        resolve_model_path("./nowhere")


def test_names_for_cards_servers_and_templates(tmp_path):
    assert display_name("micro") == "micro" and display_name(f"{tmp_path}/") == tmp_path.name
    assert display_name("Qwen/Qwen3-1.7B") == "Qwen3-1.7B"
    assert hub_id("Qwen/Qwen3-1.7B") == "Qwen/Qwen3-1.7B" and hub_id("micro") is None and hub_id(str(tmp_path)) is None
    assert is_micro("micro-v4") and not is_micro("Qwen/Qwen3-1.7B") and not is_micro(None)
