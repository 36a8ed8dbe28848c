"""Any dataset of (prompt, answer) rows, scored by a chosen verifier.

Verifiers compare the completion's final answer (`fastslow.tasks.answers.extract_answer`: thinking removed,
then `\\boxed{}`, an "Answer:" line, or the last line) with the row's answer:
    exact    equal after whitespace normalisation (`ignore_case` to compare case-insensitively)
    numeric  equal as numbers within `tolerance` (relative and absolute)
    regex    the answer field is a regular expression that must match the whole final answer
    math     equal mathematically (math_verify), as in the math task
    "module:function"  your function `(problem, completion)` returning a reward in [0, 1] (or a bool),
             a (reward, feedback) pair, or a `Verdict`
Answers must be strings or numbers; a row whose answer is null, a boolean, a list or an object is skipped as
malformed, unless a custom verifier declares `structured_answers = True` (it then gets lists and objects as JSON).
"""

from __future__ import annotations

import importlib
import logging
import math
import re
from collections.abc import Callable
from fractions import Fraction

from fastslow.errors import FastSlowError
from fastslow.tasks.answers import extract_answer, normalize
from fastslow.tasks.base import Problem, Verdict
from fastslow.tasks.loading import content_id, load_problems, row_text
from fastslow.tasks.math import math_verdict

log = logging.getLogger(__name__)

VERIFIERS = ("exact", "numeric", "regex", "math")
SEED_PROMPT = (
    "Answer the question. Think it through, then give the final answer on the last line as 'Answer: <answer>'."
)
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:\s*/\s*\d+)?")


def parse_number(text: str) -> float | None:
    """A number written as 12, -3.5, 1,234, 1e-3 or 3/4; else the last such number in the text."""
    for candidate in [text.strip().rstrip("%").lstrip("$")] + _NUMBER.findall(text)[::-1]:
        try:
            return float(Fraction(candidate.replace(",", "").replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            continue
    return None


class JsonlTask:
    """Your own data: rows with a prompt and an answer field, scored by a chosen verifier.

    Args (config `task.args`):
        path: .jsonl/.json/.csv/.parquet file or Hugging Face dataset name.
        prompt_field, answer_field: the columns holding the user message and the reference answer.
        id_field: column with a unique id; rows without it get an id hashed from the prompt.
        verifier: "exact", "numeric", "regex", "math" or "module:function" (see the module docstring).
        tolerance: for "numeric". ignore_case: for "exact" and "regex".
        seed_prompt: the starting system prompt (default: a generic "Answer: ..." instruction).
        hf_config, hf_split, val_fraction, test_fraction, split_seed: as in `fastslow.tasks.loading`.
    """

    name = "jsonl"

    def __init__(
        self,
        path: str,
        prompt_field: str = "prompt",
        answer_field: str = "answer",
        id_field: str = "id",
        verifier: str = "exact",
        tolerance: float = 1e-6,
        ignore_case: bool = False,
        seed_prompt: str = SEED_PROMPT,
        hf_config: str | None = None,
        hf_split: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
    ):
        if verifier not in VERIFIERS and ":" not in verifier:
            raise FastSlowError(
                f"task.args.verifier: expected one of {VERIFIERS} or 'module:function', got {verifier!r}"
            )
        if not 0 <= tolerance < math.inf:
            raise FastSlowError("task.args.tolerance: expected a finite number >= 0")
        self.verifier, self.tolerance, self.ignore_case = verifier, tolerance, ignore_case
        self.seed_prompt = seed_prompt
        self.custom = _import_verifier(verifier) if ":" in verifier else None
        regex_flags = re.IGNORECASE if ignore_case else 0

        structured = getattr(self.custom, "structured_answers", False)

        def to_problem(row: dict) -> Problem:
            prompt, answer = row_text(row, prompt_field), row_text(row, answer_field, structured).strip()
            if verifier == "regex":
                try:
                    re.compile(answer, regex_flags)
                except re.error as exc:
                    raise ValueError(f"answer is not a valid regular expression: {exc}") from None
            if verifier == "numeric" and parse_number(answer) is None:
                raise ValueError(f"answer {answer!r} is not a number")
            pid = str(row[id_field]) if row.get(id_field) is not None else content_id(prompt, prefix="row-")
            return Problem(id=pid, prompt=prompt, answer=answer, info={k: v for k, v in row.items() if _plain(v)})

        self.data = load_problems(
            path, to_problem, f"rows with {prompt_field!r} and {answer_field!r} fields",
            hf_config=hf_config, hf_split=hf_split, val_fraction=val_fraction, test_fraction=test_fraction,
            split_seed=split_seed,
        )

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return self.data.problems(split, n, seed)

    def score(self, problem: Problem, completion: str) -> Verdict:
        if self.custom is not None:
            return self._score_custom(problem, completion)
        if self.verifier == "math":
            return math_verdict(problem.answer, completion)
        given = extract_answer(completion)
        if not given:
            return Verdict(0.0, f"No final answer found. Expected: {problem.answer}")
        if self.verifier == "numeric":
            value, target = parse_number(given), parse_number(problem.answer)
            correct = value is not None and math.isclose(value, target, rel_tol=self.tolerance, abs_tol=self.tolerance)
        elif self.verifier == "regex":
            flags = re.IGNORECASE if self.ignore_case else 0
            correct = re.fullmatch(problem.answer, normalize(given), flags) is not None
        else:
            a, b = normalize(given), normalize(problem.answer)
            correct = a.lower() == b.lower() if self.ignore_case else a == b
        expected = f"an answer matching /{problem.answer}/" if self.verifier == "regex" else problem.answer
        if correct:
            return Verdict(1.0, f"Correct: the answer {given} matches {expected}.")
        return Verdict(0.0, f"Incorrect: expected {expected}, but the final answer was {given}.")

    def _score_custom(self, problem: Problem, completion: str) -> Verdict:
        try:
            out = self.custom(problem, completion)
        except Exception as exc:  # a completion the user's verifier chokes on earns 0, not a crash
            log.warning("verifier %s raised on problem %s: %r", self.verifier, problem.id, exc)
            return Verdict(0.0, f"The answer could not be checked ({type(exc).__name__}: {exc}).")
        if isinstance(out, Verdict):
            reward, feedback = out.reward, out.feedback
        elif isinstance(out, tuple) and len(out) == 2:
            reward, feedback = out
        else:
            reward, feedback = out, None
        if isinstance(reward, bool):
            reward = float(reward)
        if not isinstance(reward, (int, float)) or not 0 <= reward <= 1:
            raise FastSlowError(
                f"task.args.verifier: {self.verifier} returned {out!r}; expected a reward in [0, 1], "
                "a (reward, feedback) pair or a Verdict"
            )
        if feedback is None:
            feedback = f"Reward {reward:g}. Expected: {problem.answer}"
        return Verdict(float(reward), str(feedback))


def _import_verifier(target: str) -> Callable:
    module_name, _, attr = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise FastSlowError(f"task.args.verifier: cannot import {target!r}: {exc}") from None
    if not callable(fn):
        raise FastSlowError(f"task.args.verifier: {target!r} is not callable")
    return fn


def _plain(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))
