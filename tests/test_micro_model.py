"""The shipped micro checkpoint: loads like a hub model on CPU, follows instructions, reflects; pretrain runs."""

import json
import math
import random

import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from fastslow.fast.records import extract_instruction, reflective_record, render_reflection_prompt
from fastslow.cli import app
from fastslow.models import MICRO_MODELS
from fastslow.tasks.micro_language import GENERIC_PROMPT, HELD_OUT_PROGRAMS, program_spec
from fastslow.micro.pretrain import merge_shards, plan_steps, pretrain
from fastslow.policy import Sampling, chat_messages, generate, load_model, load_tokenizer
from fastslow.tasks.micro import StringProgramTask

GREEDY = Sampling(max_new_tokens=24, temperature=0)


@pytest.fixture(scope="module")
def micro():
    return load_model("micro"), load_tokenizer("micro")


def spread(tasks, n: int, seed: int = 7):
    """`n` validation problems spread over `tasks`."""
    return [(t, p) for i, t in enumerate(tasks) for p in t.problems("val", n // len(tasks) + (i < n % len(tasks)), seed)]


@pytest.fixture(scope="module")
def held_out_cases():
    """50 validation problems over the 2-op compositions never seen in pretraining."""
    return spread([StringProgramTask(program=program_spec(p)) for p in HELD_OUT_PROGRAMS if len(p) == 2], 50)


def exact_match(model, tokenizer, cases, prompt_of) -> float:
    outputs = generate(model, tokenizer, [chat_messages(prompt_of(t), p.prompt) for t, p in cases], GREEDY)
    return sum(t.score(p, o).reward for (t, p), o in zip(cases, outputs)) / len(cases)


def test_checkpoint_is_a_small_hub_style_model():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    files = {f.name for f in MICRO_MODELS["micro"].iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= files
    assert (MICRO_MODELS["micro"] / "model.safetensors").stat().st_size <= 30 * 2**20
    model = AutoModelForCausalLM.from_pretrained(MICRO_MODELS["micro"], dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(MICRO_MODELS["micro"])
    assert type(model).__name__ == "Qwen3ForCausalLM" and 10e6 < sum(p.numel() for p in model.parameters()) < 16e6
    assert model.dtype == torch.float32  # stored in bfloat16, run in float32 (config.dtype)
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id
    assert tokenizer.pad_token_id not in (None, tokenizer.eos_token_id) and tokenizer.padding_side == "left"
    text = tokenizer.apply_chat_template(chat_messages("Sort.", "ba"), tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nSort.<|im_end|>\n<|im_start|>user\nba<|im_end|>\n<|im_start|>assistant\n"


def test_follows_instructions_on_held_out_programs(micro, held_out_cases):
    model, tokenizer = micro
    assert exact_match(model, tokenizer, held_out_cases, lambda task: task.instruction) >= 0.80


def test_three_op_held_out_programs_regression_guard(micro):
    # 3-op compositions vary: 0.82 on these 10, 0.74 on `fastslow micro eval`'s 19, below 0.5 on some
    # (docs/MICRO.md); this guards against regressions.
    model, tokenizer = micro
    three_ops = random.Random(100).sample([p for p in HELD_OUT_PROGRAMS if len(p) == 3], 10)
    cases = spread([StringProgramTask(program=program_spec(p)) for p in three_ops], 50)
    assert exact_match(model, tokenizer, cases, lambda task: task.instruction) >= 0.65


def test_prompts_matter_seed_prompt_rarely_right(micro, held_out_cases):
    model, tokenizer = micro
    assert exact_match(model, tokenizer, held_out_cases, lambda task: task.seed_prompt) <= 0.15


def test_single_ops_are_followed(micro):
    model, tokenizer = micro
    cases = [(t, p) for t in (StringProgramTask(program=s) for s in ("reverse", "sort", "shift:1", "upper", "swap"))
             for p in t.problems("val", 4, seed=0)]
    assert exact_match(model, tokenizer, cases, lambda task: task.instruction) >= 0.9


def test_reflection_answers_with_a_fenced_instruction(micro):
    model, tokenizer = micro
    task = StringProgramTask(program="reverse")
    problems = task.problems("val", 3, seed=0)
    records = [reflective_record(p.prompt, p.prompt, task.score(p, p.prompt).feedback) for p in problems]
    prompt = render_reflection_prompt(GENERIC_PROMPT, records, template="compact")
    answer = generate(model, tokenizer, [chat_messages(None, prompt)], Sampling(max_new_tokens=120, temperature=0))[0]
    assert answer.startswith("```\n") and answer.endswith("\n```")
    instruction = extract_instruction(answer)
    assert instruction.endswith(".") and instruction != GENERIC_PROMPT


def test_pretrain_runs_on_cpu_and_saves_a_loadable_checkpoint(tmp_path):
    summary = pretrain(tmp_path, steps=3, batch_size=4, warmup=2, workers=0, device="cpu", shard_mb=1, log_every=1,
                       hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                       num_key_value_heads=1, head_dim=16)
    assert summary["steps"] == 3 and len(summary["log"]) == 3
    assert all(math.isfinite(row["loss_reflect"]) for row in summary["log"])
    assert "--steps 3" in json.loads((tmp_path / "pretrain_log.json").read_text())["command"]
    merge_shards(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not (tmp_path / "model.safetensors.index.json").exists()
    model, tokenizer = load_model(str(tmp_path)), load_tokenizer(str(tmp_path))
    assert len(generate(model, tokenizer, [chat_messages("Sort the letters.", "cab")], GREEDY)) == 1


def test_a_timed_pretraining_plans_its_steps_from_the_recent_speed():
    # compiled steps: slow while new batch widths recompile, then fast (issue 24's reflector on one H100)
    times = [0.16] * 100 + [0.065] * 100
    first = plan_steps(100, times[:100], warmup=100, log_every=100, seconds_left=200.0)
    assert first == 100 + int(200 / 0.16 * 0.97)  # the warm-up's second half
    later = plan_steps(200, times, warmup=100, log_every=100, seconds_left=193.0)
    assert later == 200 + int(193 / 0.065 * 0.97) and later > 2 * first  # the last 100 steps' speed, not the warm-up's


def test_pretrain_continues_from_a_checkpoint_and_keeps_its_log(tmp_path):
    size = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                head_dim=16)
    pretrain(tmp_path / "a", steps=2, batch_size=4, warmup=1, workers=0, device="cpu", **size)
    summary = pretrain(tmp_path / "b", steps=2, batch_size=4, warmup=1, workers=0, device="cpu", seed=1, init=tmp_path / "a")
    assert summary["parameters"] == json.loads((tmp_path / "a" / "pretrain_log.json").read_text())["parameters"]
    assert summary["init"]["summary"]["steps"] == 2 and "--init" in summary["command"]


@pytest.mark.slow
def test_pretrain_under_torchrun_trains_one_model_on_two_ranks(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "fastslow", "micro", "pretrain",
         "--out", str(tmp_path), "--steps", "2", "--batch-size", "2", "--warmup", "1", "--workers", "0", "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("wrote ") == 1  # rank 0 alone writes
    summary = json.loads((tmp_path / "pretrain_log.json").read_text())
    assert summary["ranks"] == 2 and summary["command"].startswith("torchrun --nproc-per-node 2")
    assert load_model(str(tmp_path)).dtype == torch.float32


def test_cli_pretrain_needs_steps_or_minutes():
    result = CliRunner().invoke(app, ["micro", "pretrain", "--out", "unused"])
    assert result.exit_code == 2 and "exactly one of --steps or --minutes" in result.output


@pytest.mark.slow
def test_near_misses_drop_one_op_or_swap_two_neighbours_and_skip_commuting_ones():
    from fastslow.micro.evaluate import near_miss_cases, near_misses
    from fastslow.tasks.micro_language import parse_program

    a, b, c = parse_program("reverse,sort,double")
    assert near_misses((a, b, c)) == [(b, c), (a, c), (a, b), (b, a, c), (a, c, b)]
    commuting = StringProgramTask(program="upper,shift:1")  # the swap computes the same answer: not a miss
    cases = near_miss_cases([commuting], 4, seed=0)
    assert {near for _, _, near in cases} == {"Shift each letter forward by 1.", "Write in capitals."}
    assert len(cases) == 4 and all(task is commuting for task, _, _ in cases)


def test_varied_share_counts_groups_whose_rewards_differ():
    from fastslow.micro.evaluate import varied_share

    assert varied_share([1, 1, 0, 1, 0, 0, 1, 0.5], group=2) == 0.5
    assert varied_share([1, 1, 1, 1], group=4) == 0.0


def test_a_copy_repeats_the_shown_instruction_and_a_near_copy_computes_what_it_computes_on_the_shown_inputs():
    from fastslow.micro.evaluate import is_copy, is_near_copy, share

    shown = "Sort the letters, then swap each pair of letters, then write in capitals."
    assert is_copy(" " + shown + "\n", shown) and not is_copy("Sort the letters.", shown)
    # swap and upper commute: the reordering computes the same on any input, but is no verbatim copy
    reordered = "Sort the letters, then write in capitals, then swap each pair of letters."
    assert not is_copy(reordered, shown) and is_near_copy(reordered, shown, ["hello", "abcd"])
    # dropping the sort changes "dcba" but not the already sorted "abcd": near copy on that input alone
    dropped = "Swap each pair of letters, then write in capitals."
    assert is_near_copy(dropped, shown, ["abcd"]) and not is_near_copy(dropped, shown, ["abcd", "dcba"])
    assert not is_near_copy(shown, shown, ["abcd"])  # a copy is counted as a copy, not as a near copy
    assert not is_near_copy("Transform the text.", "Solve the task.", ["abcd"])  # no program: nothing to compare
    assert not is_near_copy("Sort the letters, then sort.", shown, ["abcd"])  # not an instruction of the language
    trials = [{"copy": True}, {"copy": False}, {"copy": False}, {"copy": True}]
    assert share(trials, "copy") == 0.5 and share([], "copy") == 0


def test_near_miss_failure_sets_show_a_wrong_near_miss_and_problems_the_policy_gets_wrong_under_it(micro):
    """The shown instruction is the first near miss that is itself wrong on the shown problems, and the policy failed
    each of them under it."""
    from fastslow.micro.evaluate import near_miss_failure_sets, near_misses
    from fastslow.tasks.micro_language import program_of, run_program

    tasks = [StringProgramTask(program="shift:1,upper"), StringProgramTask(program="reverse,sort,double")]
    sets = near_miss_failure_sets(*micro, tasks, seed=0)
    assert [s["task"] for s in sets] == tasks
    for s in sets:
        near = program_of(s["shown"])
        assert near in near_misses(s["task"].program) and len(s["failures"]) == 3
        for problem, output in s["failures"]:
            assert run_program(near, problem.prompt) != problem.answer and s["task"].score(problem, output).reward == 0
    assert sets[0]["shown"] == "Write in capitals."  # the first near miss: the shift dropped


def test_cli_eval_json_reports_the_fractions_the_uncertainty_and_a_separate_reflector():
    """The policy is confident under the right instruction (low but positive entropy); a reflector given by path
    writes the proposals, so the policy as its own reflector measures the same as `reflection_improves`."""
    result = CliRunner().invoke(app, ["micro", "eval", "--n", "8", "--json", "--reflector", "micro", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    cases = {"reflection_cases", "near_miss_reflection_cases"}
    assert set(summary) == cases | {"with_instruction", "with_seed_prompt", "reflection_improves",
                                    "zero_reward_family_seed_prompt", "answer_entropy", "near_miss_varied",
                                    "reflector_improves", "code_seed_prompt", "code_strategy", "code_seed_varied",
                                    "reflection_copies", "reflector_copies"} | {
        f"near_miss_{who}_{what}" for who in ("reflection", "reflector") for what in ("improves", "copies", "near_copies")}
    assert all(0 <= v <= 1 for k, v in summary.items() if k not in cases)
    assert summary["reflection_cases"] == 4 and summary["near_miss_reflection_cases"] >= 1  # n // 2 held-out tasks
    assert 0 < summary["answer_entropy"] < 0.5
    for key in ("improves", "copies"):  # the policy as its own reflector measures what it measures reflecting itself
        assert summary[f"reflector_{key}"] == summary[f"reflection_{key}"]
        assert summary[f"near_miss_reflector_{key}"] == summary[f"near_miss_reflection_{key}"]
    without = CliRunner().invoke(app, ["micro", "eval", "--n", "2", "--json", "--device", "cpu"])
    summary = json.loads(without.stdout)
    assert summary["reflector_improves"] is None and summary["near_miss_reflector_copies"] is None
    table = CliRunner().invoke(app, ["micro", "eval", "--n", "2", "--device", "cpu"])  # no row for what was not measured
    assert table.exit_code == 0 and "| reflection on held-out programs: proposal raises" in table.stdout
    assert "by the reflector" not in table.stdout and "n/a" not in table.stdout, table.stdout


def test_prompt_signal_measures_accuracy_and_the_share_of_problems_whose_samples_differ(micro):
    """What the task suite's rule reads (benchmarks/task_suite.py): the confident v3 model is right and unanimous
    under a single op's instruction, and wrong under the task-agnostic prompt."""
    from fastslow.probe import prompt_signal

    model, tokenizer = micro
    torch.manual_seed(0)
    task = StringProgramTask(program="reverse")
    right = prompt_signal(model, tokenizer, task, task.instruction, problems=16, samples=4)
    generic = prompt_signal(model, tokenizer, task, task.seed_prompt, problems=16, samples=4)
    assert right["accuracy"] >= 0.9 and right["problems_with_variance"] <= 0.2
    assert generic["accuracy"] <= 0.15
    assert 0 <= generic["problems_with_variance"] <= 1
