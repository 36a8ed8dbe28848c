"""Math with verifiable answers (the paper's Polaris setting): answers are checked with `math_verify`.

Data: Polaris-style rows {problem, answer} from a local JSONL/JSON/CSV/parquet file or a Hugging Face dataset
(default: POLARIS-Project/Polaris-Dataset-53K, which needs the network once).
"""

from __future__ import annotations

import threading

from fastslow.errors import FastSlowError
from fastslow.tasks.answers import extract_answer, normalize, strip_thinking
from fastslow.tasks.base import Problem, Verdict
from fastslow.tasks.loading import content_id, load_problems, row_text

SEED_PROMPT = (
    "Solve the math problem. Think step by step, check your work, "
    "and put the final answer, simplified, in \\boxed{}."
)
MAX_ANSWER_CHARS = 4000  # math_verify reads the end of the completion; long texts only slow sympy down


def _timeouts() -> int | None:
    # math_verify's timeouts use signal.alarm, which only works in the main thread.
    return 5 if threading.current_thread() is threading.main_thread() else None


def parse_math(text: str) -> list:
    """math_verify's parse (sympy value(s) and the matched string); [] when nothing parses."""
    from math_verify import parse

    try:
        return parse(text, parsing_timeout=_timeouts())
    except Exception:  # math_verify should not raise, but sympy sometimes does
        return []


def parse_gold(answer: str) -> list:
    """A reference answer, written as LaTeX or as a plain expression."""
    return parse_math(answer if "\\boxed" in answer or "$" in answer else f"${answer}$") or parse_math(answer)


def math_verdict(answer: str, completion: str) -> Verdict:
    """Reward 1 iff the completion's final answer equals `answer` mathematically (math_verify)."""
    from math_verify import verify

    text = strip_thinking(completion)[-MAX_ANSWER_CHARS:]
    if not text.strip():
        return Verdict(0.0, f"No final answer: the reply was empty or the reasoning never finished. Expected: {answer}")
    gold, predicted = parse_gold(answer), parse_math(text)
    shown = predicted[-1] if predicted and isinstance(predicted[-1], str) else extract_answer(text)
    if gold and predicted:
        try:
            correct = verify(gold, predicted, timeout_seconds=_timeouts())
        except Exception:
            correct = False
    else:  # the reference does not parse as math: compare the text
        correct = bool(shown) and normalize(extract_answer(text)) == normalize(answer)
    if correct:
        return Verdict(1.0, f"Correct: the answer {answer} was given.")
    if not predicted and not shown:
        return Verdict(0.0, f"No final answer found. Expected: {answer}. Put the final answer in \\boxed{{}}.")
    return Verdict(0.0, f"Incorrect: expected {answer}, but the final answer was {shown}.")


class MathTask:
    """Competition math; reward 1 iff the final answer matches the reference (`math_verify`).

    Args (config `task.args`):
        path: local .jsonl/.json/.csv/.parquet file or Hugging Face dataset name.
        problem_field, answer_field: the columns holding the problem text and the reference answer.
        id_field: column with a unique problem id; rows without it get an id hashed from the problem text.
        hf_config, hf_split: dataset config and split for `datasets.load_dataset`.
        val_fraction, test_fraction, split_seed: how val/test are carved out when the data has no such split.
    """

    name = "math"
    seed_prompt = SEED_PROMPT

    def __init__(
        self,
        path: str = "POLARIS-Project/Polaris-Dataset-53K",
        problem_field: str = "problem",
        answer_field: str = "answer",
        id_field: str = "id",
        hf_config: str | None = None,
        hf_split: str | None = None,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
    ):
        def to_problem(row: dict) -> Problem:
            problem, answer = row_text(row, problem_field).strip(), row_text(row, answer_field).strip()
            pid = str(row[id_field]) if row.get(id_field) is not None else content_id(problem, prefix="math-")
            return Problem(id=pid, prompt=problem, answer=answer)

        if not path:
            raise FastSlowError("task.args.path: expected a data file or a dataset name")
        self.data = load_problems(
            path, to_problem, f"rows with {problem_field!r} and {answer_field!r} fields",
            hf_config=hf_config, hf_split=hf_split, val_fraction=val_fraction, test_fraction=test_fraction,
            split_seed=split_seed,
        )

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return self.data.problems(split, n, seed)

    def score(self, problem: Problem, completion: str) -> Verdict:
        return math_verdict(problem.answer, completion)
