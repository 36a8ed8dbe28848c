"""The command line: `check`, and bad input — one line naming the field or file, exit code 2, no traceback,
and nothing already in a run directory overwritten."""

import json
import socket

import pytest
import yaml
from clirun import assert_user_error, fastslow, snapshot, tiny_run, write


def test_check_prints_the_resolved_config_with_the_papers_defaults(tmp_path):
    result = fastslow("check", str(write(tmp_path, {"name": "x", "task": {"name": "strings"}, "loop": {"steps": 12}})))
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    # the paper's schedule
    assert resolved["loop"] == {"steps": 12, "steps_per_cycle": 6, "population_size": 4, "rollouts_per_problem": 8,
                                "problems_per_step": 32, "rollout_allocation": "even", "keep_signal_member": False,
                                "reuse_fast_rollouts": False, "fast_phase": "sync", "fast_phase_device": None}
    assert resolved["rl"]["importance_cap"] == 4.0 and resolved["rl"]["kl_coef"] == 0.001
    assert resolved["rl"]["adam_betas"] == [0.9, 0.999] and resolved["rl"]["weight_decay"] == 0.0
    assert resolved["rl"]["warmup_steps"] == 10 and resolved["rl"]["drop_zero_variance"] is True
    assert resolved["gepa"]["budget_passes"] == 5.0 and resolved["gepa"]["reflection_minibatch_size"] == 3


@pytest.mark.parametrize("data, fragments", [
    ({"loop": {"step": 3}}, ["loop.step", "unknown field"]),
    ({"loop": {"population_size": 3}}, ["population_size", "must divide", "rollouts_per_problem"]),
    ({"mode": "both"}, ["mode", "fst"]),
    ({"reflection": {"kind": "openai", "model": "m"}}, ["reflection.base_url"]),
    # values that pass a plain comparison but that the optimizer, the sampler or the HTTP client would reject
    ({"rl": {"adam_betas": [1.0, 0.999]}}, ["rl.adam_betas.0", "less than 1"]),
    ({"rl": {"adam_betas": [0.9, -0.1]}}, ["rl.adam_betas.1", "greater than or equal to 0"]),
    ({"model": {"temperature": float("inf")}}, ["model.temperature", "finite"]),
    ({"rl": {"max_grad_norm": float("inf")}}, ["rl.max_grad_norm", "finite"]),
    ({"reflection": {"timeout_s": float("inf")}}, ["reflection.timeout_s", "finite"]),
    ({"rl": {"learning_rate": float("nan")}}, ["rl.learning_rate", "finite"]),
    ({"gepa": {"budget_passes": float("nan")}}, ["gepa.budget_passes", "finite"]),
    ({"seed": -1}, ["seed", "greater than or equal to 0"]),
    ({"checkpoint": {"keep": 0}}, ["checkpoint.keep"]),
    ({"model": {"path": "/no/such/model"}}, ["model.path", "/no/such/model"]),  # check looks at the model path
    ({"engine": {"kind": "vllm", "vllm_mode": "remote"}}, ["engine.vllm_mode", "colocate"]),
    ({"engine": {"server_url": "127.0.0.1:8000"}}, ["engine.server_url", "http"]),
])
def test_check_rejects_invalid_configs(tmp_path, data, fragments):
    assert_user_error(fastslow("check", str(write(tmp_path, data))), *fragments)


def test_missing_config_file(tmp_path):
    assert_user_error(fastslow("check", str(tmp_path / "nope.yaml")), "nope.yaml", "not found")


