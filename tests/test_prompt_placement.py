"""model.prompt_placement user: every conversation fastslow builds from (prompt, problem) has no system turn and
the prompt at the head of the user turn, in the token ids the RL step, FST-distill, the fast phase, evaluation, the
prompt-room guard and the probe build (the tiny model: one token per character, ChatML)."""

import pytest
from doubles import ShortAnswerTask
from test_trl_seam import make_learner

from fastslow import evaluation, probe
from fastslow.config import parse_config
from fastslow.errors import FastSlowError
from fastslow.fast.adapter import PolicyAdapter
from fastslow.fast.population import Member
from fastslow.guards import PromptRoom
from fastslow.policy import Sampling, chat_messages, load_model, load_tokenizer
from fastslow.slow import trainer as slow_trainer

USER = Sampling(max_new_tokens=4, prompt_placement="user")


def in_user_turn(prompt: str, problem: str) -> str:
    """The tiny model's rendering of a row with `prompt` at the head of the user turn, ready for the answer."""
    return f"<|im_start|>user\n{prompt}\n\n{problem}<|im_end|>\n<|im_start|>assistant\n"


def texts(tokenizer, rows) -> list[str]:
    return [tokenizer.decode(ids) for ids in rows]


def test_the_placement_decides_where_the_prompt_goes():
    assert chat_messages("Be brief.", "abc") == [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "abc"}]
    assert chat_messages("Be brief.", "abc", "user") == [{"role": "user", "content": "Be brief.\n\nabc"}]
    assert chat_messages(None, "abc", "user") == chat_messages("", "abc", "user") == [{"role": "user", "content": "abc"}]


def test_a_bad_placement_is_one_line_naming_the_field():
    assert parse_config({}).model.prompt_placement == "system"
    with pytest.raises(FastSlowError) as error:
        parse_config({"model": {"prompt_placement": "assistant"}})
    message = str(error.value)
    assert "model.prompt_placement" in message and "'system' or 'user'" in message and "\n" not in message


def test_the_rl_step_and_distill_step_put_the_prompt_in_the_user_turn(tiny_model_path, tmp_path, monkeypatch):
    task = ShortAnswerTask()
    problems = task.problems("train", 2, 0)
    learner = make_learner(tiny_model_path, tmp_path, task, problems=2, members=2,
                           sampling={"prompt_placement": "user"})
    tokenizer = learner.trainer.processing_class
    sampled, tokenized = [], []
    original_sample, original_tokenize = slow_trainer.sample_ids, slow_trainer.prompt_token_ids
    monkeypatch.setattr(slow_trainer, "sample_ids", lambda model, prompts, *args, **kw:
                        sampled.extend(prompts) or original_sample(model, prompts, *args, **kw))
    monkeypatch.setattr(slow_trainer, "prompt_token_ids", lambda *args, **kw:
                        tokenized.append(original_tokenize(*args, **kw)) or tokenized[-1])

    learner.step(problems, [Member("a", "Prompt A."), Member("b", "Prompt B.")])
    # G = 4 rollouts per problem, slots a b a b
    assert texts(tokenizer, sampled) == [in_user_turn(f"Prompt {m}.", p.prompt) for p in problems for m in "ABAB"]

    learner.distill_step(problems, Member("seed", "Answer."), Member("c0-1", "Prompt B."))
    student, teacher = tokenized
    assert texts(tokenizer, student) == [in_user_turn("Answer.", p.prompt) for p in problems for _ in range(4)]
    assert texts(tokenizer, teacher) == [in_user_turn("Prompt B.", p.prompt) for p in problems for _ in range(4)]


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return load_model(tiny_model_path), load_tokenizer(tiny_model_path)


def test_the_fast_phase_scores_prompts_in_the_user_turn(tiny):
    model, tokenizer = tiny
    task = ShortAnswerTask()
    problems = task.problems("val", 2, 0)
    rollouts = PolicyAdapter(model, tokenizer, task, USER).rollouts([("Prompt A.", p) for p in problems])
    assert texts(tokenizer, [r.sample.prompt_ids for r in rollouts]) == [in_user_turn("Prompt A.", p.prompt)
                                                                          for p in problems]


