"""Guards: `check` refuses whatever `run` refuses before loading weights; sizes that cannot fit are refused with the
numbers before anything is allocated, and reflection answers that cannot become a prompt (empty, only a fence, too
long) are failed reflections, counted and shown."""

import json
import shutil
import socket

import pytest
import yaml
from clirun import assert_user_error, fastslow, tiny_run, write
from doubles import FakeChatEndpoint, ShortAnswerTask

from fastslow.config import parse_config
from fastslow.errors import FastSlowError
from fastslow.guards import PromptRoom, check_rollout_memory, load_model_config
from fastslow.policy import load_tokenizer

GB = 1 << 30


@pytest.fixture(scope="module")
def room(tiny_model_path):
    """The tiny model (context 2048, one token per character) with completions of 64 tokens."""
    config = parse_config({"model": {"path": tiny_model_path, "max_new_tokens": 64}, "reflection": {"max_new_tokens": 256}})
    problems = ShortAnswerTask().problems("train", 8, 0)
    return PromptRoom(load_tokenizer(tiny_model_path), problems, 2048, config)


@pytest.mark.parametrize("answer, reason", [
    ("", "holds no instruction"),
    ("```\n```", "holds no instruction"),
    ("Here it is:\n```python\n```", "holds no instruction"),
    ("x" * 200_000, "200000 characters, longer than reflection.max_new_tokens (256) allows"),
    ("```\n" + "y" * 300 + "\n```", "instruction is 300 tokens, more than reflection.max_new_tokens (256)"),
])
def test_reflection_answers_that_cannot_become_a_prompt(room, answer, reason):
    assert reason in room.refusal(answer)


def test_a_fitting_answer_is_accepted_and_the_context_bounds_what_fits(room, tiny_model_path):
    assert room.refusal("Think first.\n```\nAnswer with one letter.\n```") is None
    wide = PromptRoom(room.tokenizer, [room.longest], 2048, parse_config(
        {"model": {"path": tiny_model_path, "max_new_tokens": 64}, "reflection": {"max_new_tokens": 4096}}))
    assert "a row needs" in wide.refusal("```\n" + "z" * 2000 + "\n```")  # 2000 + problem + 64 > 2048
    with pytest.raises(FastSlowError, match="^task.seed_prompt: with the longest problem .* a row needs"):
        room.check_seed("s" * 2000)
    too_long = PromptRoom(room.tokenizer, [room.longest], 2048, parse_config({"model": {"max_new_tokens": 2047}}))
    with pytest.raises(FastSlowError, match="^model.max_new_tokens: even without a system prompt"):
        too_long.check_seed("Answer.")


def test_rollouts_are_held_to_the_memory_their_kv_cache_needs(tiny_model_path):
    model_config = load_model_config(tiny_model_path)  # 4 layers x 2 KV heads x 32 dims, float32: 2 KB per token

    def config(G):
        return parse_config({"mode": "rl", "model": {"path": tiny_model_path, "max_new_tokens": 64},
                             "loop": {"problems_per_step": 32, "rollouts_per_problem": G, "population_size": 1}})

    check_rollout_memory(config(8), model_config, 36, memory=(24 * GB, "host memory"))  # 256 rows: 50 MB
    with pytest.raises(FastSlowError) as refused:
        check_rollout_memory(config(10**6), model_config, 36, memory=(24 * GB, "host memory"))
    assert str(refused.value) == (
        "loop.rollouts_per_problem: 32 problems x 1000000 rollouts = 32000000 rows per step need at least 6.0 TB "
        "for their KV cache alone (100 tokens x 2.0 KB per token), more than the 24.0 GB of host memory; lower "
        "loop.rollouts_per_problem or loop.problems_per_step")
    check_rollout_memory(config(10**6), model_config, 36, processes=10**6, memory=(24 * GB, "GPU memory"))


@pytest.fixture(scope="module")
def model_without_chat_template(tiny_model_path, tmp_path_factory):
    path = tmp_path_factory.mktemp("no-chat") / "model"
    shutil.copytree(tiny_model_path, path)
    (path / "chat_template.jinja").unlink()
    return str(path)


def unreachable_endpoint():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.mark.parametrize("case", ["rollouts", "seed-prompt", "chat-template", "task-args", "plan", "reflection",
                                  "dataset"])