def test_config_bytes_that_are_not_utf8(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert_user_error(fastslow("check", tmp_path / "latin1.yaml"), "latin1.yaml", "not UTF-8", "0xe9")


def test_check_refuses_a_completion_longer_than_the_models_context(tmp_path, tiny_model_path):
    config = write(tmp_path, {"model": {"path": tiny_model_path, "max_new_tokens": 4096}})
    assert_user_error(fastslow("check", config), "model.max_new_tokens", "context of 2048")


def test_debug_shows_the_traceback(tmp_path):
    result = fastslow("--debug", "check", tmp_path / "nope.yaml")
    assert result.returncode != 0 and "Traceback" in result.stderr and "FastSlowError" in result.stderr


def test_unwritable_run_root_is_one_line_and_creates_nothing(tmp_path, tiny_model_path):
    (tmp_path / "a-file").write_text("")
    data = tiny_run(tmp_path, tiny_model_path, output_dir=str(tmp_path / "a-file" / "runs"))
    assert_user_error(run_in_tests_dir(tmp_path, data), "output_dir", str(tmp_path / "a-file"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "config.yaml"]


def test_report_on_an_empty_run_or_into_an_unwritable_place(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("")
    assert_user_error(fastslow("report", run_dir), "metrics.jsonl", "no metrics rows")
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 0, "val_accuracy": 0.5}) + "\n")
    (tmp_path / "a-file").write_text("")
    assert_user_error(fastslow("report", run_dir, "--out", tmp_path / "a-file" / "report"), str(tmp_path / "a-file"))
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.jsonl"]


def run_in_tests_dir(tmp_path, data):
    return fastslow("run", write(tmp_path, data))


def test_missing_model_path(tmp_path):
    result = run_in_tests_dir(tmp_path, tiny_run(tmp_path, str(tmp_path / "no-model")))
    assert_user_error(result, "model.path", "no-model")
    assert not (tmp_path / "runs" / "r").exists()  # nothing created for a run that cannot start


def test_vllm_engine_without_vllm_installed(tmp_path, tiny_model_path):
    try:  # where vLLM is installed, tests/test_vllm.py runs the engine
        import vllm  # noqa: F401
        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    result = run_in_tests_dir(tmp_path, tiny_run(tmp_path, tiny_model_path, engine={"kind": "vllm"}))
    assert_user_error(result, "engine.kind", "vllm is not installed", "extra vllm")
    assert not (tmp_path / "runs" / "r").exists()