def test_evaluation_and_the_probe_sample_with_the_prompt_in_the_user_turn(tiny, monkeypatch):
    model, tokenizer = tiny
    task = ShortAnswerTask()
    problems = task.problems("val", 2, 0)
    rows, kl_rows = [], []
    original_sample, original_kl = evaluation.sample, evaluation.kl_and_entropy

    def spy_sample(*args, **kwargs):
        completions = original_sample(*args, **kwargs)
        rows.extend(c.prompt_ids for c in completions)
        return completions

    monkeypatch.setattr(evaluation, "sample", spy_sample)
    monkeypatch.setattr(probe, "sample", spy_sample)
    monkeypatch.setattr(evaluation, "kl_and_entropy", lambda model, base, tok, conversations, *args, **kw:
                        kl_rows.extend(conversations) or original_kl(model, base, tok, conversations, *args, **kw))
    evaluation.evaluate(model, None, tokenizer, task, problems, "Prompt B.", "Answer.", samples=2, kl_prompts=1,
                        sampling=USER, seed=0)
    assert texts(tokenizer, rows) == ([in_user_turn("Prompt B.", p.prompt) for p in problems for _ in range(2)]
                                      + [in_user_turn("Answer.", p.prompt) for p in problems for _ in range(2)])
    assert kl_rows == [chat_messages("Prompt B.", problems[0].prompt, "user")]

    rows.clear()
    probe.measure(model, tokenizer, task, problems, "Answer.", 1, USER)
    probe.measure(model, tokenizer, task, problems, None, 1, USER)  # the probe's "none" row: the problem alone
    assert texts(tokenizer, rows) == ([in_user_turn("Answer.", p.prompt) for p in problems]
                                      + [f"<|im_start|>user\n{p.prompt}<|im_end|>\n<|im_start|>assistant\n"
                                         for p in problems])


def test_the_prompt_room_counts_the_row_as_the_placement_renders_it(tiny_model_path):
    tokenizer = load_tokenizer(tiny_model_path)
    problems = ShortAnswerTask().problems("train", 8, 0)
    rooms = {placement: PromptRoom(tokenizer, problems, 2048, parse_config(
        {"model": {"path": tiny_model_path, "prompt_placement": placement}})) for placement in ("system", "user")}
    longest, tokens = rooms["user"].longest.prompt, rooms["user"].tokens
    assert rooms["user"].row_tokens("Prompt A.") == tokens(in_user_turn("Prompt A.", longest))
    assert rooms["system"].row_tokens("Prompt A.") == tokens(
        f"<|im_start|>system\nPrompt A.<|im_end|>\n<|im_start|>user\n{longest}<|im_end|>\n<|im_start|>assistant\n")
    assert rooms["user"].row_tokens("Prompt A.") < rooms["system"].row_tokens("Prompt A.")


def test_the_probe_says_where_its_prompts_went():
    rows = [probe.PromptRow("seed", "Solve the task.", 0.15, 0.31, 1.0),
            probe.PromptRow("seed again", "Solve the task.", 0.14, 0.3, 1.0, 0.55),
            probe.PromptRow("none", None, 0.14, 0.3, 1.1, 0.6)]
    result = probe.ProbeResult("smollm2", "arithmetic", 32, 4, rows, [], 1.0, placement="user")
    assert result.to_dict()["prompt_placement"] == "user"
    said = probe.verdicts(result)
    assert said[3].startswith("The user-turn prompt moves accuracy by at most 1 points over 1 other prompts")
    assert said[-1] == "Not in FST's regime: it lacks a user-turn prompt that moves accuracy."
    table = probe.format_result(result)
    assert "4 samples, each prompt at the head of the user turn" in table and "(no user-turn prompt)" in table
