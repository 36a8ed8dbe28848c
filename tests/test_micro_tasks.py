"""The micro world's tasks, instruction language and corpus: hand-written cases, determinism, formats."""

import random

import pytest

from fastslow.errors import FastSlowError
from fastslow.fast.records import extract_instruction, reflective_record, render_reflection_prompt
from fastslow.micro.corpus import encode_batch, example_length, sample_example, simplest_fitting
from fastslow.tasks.micro_language import (
    HELD_OUT_PROGRAMS,
    TRAIN_PROGRAMS,
    describe,
    is_held_out,
    parse_program,
    random_program,
    run_program,
)
from fastslow.micro.tokenizer import CHAT_TEMPLATE, build_tokenizer, chatml
from fastslow.tasks import load_task
from fastslow.tasks.base import Problem, Task
from fastslow.tasks.micro import (
    CipherTask,
    CountingTask,
    StarGraphTask,
    StringProgramTask,
    split_of,
    substitution,
    worked_path,
)


@pytest.mark.parametrize(
    "spec, text, expected",
    [
        ("reverse", "hello", "olleh"),
        ("sort", "hello", "ehllo"),
        ("rotate:2", "hello", "llohe"),
        ("shift:1", "xyz", "yza"),
        ("double", "abc", "aabbcc"),
        ("swap", "abcde", "badce"),
        ("upper", "abc", "ABC"),
        ("novowels", "education", "dctn"),
        ("alternate", "abcdef", "ace"),
        ("reverse,shift:1", "abc", "dcb"),
        ("upper,shift:3,novowels", "abz", "DC"),  # 'ABZ' -> 'DEC' (case kept) -> vowels go in both cases
    ],
)
def test_programs_compute_by_hand(spec, text, expected):
    assert run_program(parse_program(spec), text) == expected


def test_composition_order_matters():
    assert run_program(parse_program("double,rotate:1,swap"), "ab") == "baab"  # aabb -> abba -> baab
    assert run_program(parse_program("swap,double"), "ab") == "bbaa"


def test_instructions_are_words_for_programs():
    assert describe(parse_program("reverse,shift:2")) == "Reverse the letters, then shift each letter forward by 2."
    assert describe(parse_program("rotate:1")) == "Move the first letter to the end."
    assert describe(parse_program("rotate:3")) == "Move the first 3 letters to the end."


@pytest.mark.parametrize("spec", ["flip", "shift", "shift:9", "reverse:1", "reverse,sort,upper,swap", ""])
def test_bad_programs_give_one_line_errors(spec):
    with pytest.raises(FastSlowError, match="task.args.program"):
        parse_program(spec)


def test_held_out_compositions_never_in_pretraining():
    assert HELD_OUT_PROGRAMS and all(len(p) > 1 for p in HELD_OUT_PROGRAMS)
    assert not set(HELD_OUT_PROGRAMS) & set(TRAIN_PROGRAMS)
    rng = random.Random(0)
    assert not any(is_held_out(random_program(rng)) for _ in range(2000))


def test_registry_builds_micro_tasks():
    for name, cls in [("strings", StringProgramTask), ("cipher", CipherTask), ("stargraph", StarGraphTask),
                      ("counting", CountingTask)]:
        task = load_task(name)
        assert isinstance(task, cls) and isinstance(task, Task) and task.seed_prompt == "Transform the text."
    assert load_task("strings", program="sort").program == parse_program("sort")


@pytest.mark.parametrize("task", [StringProgramTask(program_seed=3), CipherTask(), StarGraphTask(), CountingTask("letter:e")])
def test_problems_are_deterministic_and_splits_disjoint(task):
    a, b = task.problems("train", 30, seed=1), task.problems("train", 30, seed=1)
    assert a == b and a != task.problems("train", 30, seed=2)
    assert len({p.id for p in a}) == len({p.prompt for p in a}) == 30
    val = task.problems("val", 20, seed=1)
    assert all(split_of(p.prompt) == "val" for p in val) and not {p.prompt for p in val} & {p.prompt for p in a}
    for p in a[:5]:  # the reference answer scores 1, surrounding whitespace is ignored, anything else 0
        assert task.score(p, p.answer).reward == 1.0 and task.score(p, f" {p.answer}\n").reward == 1.0
        assert task.score(p, p.answer + "x").reward == 0.0