def test_unreachable_reflection_endpoint(tmp_path, tiny_model_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tiny_run(tmp_path, tiny_model_path, mode="fst",
                    reflection={"kind": "openai", "model": "m", "base_url": f"http://127.0.0.1:{port}/v1"})
    assert_user_error(run_in_tests_dir(tmp_path, data), "reflection.base_url", str(port))


@pytest.mark.parametrize("content, fragments", [("", ["empty.jsonl"]), ("{not json\n[1,2\n", ["empty.jsonl"])])
def test_empty_or_malformed_dataset(tmp_path, tiny_model_path, content, fragments):
    (tmp_path / "empty.jsonl").write_text(content)
    data = tiny_run(tmp_path, tiny_model_path, task={"name": "jsonl", "args": {"path": str(tmp_path / "empty.jsonl")}})
    assert_user_error(run_in_tests_dir(tmp_path, data), *fragments)


def test_a_run_dir_holding_a_different_run_is_left_alone(tmp_path, tiny_model_path):
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: r\nmode: fst\n")
    (run_dir / "metrics.jsonl").write_text('{"step": 0}\n')
    before = snapshot(run_dir)
    result = run_in_tests_dir(tmp_path, tiny_run(tmp_path, tiny_model_path))
    assert_user_error(result, str(run_dir), "already exists")
    result = fastslow("run", write(tmp_path, tiny_run(tmp_path, tiny_model_path)), "--resume")
    assert_user_error(result, "config.yaml", "different run")
    assert snapshot(run_dir) == before


def test_bad_override(tmp_path):
    assert_user_error(fastslow("check", str(write(tmp_path, {})), "--set", "loop.steps"), "--set", "KEY=VALUE")


@pytest.mark.parametrize("text", ["", "# a template, not filled in\n", "{}\n", "name: x\n",
                                  "name: x\nseed: 3\noutput_dir: out\nreport_to: []\n", "model: {}\ntask: {}\n"],
                         ids=["empty", "comments", "braces", "name", "bookkeeping", "empty-sections"])
@pytest.mark.parametrize("command", ["check", "run"])
def test_a_config_that_names_no_model_and_no_task_is_refused_not_run_with_the_defaults(tmp_path, text, command):
    (tmp_path / "c.yaml").write_text(text)
    result = fastslow(command, "c.yaml", cwd=tmp_path)
    assert_user_error(result, "c.yaml", "names neither a model nor a task", "model.path or task.name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # no ./runs/run started


def test_a_near_empty_config_plus_set_naming_the_task_is_an_order(tmp_path):
    (tmp_path / "c.yaml").write_text("name: x\n")
    result = fastslow("check", "c.yaml", "--set", "task.name=cipher", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["task"]["name"] == "cipher"


def test_the_demo_config_passes_check():
    from fastslow.demo import DEMO_CONFIG

    result = fastslow("check", DEMO_CONFIG)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("text, pair, fragments", [
    ("task: {name: strings}\nseed: 0\n", "seed.x=1", ["--set seed.x", "seed holds the value 0", "not a section"]),
    ("task: {name: strings}\nloop: {steps: 3}\n", "loop.steps.x.y=1", ["--set loop.steps.x.y", "loop.steps holds"]),
    ("task: {name: strings}\nrl: {adam_betas: [0.9, 0.99]}\n", "rl.adam_betas.0=0.5",
     ["--set rl.adam_betas.0", "rl.adam_betas holds a list", "set it whole"]),
    ("task: {name: strings, seed_prompt: hi}\n", "task.seed_prompt.x=1", ["task.seed_prompt holds the value 'hi'"]),
    ("task: {name: strings}\n", "loop..steps=1", ["--set loop..steps", "part of the dotted key is empty"]),
    ("task: {name: strings}\n", ".steps=1", ["--set .steps", "empty"]),
    ("task: {name: strings}\n", "loop.=1", ["--set loop.", "empty"]),
    ("task: {name: strings}\n", "loop.steps=[1", ["--set loop.steps=[1", "not valid YAML"]),
    ("task: {name: strings}\n", "name=a: b: c", ["--set name=a: b: c", "not valid YAML", "column"]),
    ("task: {name: strings}\n", "loop.steps=!!python/object:os.system x", ["not valid YAML"]),
    ("task: {name: strings}\n", "loop.stepz=3", ["loop.stepz", "unknown field"]),
])
def test_every_set_path_error_is_one_line(tmp_path, text, pair, fragments):
    (tmp_path / "c.yaml").write_text(text)
    assert_user_error(fastslow("check", tmp_path / "c.yaml", "--set", pair), *fragments)


def test_set_through_a_null_section_makes_it(tmp_path):
    (tmp_path / "c.yaml").write_text("task: {name: strings}\nmodel: {lora: null}\n")
    result = fastslow("check", tmp_path / "c.yaml", "--set", "model.lora.r=8")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["model"]["lora"]["r"] == 8


def test_a_key_given_twice_is_refused_with_its_line(tmp_path):
    (tmp_path / "c.yaml").write_text("task: {name: strings}\nloop: {steps: 3}\nloop: {steps: 5}\n")
    assert_user_error(fastslow("check", tmp_path / "c.yaml"), "c.yaml", "'loop' appears twice", "line 3")
    (tmp_path / "c.yaml").write_text("base: &b {steps: 3}\ntask: {name: strings}\nloop:\n  <<: *b\n  steps: 5\n")
    assert_user_error(fastslow("check", tmp_path / "c.yaml"), "base", "unknown field")  # merge keys still work


@pytest.mark.parametrize("command", [[], ["run"], ["micro", "eval"]], ids=["fastslow", "run", "micro-eval"])
def test_help_shows_boolean_flags_bare(command):
    result = fastslow(*command, "--help", env={"COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    flag = {"": "--debug", "run": "--resume", "micro eval": "--json"}[" ".join(command)]
    assert flag in result.stdout and "--help" in result.stdout
    assert "<bool>" not in result.stdout and "<list" not in result.stdout, result.stdout


def test_a_config_file_too_large_to_be_one_is_refused_unread(tmp_path):
    with open(tmp_path / "data.jsonl", "wb") as f:  # a dataset passed as the config: 2 GB, sparse
        f.truncate(2 << 30)
    assert_user_error(fastslow("check", tmp_path / "data.jsonl"), "data.jsonl", "2147483648 bytes", "16 MB",
                      "right file")
