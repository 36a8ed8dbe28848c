"""The command line: `check`, and bad input — one line naming the field or file, exit code 2, no traceback,
and nothing already in a run directory overwritten."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def fastslow(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.run([sys.executable, "-m", "fastslow", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def write(tmp_path, data, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_check_prints_the_resolved_config_with_the_papers_defaults(tmp_path):
    result = fastslow("check", str(write(tmp_path, {"name": "x", "loop": {"steps": 12}})))
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["loop"] == {"steps": 12, "steps_per_cycle": 6, "population_size": 4, "rollouts_per_problem": 8,
                                "problems_per_step": 32}
    assert resolved["rl"]["importance_cap"] == 4.0 and resolved["rl"]["kl_coef"] == 0.001
    assert resolved["rl"]["adam_betas"] == [0.9, 0.999] and resolved["rl"]["weight_decay"] == 0.0
    assert resolved["rl"]["warmup_steps"] == 10 and resolved["rl"]["drop_zero_variance"] is True
    assert resolved["gepa"]["budget_passes"] == 5.0 and resolved["gepa"]["reflection_minibatch_size"] == 3


@pytest.mark.parametrize("data, fragments", [
    ({"loop": {"step": 3}}, ["loop.step", "unknown field"]),
    ({"loop": {"population_size": 3}}, ["population_size", "must divide", "rollouts_per_problem"]),
    ({"mode": "both"}, ["mode", "fst"]),
    ({"reflection": {"kind": "openai", "model": "m"}}, ["reflection.base_url"]),
])
def test_check_rejects_invalid_configs(tmp_path, data, fragments):
    assert_user_error(fastslow("check", str(write(tmp_path, data))), *fragments)


def test_missing_config_file(tmp_path):
    assert_user_error(fastslow("check", str(tmp_path / "nope.yaml")), "nope.yaml", "not found")


def base_run(tmp_path, model_path, **over):
    data = {"name": "r", "output_dir": str(tmp_path / "runs"), "mode": "rl",
            "model": {"path": model_path, "max_new_tokens": 4},
            "task": {"name": "doubles:ShortAnswerTask", "train_size": 8, "val_size": 2},
            "loop": {"steps": 1, "steps_per_cycle": 1, "problems_per_step": 2, "rollouts_per_problem": 2,
                     "population_size": 1},
            "eval": {"samples": 1, "kl_prompts": 1}}
    data.update(over)
    return data


def run_in_tests_dir(tmp_path, data):
    return fastslow("run", str(write(tmp_path, data)), cwd=Path(__file__).parent)


def test_missing_model_path(tmp_path):
    result = run_in_tests_dir(tmp_path, base_run(tmp_path, str(tmp_path / "no-model")))
    assert_user_error(result, "model.path", "no-model")
    assert not (tmp_path / "runs" / "r").exists()  # nothing created for a run that cannot start


def test_unreachable_reflection_endpoint(tmp_path, tiny_model_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base_run(tmp_path, tiny_model_path, mode="fst",
                    reflection={"kind": "openai", "model": "m", "base_url": f"http://127.0.0.1:{port}/v1"})
    assert_user_error(run_in_tests_dir(tmp_path, data), "reflection.base_url", str(port))


@pytest.mark.parametrize("content, fragments", [("", ["empty.jsonl"]), ("{not json\n[1,2\n", ["empty.jsonl"])])
def test_empty_or_malformed_dataset(tmp_path, tiny_model_path, content, fragments):
    (tmp_path / "empty.jsonl").write_text(content)
    data = base_run(tmp_path, tiny_model_path, task={"name": "jsonl", "args": {"path": str(tmp_path / "empty.jsonl")}})
    assert_user_error(run_in_tests_dir(tmp_path, data), *fragments)


def test_a_run_dir_holding_a_different_run_is_left_alone(tmp_path, tiny_model_path):
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: r\nmode: fst\n")
    (run_dir / "metrics.jsonl").write_text('{"step": 0}\n')
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    result = run_in_tests_dir(tmp_path, base_run(tmp_path, tiny_model_path))
    assert_user_error(result, str(run_dir), "already exists")
    result = fastslow("run", str(write(tmp_path, base_run(tmp_path, tiny_model_path))), "--resume",
                      cwd=Path(__file__).parent)
    assert_user_error(result, "config.yaml", "different run")
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_bad_override(tmp_path):
    assert_user_error(fastslow("check", str(write(tmp_path, {})), "--set", "loop.steps"), "--set", "KEY=VALUE")
