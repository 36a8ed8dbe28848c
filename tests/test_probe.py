"""`fastslow probe`: its measurements on hand-checkable cases, on the micro model, and on the command line."""

import json
import math

import pytest
from clirun import fastslow, write
from doubles import AlternatingRewardTask, KnownRewardTask, ScriptedReflectionLM

from fastslow.config import parse_config
from fastslow.policy import Sampling, load_model, load_tokenizer
from fastslow.probe import entropy, format_result, measure, run_probe, signal, total_variation, verdicts

GREEDY = Sampling(max_new_tokens=8, temperature=0)


def test_signal_entropy_and_shift_by_hand():
    assert signal([[1, 0], [1, 1], [0, 0], [0.5, 0.5]]) == (0.375, 0.25)  # partial credit is not a solution
    assert entropy(["7", "7", "7", "7"]) == 0.0
    assert entropy(["7", "7", "8", "8"]) == pytest.approx(math.log(2))
    assert entropy(["a", "b", "c", "d"]) == pytest.approx(math.log(4))
    assert total_variation(["a", "a"], ["a", "a"]) == 0.0
    assert total_variation(["a", "a"], ["a", "b"]) == 0.5
    assert total_variation(["a", "b"], ["c", "c"]) == 1.0


@pytest.fixture(scope="module")
def micro():
    return load_model("micro").eval(), load_tokenizer("micro")


def test_measure_on_the_micro_model_gives_the_numbers_a_test_task_fixes(micro):
    model, tokenizer = micro
    known = KnownRewardTask()
    row = measure(model, tokenizer, known, known.problems("val", 8, 0), "Answer.", 2, GREEDY)
    assert (row.accuracy, row.varied, row.answer_entropy) == (0.5, 0.0, 0.0)  # greedy: one answer per problem
    assert len(row.answers) == 8 and all(len(a) == 2 and a[0] == a[1] for a in row.answers)
    alternating = AlternatingRewardTask()
    row = measure(model, tokenizer, alternating, alternating.problems("val", 6, 0), None, 4, GREEDY)
    assert (row.accuracy, row.varied) == (0.5, 1.0)


def micro_config(tmp_path, **over):
    data = {"name": "p", "output_dir": str(tmp_path), "model": {"path": "micro", "max_new_tokens": 24},
            "task": {"name": "strings", "args": {"program": "reverse"}, "val_size": 12}, "eval": {"samples": 4}}
    return {**data, **over}


def test_a_prompt_the_model_follows_shows_as_room_for_the_fast_channel(micro, tmp_path):
    """On `strings` with program reverse, the micro model is right under its instruction and wrong under the
    task-agnostic seed prompt; a reflection that proposes the instruction is measured like it."""
    reflection = ScriptedReflectionLM(instructions=["Reverse the letters."])
    result = run_probe(parse_config(micro_config(tmp_path)), rewrites=1, reflection_lm=reflection)
    rows = {row.label: row for row in result.rows}
    assert list(rows) == ["seed", "seed again", "none", "instruction", "rewrite 1"]
    assert rows["seed again"].prompt == "Transform the text." and 0 <= rows["seed again"].answer_shift <= 1
    assert rows["seed"].prompt == "Transform the text." and rows["rewrite 1"].prompt == "Reverse the letters."
    assert rows["seed"].accuracy <= 0.15 and rows["instruction"].accuracy >= 0.85
    assert rows["rewrite 1"].accuracy >= 0.85 and rows["rewrite 1"].answer_shift >= 0.5
    assert rows["seed"].answer_shift is None and result.problems == 12 and result.samples == 4
    assert "Transform the text." in reflection.prompts[0]  # the reflection was asked to improve the seed prompt
    said = verdicts(result)
    assert any("raises it to" in v and "the fast channel has room" in v for v in said), said
    table = format_result(result)
    assert table.count("\n| ") == 6 and "Reverse the letters." in table


def test_a_prompt_that_cannot_move_the_reward_is_called_little_room(micro, tmp_path):
    config = parse_config(micro_config(tmp_path, task={"name": "doubles:KnownRewardTask", "val_size": 8}))
    result = run_probe(config, rewrites=1, reflection_lm=ScriptedReflectionLM())
    assert [r.accuracy for r in result.rows] == [0.5] * 4 and all(r.varied == 0 for r in result.rows)
    said = verdicts(result)
    assert "RL has signal on only 0% of problems" in said[1]
    assert any("at most 0 points" in v and "little room" in v for v in said)
    assert said[-1].startswith("Not in FST's regime")


@pytest.mark.slow
def test_probe_command_on_the_micro_model_with_its_own_reflection(tmp_path):
    config = write(tmp_path, micro_config(tmp_path, reflection={"kind": "self", "max_new_tokens": 96}))
    result = fastslow("probe", config, "--problems", "6", "--samples", "2", "--rewrites", "2", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["problems"] == 6 and data["samples"] == 2 and data["verdicts"]
    labels = [row["label"] for row in data["rows"]]
    assert labels[:4] == ["seed", "seed again", "none", "instruction"] and len(labels) + len(data["failed"]) == 6
    for row in data["rows"]:
        for key in ("accuracy", "varied", "answer_entropy"):
            assert 0 <= row[key] <= max(1, math.log(2)), row
    text = fastslow("probe", config, "--problems", "2", "--samples", "1", "--rewrites", "0")
    assert text.returncode == 0 and "| seed |" in text.stdout and "In FST's regime" not in text.stdout


def test_verdicts_by_hand_a_prompt_that_only_lowers_accuracy():
    """smollm2's arithmetic probe, as numbers: 15% under the seed prompt, 5% without a system prompt, 10% under the
    instruction. On 32 x 4 samples the noise of a difference is 2 * sqrt(2 * .15 * .85 / 128) = 8.9 points, so the
    10-point drop counts as the model listening, and nothing raises accuracy."""
    from fastslow.probe import PromptRow, ProbeResult, in_regime, noise, raises

    rows = [PromptRow("seed", "Solve the task.", 0.15, 0.31, 1.0), PromptRow("seed again", "Solve the task.", 0.16, 0.3,
                                                                             1.0, 0.55),
            PromptRow("none", None, 0.05, 0.19, 1.1, 0.62), PromptRow("instruction", "Compute it.", 0.10, 0.28, 1.1, 0.6)]
    result = ProbeResult("smollm2", "arithmetic", 32, 4, rows, [], 1.0)
    assert noise(0.15, 32, 4) == pytest.approx(0.0893, abs=1e-4)
    said = verdicts(result)
    assert said[0].startswith("The seed prompt solves 15% of samples: valid but weak") and "signal on 31%" in said[1]
    assert "by up to 10 points (down, under 'none': 5%), but none of the prompts measured raises it" in said[3]
    assert "by up to 0.62 (total variation; the seed prompt sampled again: 0.55): close to what resampling" in said[4]
    assert in_regime(result) and said[-1].startswith("In FST's regime")
    # ... by the paper's terms; but nothing raised accuracy, which on micro-v4's suite is where FST did not pay
    assert not raises(result) and "no prompt measured raises accuracy" in said[-1]
    up = PromptRow("instruction", "Compute it.", 0.25, 0.4, 1.0, 0.6)  # 10 points up: more than the noise (8.9)
    raised = ProbeResult("smollm2", "arithmetic", 32, 4, [*rows[:3], up], [], 1.0)
    assert raises(raised) and verdicts(raised)[-1] == ("In FST's regime: a valid but weak seed prompt, RL signal, "
                                                       "and room for the prompt.")
    assert raised.to_dict()["raises"] is True and result.to_dict()["raises"] is False
