"""The real-world tasks (codeio, math, hover, jsonl), answer extraction and data loading, on data built here."""

from __future__ import annotations

import csv
import json
import logging
import random
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clirun import TESTS, assert_user_error, tiny_run, write

from fastslow.errors import FastSlowError
from fastslow.tasks import Task, load_task
from fastslow.tasks.answers import extract_answer, last_boxed, strip_thinking
from fastslow.tasks.codeio import TEMPLATES, CodeIOTask, parse_value, run_call, same_value
from fastslow.tasks.hover import HoverTask, parse_queries
from fastslow.tasks.jsonl import JsonlTask, parse_number
from fastslow.tasks.loading import load_problems, read_rows
from fastslow.tasks.math import MathTask
from fastslow.tasks.sandbox import Limits


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


ARITHMETIC = [{"problem": f"What is {a} + {b}?", "answer": str(a + b)} for a in range(6) for b in range(5)]

# ----------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    "completion, answer",
    [
        ("<think>maybe 3? no, 4</think>\nThe result is \\boxed{4}.", "4"),
        ("reasoning...</think>Answer: [1, 2]", "[1, 2]"),  # chat template put <think> in the prompt
        ("<think>I am still thinking when the budget runs out", ""),
        ("So \\boxed{\\frac{1}{2}} or rather \\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),
        ("Step 1...\nFinal answer: **  42 **", "42"),
        ("Answer:\n(3, 'a')", "(3, 'a')"),
        ("line one\nthe value is   7  \n\n", "the value is 7"),
        ("Answer: `{'a': 1}`.", "{'a': 1}"),
        ("", ""),
    ],
)
def test_extract_answer(completion, answer):
    assert extract_answer(completion) == answer


def test_strip_thinking_and_nested_boxed():
    assert strip_thinking("<think>a</think> b <think>c</think> d") == " d"
    assert strip_thinking("no tags") == "no tags"
    assert last_boxed("\\boxed{\\sqrt{\\frac{1}{2}}} end") == "\\sqrt{\\frac{1}{2}}"
    assert last_boxed("\\boxed{unclosed") is None


# ----------------------------------------------------------------------------- loading


def _ids(problems):
    return {p.id for p in problems}