def test_bad_split_and_args():
    with pytest.raises(FastSlowError, match="split"):
        StringProgramTask(program="sort").problems("dev", 3, 0)
    with pytest.raises(FastSlowError, match="task.args.rule"):
        CountingTask("consonants")
    with pytest.raises(FastSlowError, match="task.args"):
        StarGraphTask(degree=9)


def test_string_feedback_says_what_went_wrong():
    task = StringProgramTask(program="reverse")
    p = Problem("x", "hello", "olleh")
    assert task.score(p, "olleh") == task.score(p, "olleh ") and task.score(p, "olleh").feedback == "Correct."
    assert task.score(p, "hello").feedback == "Wrong. Expected 'olleh'. Right letters, wrong order."
    assert task.score(p, "oll").feedback == "Wrong. Expected 'olleh'. The answer has 5 characters, the output 3."
    assert task.score(p, "ollxh").feedback == "Wrong. Expected 'olleh'. First wrong character at position 4."
    assert task.score(p, "").feedback == "Wrong. Expected 'olleh'. The output is empty."


def test_cipher_swaps_letters_the_instruction_cannot_name():
    table = substitution(seed=0, pairs=3)
    assert len(table) == 12 and all(table[table[c]] == c for c in table)
    task = CipherTask(program="reverse", substitution_seed=0, pairs=3)
    assert task.instruction == "Reverse the letters."
    problems = task.problems("val", 50, seed=0)
    plain = [run_program(task.program, p.prompt) for p in problems]  # what the best instruction produces
    right = sum(task.score(p, out).reward for p, out in zip(problems, plain)) / len(problems)
    assert 0.05 < right < 0.8  # prompts plateau: only answers avoiding the swapped letters are right
    assert all(p.answer == "".join(table.get(c, c) for c in out) for p, out in zip(problems, plain))


def test_star_graph_problem_and_feedback():
    task = StarGraphTask(degree=2, arm_length=2)
    p = Problem("x", "a>b b>c a>d d>e\nstart a goal e", "a>d>e")
    assert task.score(p, "a>d>e").reward == 1.0
    assert "from the goal back to the start" in task.score(p, "e>d>a").feedback
    assert task.score(p, "a>b>c").feedback == "Wrong. Expected the path 'a>d>e' from a to e. The path must end at the goal e."
    # a worked answer (the chain back from the goal, then the path) is scored on its last line
    assert worked_path("a>d>e") == "e<d<a\na>d>e"
    assert task.score(p, worked_path("a>d>e")).reward == 1.0 and task.score(p, "e<d<a\na>b>c").reward == 0.0
    assert task.score(p, "").reward == 0.0
    for problem in task.problems("train", 10, 0):  # the answer walks edges of the graph from the centre
        edges, query = problem.prompt.split("\n")
        path = problem.answer.split(">")
        assert query == f"start {path[0]} goal {path[-1]}" and len(path) == 3
        assert all(f"{a}>{b}" in edges.split() for a, b in zip(path, path[1:]))


def test_counting_by_hand():
    task = CountingTask("vowels")
    assert [p.answer for p in task.problems("train", 3, 0)] == [
        str(sum(c in "aeiou" for c in p.prompt)) for p in task.problems("train", 3, 0)]
    p = Problem("x", "banana", "3")
    assert task.score(p, "3").reward == 1.0
    assert task.score(p, "4").feedback == "Wrong. Expected 3, got 4."
    assert task.score(p, "bnn").feedback == "Wrong. Expected 3, the output is not a number."
    assert CountingTask("letter:n").instruction == "Count the letter n."