def test_check_refuses_in_one_line_whatever_run_refuses_before_loading_weights(
        tmp_path, tiny_model_path, model_without_chat_template, case):
    """`check` and `run` make the same checks (guards.preflight): the same line, exit 2, and no run directory."""
    task = {"name": "doubles:ShortAnswerTask", "train_size": 8, "val_size": 2}
    (tmp_path / "empty.jsonl").write_text("")
    over, fragments = {
        "rollouts": ({"loop": {"steps": 1, "steps_per_cycle": 1, "problems_per_step": 2, "rollouts_per_problem": 10**6,
                               "population_size": 1}}, ["loop.rollouts_per_problem", "1000000 rollouts", "KV cache"]),
        "seed-prompt": ({"task": {**task, "seed_prompt": "x" * 2**20}},
                        ["task.seed_prompt", "1048576 characters", "context of 2048 tokens"]),
        "chat-template": ({"model": {"path": model_without_chat_template, "max_new_tokens": 4}},
                          ["model.path", "has no chat template"]),
        "task-args": ({"task": {**task, "name": "strings", "args": {"nope": 1}}}, ["task.args", "nope"]),
        "plan": ({"loop": {"steps": 1, "steps_per_cycle": 1, "problems_per_step": 9, "rollouts_per_problem": 2,
                           "population_size": 1}}, ["task.train_size", "loop.problems_per_step=9"]),
        "reflection": ({"mode": "fst", "reflection": {"kind": "openai", "model": "m", "base_url": unreachable_endpoint()}},
                       ["reflection.base_url", "cannot reach"]),
        "dataset": ({"task": {"name": "jsonl", "args": {"path": str(tmp_path / "empty.jsonl")}}},
                    ["task.args.path", "empty.jsonl", "is empty"]),
    }[case]
    config = write(tmp_path, tiny_run(tmp_path, tiny_model_path, **over))
    checked, ran = fastslow("check", config), fastslow("run", config)
    assert_user_error(checked, *fragments)
    assert_user_error(ran, *fragments)
    assert checked.stderr.strip() == ran.stderr.strip()
    assert list((tmp_path / "runs").iterdir()) == []  # refused before the run directory was written


def test_check_notes_a_run_directory_that_run_would_refuse(tmp_path, tiny_model_path):
    config = write(tmp_path, tiny_run(tmp_path, tiny_model_path))
    (tmp_path / "runs" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "metrics.jsonl").write_text("")
    result = fastslow("check", config)
    assert result.returncode == 0 and yaml.safe_load(result.stdout)["name"] == "r"
    assert result.stderr.startswith("note: ") and "already exists and is not empty" in result.stderr


def test_fence_only_and_200kb_reflection_answers_are_failed_reflections_counted_and_shown(tmp_path, tiny_model_path):
    endpoint = FakeChatEndpoint([(200, "```\n```", 0), (200, "x" * 200_000, 0)])
    try:
        data = tiny_run(tmp_path, tiny_model_path, mode="fst",
                        loop={"steps": 2, "steps_per_cycle": 2, "problems_per_step": 2, "rollouts_per_problem": 2,
                              "population_size": 1},
                        gepa={"budget_passes": 4, "reflection_minibatch_size": 2},
                        reflection={"kind": "openai", "model": "m", "base_url": endpoint.base_url, "retries": 0})
        result = fastslow("run", write(tmp_path, data), env={"COLUMNS": "200"})  # the whole progress line
    finally:
        endpoint.close()
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / "r"
    last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["reflection_calls"] >= 2 and last["reflection_failures"] == last["reflection_calls"]
    assert len(endpoint.requests) == last["reflection_calls"]
    assert f"reflections failed {last['reflection_failures']}/{last['reflection_calls']}" in result.stderr
    population = json.loads((run_dir / "population" / "cycle-0.json").read_text())
    assert population["reflection_failed"] is True and [m["id"] for m in population["members"]] == ["seed"]


def test_a_reflection_budget_that_cuts_off_the_seed_prompt_is_named(room):
    """The answer's code fence counts: the tiny tokenizer gives one token a character, so a seed prompt fits a
    budget of 256 tokens with its fence only up to 256 - len("```\\n\\n```") characters."""
    fence = len(room.tokenizer("```\n\n```", add_special_tokens=False)["input_ids"])
    assert room.short_answers("p" * (256 - fence)) is None
    said = room.short_answers("p" * (257 - fence))
    assert said.startswith("reflection.max_new_tokens (256) is less than the seed prompt in its answer's code fence "
                           "(257 tokens")


def test_preflight_warns_of_the_micro_worlds_old_reflection_budget_and_not_of_its_own(caplog):
    """96 tokens cut every rewrite of WEAK's 98-character instruction (issue 24); MICRO_BASE's budget holds it."""
    import copy

    from fastslow.experiments.presets import MICRO_BASE, WEAK
    from fastslow.guards import preflight

    base = copy.deepcopy(MICRO_BASE) | {"task": WEAK}
    old = copy.deepcopy(base)
    old["reflection"]["max_new_tokens"] = 96
    with caplog.at_level("WARNING", logger="fastslow.guards"):
        preflight(parse_config(old))
    assert "reflection.max_new_tokens (96) is less than the seed prompt in its answer's code fence" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="fastslow.guards"):
        preflight(parse_config(base))
    assert "reflection.max_new_tokens" not in caplog.text


def test_the_micro_worlds_reflection_budget_holds_every_suite_and_preset_seed_prompt():
    from pathlib import Path

    from fastslow.experiments.presets import MICRO_BASE, SETTINGS
    from fastslow.models import resolve_model_path
    from fastslow.tasks import load_task

    suite = json.loads((Path(__file__).parents[1] / "docs/logs/suite/task_suite_v4_2026-12-01_h200.json").read_text())
    tasks = suite["suite"] + [s["task"] for s in SETTINGS.values() if "task" in s] + [SETTINGS["plasticity"]["task_b"]]
    config = parse_config(MICRO_BASE)
    micro = PromptRoom(load_tokenizer(resolve_model_path("micro")), ShortAnswerTask().problems("train", 2, 0), None, config)
    for task in tasks:
        seed = task.get("seed_prompt") or load_task(task["name"], **task.get("args", {})).seed_prompt
        assert micro.short_answers(seed) is None, task
