"""`fastslow demo` wiring, on the tiny model (the shipped demo config uses the micro model)."""

from pathlib import Path

import yaml

from fastslow.config import load_config
from fastslow.demo import DEMO_CONFIG, run_demo


def test_shipped_demo_config_is_valid_and_uses_the_micro_model():
    config = load_config(DEMO_CONFIG)
    assert config.model.path == "micro" and config.reflection.kind == "self"
    assert config.reflection.resolved_template(config.model.path) == "compact"


def test_demo_writes_both_runs_and_a_report_that_compares_them(tmp_path, tiny_model_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).parent)  # the test task is imported as doubles:ShortAnswerTask
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 1, "model": {"path": tiny_model_path, "max_new_tokens": 6},
        "task": {"name": "doubles:ShortAnswerTask", "train_size": 16, "val_size": 4},
        "loop": {"steps": 2, "steps_per_cycle": 2, "problems_per_step": 2, "rollouts_per_problem": 2, "population_size": 2},
        "gepa": {"budget_passes": 3}, "reflection": {"kind": "self", "max_new_tokens": 16},
        "eval": {"every": 2, "samples": 1, "kl_prompts": 2},
    }))
    html = run_demo(tmp_path / "out", config_path=config)
    assert (tmp_path / "out" / "fst" / "metrics.jsonl").is_file() and (tmp_path / "out" / "rl" / "metrics.jsonl").is_file()
    text = Path(html).read_text()
    assert "training samples FST is" in text and "RL" in text