def test_chat_template_matches_plain_python_and_tokenizer_is_per_character():
    tokenizer = build_tokenizer()
    messages = [{"role": "system", "content": "Sort the letters."}, {"role": "user", "content": "b a\nc"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == chatml(messages) and tokenizer.chat_template == CHAT_TEMPLATE
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    specials = 3 * (len("<|im_start|>") - 1) + 2 * (len("<|im_end|>") - 1)  # each special is one token
    assert len(ids) == len(text) - specials
    assert tokenizer.decode(ids, skip_special_tokens=False) == text
    assert tokenizer.pad_token_id != tokenizer.eos_token_id and tokenizer.eos_token == "<|im_end|>"


def test_corpus_is_deterministic_and_uses_engine_formats():
    assert sample_example(random.Random(5)) == sample_example(random.Random(5))
    rng = random.Random(0)
    examples = [sample_example(rng) for _ in range(300)]
    kinds = {e.kind for e in examples}
    assert kinds == {"instruct", "generic", "reflect"}
    for e in examples:
        if e.kind == "reflect":  # one user message, rendered by the engine's own renderer; answer in ``` fences
            assert [m["role"] for m in e.messages] == ["user"]
            content = e.messages[0]["content"]
            assert content.startswith("Instruction:\n```\n") and content.endswith("Write a better instruction in ``` blocks.")
            assert extract_instruction(e.answer) == e.answer.strip("`\n")
    # a reflection example is exactly what render_reflection_prompt makes of its records
    records = [reflective_record("abc", "cba", "Wrong. Expected 'bcd'. First wrong character at position 1.")]
    assert render_reflection_prompt("Transform the text.", records).count("## Feedback") == 1


def test_reflection_targets_give_indistinguishable_programs_one_label():
    ops = {spec: parse_program(spec)[0] for spec in ("reverse", "upper", "shift:1", "sort")}
    # upper and shift commute: the first in op order (shift) comes first, whichever order the task used
    for spec in ("upper,shift:1", "shift:1,upper"):
        examples = [(x, run_program(parse_program(spec), x)) for x in ("abc", "zyx")]
        assert simplest_fitting(parse_program(spec), examples) == (ops["shift:1"], ops["upper"])
    # an op that changes nothing on the shown inputs is dropped (sorting already sorted words)
    examples = [(x, run_program(parse_program("sort,reverse"), x)) for x in ("abc", "dgz")]
    assert simplest_fitting(parse_program("sort,reverse"), examples) == (ops["reverse"],)
    # both ops, in the task's order, when the examples need them
    examples = [(x, run_program(parse_program("sort,reverse"), x)) for x in ("bca", "qzd")]
    assert simplest_fitting(parse_program("sort,reverse"), examples) == (ops["sort"], ops["reverse"])


def test_encoded_batches_train_on_answers_only():
    tokenizer = build_tokenizer()
    rng = random.Random(1)
    examples = [sample_example(rng) for _ in range(8)]
    batch = encode_batch(tokenizer, examples)
    for i, e in enumerate(examples):
        labels = batch["labels"][i][batch["labels"][i] != -100].tolist()
        assert tokenizer.decode(labels, skip_special_tokens=False) == e.answer + "<|im_end|>"
        assert int(batch["attention_mask"][i].sum()) == example_length(e)


def test_partial_credit_ranks_near_misses_above_far_ones_and_keeps_exact_at_one():
    from fastslow.tasks import load_task

    exact, partial = load_task("strings", program="reverse"), load_task("strings", program="reverse", partial_credit=True)
    problem = exact.problems("train", 1, 0)[0]
    near, far = problem.answer[:-1], "#" * len(problem.answer)
    assert exact.score(problem, near).reward == 0.0 and exact.score(problem, problem.answer).reward == 1.0
    assert partial.score(problem, problem.answer).reward == 1.0
    assert 0.0 == partial.score(problem, far).reward < partial.score(problem, near).reward <= 0.5
    assert partial.score(problem, near).feedback == exact.score(problem, near).feedback