def test_loading_skips_malformed_rows_with_a_warning(tmp_path, caplog):
    rows = ARITHMETIC[:10] + ["{not json", json.dumps(["a", "list"]), json.dumps({"problem": "no answer"})]
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    with caplog.at_level(logging.WARNING):
        task = MathTask(path=str(path), val_fraction=0.2, test_fraction=0.0)
    assert len(task.data) == 10
    assert "skipped 3 malformed rows of 13" in caplog.text and "line 11" in caplog.text
    assert "not valid JSON" in caplog.text


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ('{"question": "1+1", "answer": "2"}\n',
         "no usable rows (1 malformed, first at line 1: missing field 'problem')"),
        ("garbage\n\n[1]\n", "no usable rows (2 malformed, first at line 1"),
    ],
)
def test_loading_fails_clearly_without_usable_rows(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(FastSlowError, match="task.args.path") as err:
        MathTask(path=str(path))
    assert message in str(err.value) and str(path) in str(err.value)
    assert "expected rows with 'problem' and 'answer' fields" in str(err.value)


def test_loading_missing_or_unsupported_files(tmp_path):
    with pytest.raises(FastSlowError, match="file not found"):
        MathTask(path=str(tmp_path / "missing.jsonl"))
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(FastSlowError, match="unsupported file type '.txt'"):
        MathTask(path=str(tmp_path / "data.txt"))
    (tmp_path / "data.json").write_text('{"a": 1}')
    with pytest.raises(FastSlowError, match="list of objects"):
        MathTask(path=str(tmp_path / "data.json"))


def test_every_file_format_gives_the_same_problems(tmp_path):
    jsonl = write_jsonl(tmp_path / "d.jsonl", ARITHMETIC)
    (tmp_path / "d.json").write_text(json.dumps(ARITHMETIC))
    with open(tmp_path / "d.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["problem", "answer"])
        writer.writeheader()
        writer.writerows(ARITHMETIC)
    pq.write_table(pa.Table.from_pylist(ARITHMETIC), tmp_path / "d.parquet")
    splits = []
    for name in ("d.jsonl", "d.json", "d.csv", "d.parquet"):
        task = MathTask(path=str(tmp_path / name), val_fraction=0.1, test_fraction=0.1)
        splits.append({s: sorted(_ids(task.data.splits[s])) for s in ("train", "val", "test")})
    assert all(s == splits[0] for s in splits)
    assert len(splits[0]["val"]) == 3 and len(splits[0]["test"]) == 3 and len(splits[0]["train"]) == 24
    assert MathTask(path=str(jsonl), val_fraction=0.1).problems("val", 3, seed=0)[0].answer.isdigit()


def write_with_sparse_line(path, gigabytes=1.0):
    """A JSONL file whose 4th line is a row of `gigabytes` GB (a hole in the file: written in an instant, no disk)."""
    with open(path, "wb") as f:
        for row in ARITHMETIC[:3]:
            f.write((json.dumps(row) + "\n").encode())
        f.write(b'{"problem": "')
        f.seek(int(gigabytes * (1 << 30)), 1)
        f.write(b'", "answer": "1"}\n')
        for row in ARITHMETIC[3:]:
            f.write((json.dumps(row) + "\n").encode())
    return path


@pytest.mark.parametrize("task", [MathTask, lambda path: JsonlTask(path=path, prompt_field="problem"),
                                  lambda path: HoverTask(path=path, corpus=path)], ids=["math", "jsonl", "hover"])
def test_a_one_gigabyte_line_is_refused_before_it_is_read_whole(tmp_path, task):
    path = write_with_sparse_line(tmp_path / "big.jsonl")
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(FastSlowError) as error:
            task(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - start < 10 and peak < 64 << 20  # one 16 MB read, not 1 GB (nor 12 GB of tokens)
    assert f"{path} line 4 is longer than 16 MB, the cap on one dataset row" in str(error.value)


def test_a_row_nested_too_deeply_for_json_is_a_malformed_row(tmp_path, caplog):
    path = write_jsonl(tmp_path / "d.jsonl", ARITHMETIC + ["[" * 100_000 + "]" * 100_000])
    with caplog.at_level(logging.WARNING):
        task = MathTask(path=str(path), val_fraction=0, test_fraction=0)
    assert len(task.data.splits["train"]) == len(ARITHMETIC)
    assert "skipped 1 malformed rows" in caplog.text and "line 31: JSON nested too deeply" in caplog.text


def test_rows_over_the_cap_are_refused_in_every_format(tmp_path):
    big = {"problem": "x" * (17 << 20), "answer": "1"}
    (tmp_path / "d.json").write_text(json.dumps(ARITHMETIC[:3] + [big]))
    pq.write_table(pa.Table.from_pylist(ARITHMETIC[:3] + [big]), tmp_path / "d.parquet")
    with open(tmp_path / "d.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["problem", "answer"])
        writer.writeheader()
        writer.writerows(ARITHMETIC[:3] + [big])
    for name, where in (("d.json", "row 3"), ("d.parquet", "row 3"), ("d.csv", "line 5")):
        with pytest.raises(FastSlowError, match=f"{name} {where} is longer than 16 MB, the cap on one dataset row"):
            MathTask(path=str(tmp_path / name))
    with open(tmp_path / "d.csv", "w", newline="") as f:  # a field of 200 KB (over csv's own 128 KB limit) is fine
        writer = csv.DictWriter(f, fieldnames=["problem", "answer"])
        writer.writeheader()
        writer.writerows(ARITHMETIC[:5] + [{"problem": "y" * 200_000, "answer": "2"}])
    assert len(MathTask(path=str(tmp_path / "d.csv"), val_fraction=0, test_fraction=0).data.splits["train"]) == 6


def test_a_large_line_through_the_cli_is_one_line_and_little_memory(tmp_path, tiny_model_path):
    path = write_with_sparse_line(tmp_path / "big.jsonl")
    data = tiny_run(tmp_path, tiny_model_path, task={"name": "jsonl", "args": {"path": str(path), "prompt_field": "problem"}})
    config = write(tmp_path, data)
    with open(tmp_path / "err", "w+") as err:
        process = subprocess.Popen([sys.executable, "-m", "fastslow", "run", str(config)], cwd=TESTS,
                                   env={**os.environ, "PYTHONPATH": str(TESTS.parent)}, stdout=subprocess.DEVNULL,
                                   stderr=err, text=True)
        peak = 0  # KB: the child's own high-water mark (VmHWM). Not wait4's ru_maxrss, which keeps the RSS the child
        while process.poll() is None:  # had before exec, i.e. this test process's (3.4 GB late in the full suite)
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
                peak = max(peak, int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]))
            except (OSError, StopIteration):  # exiting, or a zombie without memory lines
                pass
            time.sleep(0.01)
        err.seek(0)
        result = subprocess.CompletedProcess(process.args, process.returncode, "", err.read())
    assert_user_error(result, f"task.args.path: {path} line 4 is longer than 16 MB", "cap on one dataset row")
    assert 0 < peak < 1_500_000  # KB: the interpreter with torch imported, not 1 GB more (it was 12 GB)
    assert list((tmp_path / "runs").iterdir()) == []


def test_splits_are_disjoint_stable_and_seeded(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", ARITHMETIC)
    shuffled = ARITHMETIC[:]
    random.Random(1).shuffle(shuffled)
    other = write_jsonl(tmp_path / "b.jsonl", shuffled)
    a, b = MathTask(path=str(path), val_fraction=0.1), MathTask(path=str(other), val_fraction=0.1)
    for split in ("train", "val", "test"):  # independent of row order
        assert _ids(a.data.splits[split]) == _ids(b.data.splits[split])
    train, val = _ids(a.data.splits["train"]), _ids(a.data.splits["val"])
    assert not train & val
    assert [p.id for p in a.problems("train", 8, seed=3)] == [p.id for p in b.problems("train", 8, seed=3)]
    assert [p.id for p in a.problems("train", 8, seed=3)] != [p.id for p in a.problems("train", 8, seed=4)]
    assert len(a.data.splits["train"]) == 25 and len(_ids(a.problems("train", 25, seed=0))) == 25
    resplit = MathTask(path=str(path), val_fraction=0.1, split_seed=1)
    assert _ids(resplit.data.splits["val"]) != _ids(a.data.splits["val"])
    with pytest.raises(FastSlowError, match="has 25 train problems but 26 were asked for; lower task.train_size"):
        a.problems("train", 26, seed=0)


def test_split_column_and_split_mapping_are_respected(tmp_path):
    rows = [dict(r, split="test" if i < 4 else "train") for i, r in enumerate(ARITHMETIC)]
    task = MathTask(path=str(write_jsonl(tmp_path / "s.jsonl", rows)), val_fraction=0.1)
    assert {p.prompt for p in task.data.splits["test"]} == {r["problem"] for r in ARITHMETIC[:4]}
    assert len(task.data.splits["val"]) == 3  # carved from train: the data has no val split
    (tmp_path / "m.json").write_text(json.dumps({"train": ARITHMETIC[:20], "validation": ARITHMETIC[20:]}))
    mapped = MathTask(path=str(tmp_path / "m.json"))
    assert len(mapped.data.splits["val"]) == 10


def test_local_dataset_directory_goes_through_load_dataset(tmp_path):
    folder = tmp_path / "polaris"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", ARITHMETIC[:20])
    write_jsonl(folder / "test.jsonl", ARITHMETIC[20:])
    locations = [loc for loc, _, _ in read_rows(str(folder))]
    assert "train row 0" in locations and "test row 9" in locations
    task = MathTask(path=str(folder))
    assert len(task.data.splits["test"]) == 10 and len(task.data.splits["val"]) == 1


def test_id_field_and_duplicates(tmp_path, caplog):
    rows = [{"id": "q1", "prompt": "a", "answer": "1"}, {"id": "q1", "prompt": "b", "answer": "2"},
            {"id": "q2", "prompt": "c", "answer": "3"}]
    with caplog.at_level(logging.WARNING):
        problems = load_problems(str(write_jsonl(tmp_path / "d.jsonl", rows)), _row_problem, "rows",
                                 val_fraction=0, test_fraction=0)
    assert sorted(_ids(problems.splits["train"])) == ["q1", "q2"]
    assert "duplicate id 'q1'" in caplog.text


def _row_problem(row):
    from fastslow.tasks.base import Problem

    return Problem(id=row["id"], prompt=row["prompt"], answer=row["answer"])


# ----------------------------------------------------------------------------- math


def test_math_task_scores_with_math_verify(tmp_path):
    rows = [{"problem": "Half of one?", "answer": "\\frac{1}{2}"}, {"problem": "Roots of x^2=4?", "answer": "\\pm 2"},
            {"problem": "Pi to 2 places?", "answer": "3.14"}, {"problem": "Interval?", "answer": "[0, 1)"}]
    task = MathTask(path=str(write_jsonl(tmp_path / "m.jsonl", rows)), val_fraction=0, test_fraction=0)
    assert isinstance(task, Task) and "\\boxed" in task.seed_prompt
    by_prompt = {p.prompt: p for p in task.problems("train", 4, seed=0)}
    half = by_prompt["Half of one?"]
    assert task.score(half, "<think>1/2 = 0.5</think> So the answer is \\boxed{0.5}").reward == 1.0
    assert task.score(half, "\\boxed{\\dfrac{2}{4}}").reward == 1.0
    wrong = task.score(half, "\\boxed{2}")
    assert wrong.reward == 0.0 and "expected \\frac{1}{2}" in wrong.feedback and "2" in wrong.feedback
    unfinished = task.score(half, "<think>Let me think about 1/2")
    assert unfinished.reward == 0.0 and "never finished" in unfinished.feedback
    assert task.score(by_prompt["Interval?"], "\\boxed{[0,1)}").reward == 1.0
    assert task.score(by_prompt["Interval?"], "\\boxed{[0,1]}").reward == 0.0
    assert task.score(by_prompt["Pi to 2 places?"], "It is \\boxed{3.14}.").reward == 1.0


def test_math_task_reads_polaris_parquet(tmp_path):
    rows = [{"problem": f"Compute {i}*{i}.", "answer": str(i * i), "difficulty": "1/8"} for i in range(40)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "polaris.parquet")
    task = load_task("math", path=str(tmp_path / "polaris.parquet"))
    problems = task.problems("train", 10, seed=0)
    assert all(p.id.startswith("math-") for p in problems)
    p = problems[0]
    assert task.score(p, f"\\boxed{{{p.answer}}}").reward == 1.0


# ----------------------------------------------------------------------------- hover

CORPUS = [
    {"title": "Ada Lovelace", "text": "Ada Lovelace was an English mathematician who wrote on the Analytical Engine."},
    {"title": "Analytical Engine", "text": "The Analytical Engine was a mechanical computer designed by Babbage."},
    {"title": "Charles Babbage", "text": "Charles Babbage was an English polymath, born in London."},
    {"title": "London", "text": "London is the capital city of England."},
    {"title": "Lord Byron", "text": "Lord Byron was a poet and the father of Ada Lovelace."},
    {"title": "Paris", "text": "Paris is the capital of France."},
]
CLAIMS = [
    {"uid": "c1", "claim": "The father of the writer on the Analytical Engine was a poet.",
     "supporting_facts": [["Ada Lovelace", 0], ["Lord Byron", 0]]},
    {"uid": "c2", "claim": "The designer of the Analytical Engine was born in London.",
     "supporting_facts": [["Analytical Engine", 0], ["Charles Babbage", 0]]},
    {"uid": "c3", "claim": "A claim about a missing article.", "supporting_facts": [["Atlantis", 0]]},
]


@pytest.fixture
def hover(tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
    claims = write_jsonl(tmp_path / "claims.jsonl", CLAIMS)
    return HoverTask(path=str(claims), corpus=str(corpus), k=2, val_fraction=0, test_fraction=0)


def test_hover_rewards_retrieving_every_gold_document(hover):
    problems = {p.id: p for p in hover.problems("train", 2, seed=0)}  # c3 was skipped: its gold is not in the corpus
    assert set(problems) == {"c1", "c2"} and "Query:" in hover.seed_prompt
    c2 = problems["c2"]
    assert c2.prompt.startswith("Claim:") and json.loads(c2.answer) == ["Analytical Engine", "Charles Babbage"]
    good = hover.score(c2, "<think>two hops</think>\nQuery: Analytical Engine designer\nQuery: Charles Babbage born")
    assert good.reward == 1.0 and "Retrieved 2 of 2" in good.feedback and "Missed" not in good.feedback
    half = hover.score(c2, "Query: Paris France capital\nQuery: mechanical computer Analytical Engine")
    assert half.reward == 0.0
    assert 'Found: "Analytical Engine"' in half.feedback and 'Missed: "Charles Babbage"' in half.feedback
    none = hover.score(c2, "")
    assert none.reward == 0.0 and "No search query" in none.feedback and "Charles Babbage" in none.feedback


def test_hover_partial_credit_and_query_limit(tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [dict(d, id=f"d{i}") for i, d in enumerate(CORPUS)])
    claims = write_jsonl(tmp_path / "claims.jsonl", [dict(c, supporting_facts=["d0", "d4"]) for c in CLAIMS[:1]])
    task = HoverTask(path=str(claims), corpus=str(corpus), k=1, max_queries=1, partial_credit=True,
                     val_fraction=0, test_fraction=0)
    (p,) = task.problems("train", 1, seed=0)
    assert task.score(p, "Query: Ada Lovelace mathematician\nQuery: Lord Byron poet").reward == 0.5  # 2nd ignored
    assert parse_queries("1. Query: a\n- query 2: b\nSearch query: c", 5) == ["a", "b", "c"]
    assert parse_queries("Answer: Lord Byron", 3) == ["Lord Byron"]


def test_hover_bad_corpus(tmp_path):
    empty = tmp_path / "corpus.jsonl"
    empty.write_text("")
    claims = write_jsonl(tmp_path / "claims.jsonl", CLAIMS)
    with pytest.raises(FastSlowError, match="task.args.corpus: .*is empty"):
        HoverTask(path=str(claims), corpus=str(empty))


# ----------------------------------------------------------------------------- jsonl


def test_jsonl_builtin_verifiers(tmp_path):
    rows = [{"id": "a", "question": "Capital of France?", "gold": "Paris"},
            {"id": "b", "question": "Pi?", "gold": "3.14159"},
            {"id": "c", "question": "A date?", "gold": r"\d{4}-\d{2}-\d{2}"}]
    path = str(write_jsonl(tmp_path / "d.jsonl", rows))
    common = dict(path=path, prompt_field="question", answer_field="gold", val_fraction=0, test_fraction=0)

    def problem(task, pid):
        return next(p for p in task.problems("train", len(task.data.splits["train"]), 0) if p.id == pid)

    exact = JsonlTask(**common)
    assert exact.score(problem(exact, "a"), "Answer: Paris").reward == 1.0
    assert exact.score(problem(exact, "a"), "Answer: paris").reward == 0.0
    assert JsonlTask(**common, ignore_case=True).score(problem(exact, "a"), "Answer: paris").reward == 1.0
    miss = exact.score(problem(exact, "a"), "Answer: Lyon")
    assert miss.reward == 0.0 and "expected Paris" in miss.feedback and "Lyon" in miss.feedback

    numeric = JsonlTask(**{**common, "path": str(write_jsonl(tmp_path / "n.jsonl", rows[1:2]))},
                        verifier="numeric", tolerance=1e-3)
    pi = problem(numeric, "b")
    assert numeric.score(pi, "about \\boxed{3.1416}").reward == 1.0
    assert numeric.score(pi, "Answer: 3.15").reward == 0.0
    assert parse_number("1,234.5") == 1234.5 and parse_number("3/4") == 0.75 and parse_number("x = -2e3 m") == -2000

    regex = JsonlTask(**{**common, "path": str(write_jsonl(tmp_path / "r.jsonl", rows[2:]))}, verifier="regex")
    assert regex.score(problem(regex, "c"), "Answer: 2024-05-11").reward == 1.0
    assert regex.score(problem(regex, "c"), "Answer: May 2024").reward == 0.0

    maths = JsonlTask(path=str(write_jsonl(tmp_path / "m.jsonl", [{"prompt": "1/2+1/2?", "answer": "1"}])),
                      verifier="math", val_fraction=0, test_fraction=0)
    (one,) = maths.problems("train", 1, 0)
    assert maths.score(one, "\\boxed{2/2}").reward == 1.0


def test_jsonl_rejects_bad_config_and_rows(tmp_path):
    path = str(write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "answer": "("}, {"prompt": "q", "answer": "x"}]))
    with pytest.raises(FastSlowError, match="task.args.verifier: expected one of"):
        JsonlTask(path=path, verifier="fuzzy")
    with pytest.raises(FastSlowError, match="no usable rows .*not a valid regular expression"):
        JsonlTask(path=str(write_jsonl(tmp_path / "r.jsonl", [{"prompt": "p", "answer": "("}])), verifier="regex")
    with pytest.raises(FastSlowError, match="cannot import 'no_such_module_xyz:check'"):
        JsonlTask(path=path, verifier="no_such_module_xyz:check")


def test_jsonl_custom_verifier(tmp_path, monkeypatch):
    (tmp_path / "my_verifiers.py").write_text(textwrap.dedent("""
        def length(problem, completion):
            return min(1.0, len(completion) / int(problem.answer)), f"{len(completion)} characters"
        def strict(problem, completion):
            return completion.strip() == problem.answer
        def broken(problem, completion):
            return int(completion)
        def wrong_type(problem, completion):
            return "yes"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = str(write_jsonl(tmp_path / "d.jsonl", [{"prompt": "Write 10 characters", "answer": "10"}]))
    args = dict(path=path, val_fraction=0, test_fraction=0)
    task = JsonlTask(**args, verifier="my_verifiers:length")
    (p,) = task.problems("train", 1, 0)
    assert task.score(p, "abcde").reward == 0.5 and task.score(p, "abcde").feedback == "5 characters"
    strict = JsonlTask(**args, verifier="my_verifiers:strict")
    assert strict.score(p, " 10 ").reward == 1.0 and strict.score(p, "11").reward == 0.0
    broken = JsonlTask(**args, verifier="my_verifiers:broken")
    verdict = broken.score(p, "not a number")
    assert verdict.reward == 0.0 and "ValueError" in verdict.feedback
    with pytest.raises(FastSlowError, match="expected a reward in"):
        JsonlTask(**args, verifier="my_verifiers:wrong_type").score(p, "x")


# ----------------------------------------------------------------------------- codeio


@pytest.fixture(scope="module")
def codeio():
    return CodeIOTask()


def test_codeio_generator_is_varied_deterministic_and_split(codeio):
    assert len(TEMPLATES) >= 36 and len({t.__name__ for t in TEMPLATES}) == len(TEMPLATES)
    train = codeio.problems("train", 120, seed=0)
    again = CodeIOTask().problems("train", 120, seed=0)
    assert [(p.id, p.prompt, p.answer) for p in train] == [(p.id, p.prompt, p.answer) for p in again]
    assert len(_ids(train)) == 120
    assert _ids(codeio.problems("train", 120, seed=1)) != _ids(train)
    val, test = codeio.problems("val", 40, seed=0), codeio.problems("test", 40, seed=0)
    assert not (_ids(train) & _ids(val)) and not (_ids(val) & _ids(test))
    assert not _ids(codeio.problems("val", 40, seed=1)) & _ids(codeio.problems("train", 200, seed=1))
    assert len({p.info["code"].split("\n")[1] for p in train}) >= 25  # many templates in one batch
    p = train[0]
    assert "```python" in p.prompt and f"`{p.info['funcname']}(" in p.prompt


def test_codeio_answers_are_what_the_code_returns(codeio):
    for p in codeio.problems("val", 10, seed=2):
        value, error = run_call(p.info["code"], p.info["funcname"], p.info["input"], Limits())
        assert not error and same_value(value, parse_value(p.answer))


def test_codeio_output_scoring(codeio):
    p = next(p for p in codeio.problems("train", 60, seed=0) if isinstance(parse_value(p.answer), tuple))
    value = parse_value(p.answer)
    assert codeio.score(p, f"<think>trace</think>\nAnswer: {p.answer}").reward == 1.0
    assert codeio.score(p, f"\\boxed{{{json.dumps(list(value))}}}").reward == 1.0  # JSON list for a tuple
    assert codeio.score(p, f'Answer: {{"output": {json.dumps(list(value))}}}').reward == 1.0  # CodeI/O format
    wrong = codeio.score(p, "Answer: (0, 'nope')")
    assert wrong.reward == 0.0 and p.answer in wrong.feedback and "(0, 'nope')" in wrong.feedback
    garbled = codeio.score(p, "Answer: it returns a pair")
    assert garbled.reward == 0.0 and "not a valid Python or JSON value" in garbled.feedback
    assert codeio.score(p, "<think>never ends").reward == 0.0


def test_value_comparison():
    assert same_value((1, [2, 3]), [1, (2, 3)]) and same_value({1: "a"}, {"1": "a"})
    assert same_value(0.1 + 0.2, 0.3) and same_value(2, 2.0) and same_value({3, 1}, [1, 3])
    assert not same_value(True, 1) and not same_value(None, 0) and not same_value("1", 1)
    assert not same_value([1, 2], [2, 1]) and not same_value({"a": 1}, {"a": 1, "b": 2})
    assert parse_value("true") is True and parse_value("(1,)") == (1,) and parse_value("1 +") is not None


def test_codeio_loads_codeio_data_and_checks_predicted_inputs(tmp_path):
    raw = {"problem_description": "Count the vowels in a word.", "io_requirements": "Input: word (str).",
           "refcode": "def helper(c):\n    return c in 'aeiou'\n\ndef main_solution(word):\n"
                      "    return sum(helper(c) for c in word)\n",
           "funcname": "main_solution", "ios": [{"input": {"word": "banana"}, "output": 3},
                                                {"input": {"word": "sky"}, "output": 0}]}
    flat = {"id": "sq", "code": "def square(n):\n    return n * n\n", "input": json.dumps({"n": 7}), "output": "49"}
    path = write_jsonl(tmp_path / "codeio.jsonl", [raw, flat, {"code": "not python (", "input": {}, "output": 1}])
    outputs = CodeIOTask(path=str(path), ios_per_row=2, val_fraction=0, test_fraction=0)
    problems = {p.info["funcname"] + str(p.info["input"]): p for p in outputs.problems("train", 3, seed=0)}
    vowels = problems["main_solution{'word': 'banana'}"]
    assert "Count the vowels" in vowels.prompt and "main_solution(word='banana')" in vowels.prompt
    assert outputs.score(vowels, "Answer: 3").reward == 1.0 and outputs.score(vowels, "Answer: 2").reward == 0.0
    assert problems["square{'n': 7}"].id == "sq"

    inputs = CodeIOTask(path=str(path), predict="input", val_fraction=0, test_fraction=0)
    square = next(p for p in inputs.problems("train", 2, seed=0) if p.id == "sq")
    assert "returns: 49" in square.prompt
    assert inputs.score(square, 'Answer: {"n": -7}').reward == 1.0  # any input with the right output
    wrong = inputs.score(square, 'Answer: {"n": 6}')
    assert wrong.reward == 0.0 and "returns 36" in wrong.feedback and '{"n": 7}' in wrong.feedback
    assert inputs.score(square, "Answer: seven").reward == 0.0
    crash = inputs.score(square, 'Answer: {"m": 7}')
    assert crash.reward == 0.0 and "TypeError" in crash.feedback


def test_codeio_rejects_bad_args():
    with pytest.raises(FastSlowError, match="task.args.predict"):
        CodeIOTask(predict="both")
    with pytest.raises(FastSlowError, match="task.args.test_fraction is 0"):
        CodeIOTask(test_fraction=0).problems("test", 5, seed=0)


def test_registry_builds_every_real_task(tmp_path):
    data = str(write_jsonl(tmp_path / "d.jsonl", ARITHMETIC))
    corpus = str(write_jsonl(tmp_path / "corpus.jsonl", CORPUS))
    claims = str(write_jsonl(tmp_path / "claims.jsonl", CLAIMS[:2]))
    tasks = [load_task("codeio"), load_task("math", path=data), load_task("jsonl", path=data, prompt_field="problem"),
             load_task("hover", path=claims, corpus=corpus, val_fraction=0, test_fraction=0)]
    for task in tasks:
        assert isinstance(task, Task) and task.seed_prompt and task.problems("train", 1, seed=0)
    with pytest.raises(FastSlowError, match="task.args"):
        load_task("math", path=data, no_such_arg=1)


def test_answers_that_are_not_strings_or_numbers_are_skipped_and_counted(tmp_path, caplog, monkeypatch):
    good = [{"prompt": f"q{i}", "answer": a} for i, a in enumerate(["Paris", 3, 2.5, "x"])]
    bad = [{"prompt": "n", "answer": None}, {"prompt": "d", "answer": {"a": 1}}, {"prompt": "l", "answer": [1, 2]},
           {"prompt": "b", "answer": True}, {"prompt": {"nested": 1}, "answer": "1"}, {"prompt": "e", "answer": "  "}]
    path = str(write_jsonl(tmp_path / "d.jsonl", good + bad))
    with caplog.at_level(logging.WARNING):
        task = JsonlTask(path=path, val_fraction=0, test_fraction=0)
    assert sorted(p.answer for p in task.problems("train", 4, 0)) == ["2.5", "3", "Paris", "x"]
    assert "skipped 6 malformed rows of 10 (first at line 5: 'answer' must be a string or a number, got null)" \
        in caplog.text
    with pytest.raises(FastSlowError, match="no usable rows .*got an object"):
        MathTask(path=str(write_jsonl(tmp_path / "m.jsonl", [{"problem": "1+1", "answer": {"value": 2}}])))

    (tmp_path / "structured_verifier.py").write_text(
        "def check(problem, completion):\n    return problem.answer in completion\ncheck.structured_answers = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    structured = JsonlTask(path=path, verifier="structured_verifier:check", val_fraction=0, test_fraction=0)
    answers = {p.prompt: p.answer for p in structured.problems("train", 6, 0)}
    assert answers["d"] == '{"a": 1}' and answers["l"] == "[1, 2]"  # declared: lists and objects arrive as JSON
