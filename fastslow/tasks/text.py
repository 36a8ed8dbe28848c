"""Real-text tasks for small real LLMs (e.g. `smollm2`), generated offline from word lists and templates (tasks/data/).

- `arithmetic` (ArithmeticTask): "What is 23 + 48?"; the reply's last number is its answer.
- `compare`    (CompareTask): "Which is larger, 37 or 52?"; the reply must name the larger number and not the other.
- `letters`    (LetterTask): the first or last letter of an English noun (the reply's last single letter is its
               answer), or how many letters it has (the reply's last number).
- `sentiment`  (SentimentTask): a one-sentence review; the reply must name its label, positive or negative, and not
               the other. `ask: false` gives the review alone: only the prompt can say what to do with it.

A small instruction-tuned model answers these in sentences, so the verifiers read the answer where a sentence puts
it (`answer_of`: what they read, for `fastslow probe`'s answer entropy), and the feedback says what was expected,
what the reply gave and why that is not it, for the reflection LM.
Every task starts from the same task-agnostic seed prompt; `instruction` is a better one (what the task asks and in
what form to answer), as the micro tasks have. Problems are deterministic from (split, seed), splits disjoint by a
hash of the prompt (fastslow.tasks.base.make_problems). Rewards are binary.
"""

from __future__ import annotations

import json
import random
import re
from functools import cache
from pathlib import Path

from fastslow.errors import FastSlowError
from fastslow.tasks.base import Problem, Verdict, make_problems

DATA = Path(__file__).parent / "data"
SEED_PROMPT = "Solve the task."  # says nothing about any of these tasks
NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?!\w|\.\d|,\d)")  # 52, -7, 1,200; not 3.5, x12, 12b
LETTER = re.compile(r"(?<![A-Za-z'])[A-Za-z](?![A-Za-z'])")


@cache
def questions() -> dict:
    return json.loads((DATA / "questions.json").read_text())


@cache
def words() -> tuple[str, ...]:
    lines = (DATA / "words.txt").read_text().splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@cache
def reviews() -> dict:
    return json.loads((DATA / "reviews.json").read_text())


def numbers_in(text: str) -> list[int]:
    """The whole numbers a reply writes, in order ("1,200" is one number; "3.5" is none)."""
    return [int(m.group().replace(",", "")) for m in NUMBER.finditer(text)]


def last_number(text: str) -> int | None:
    found = numbers_in(text)
    return found[-1] if found else None


def last_letter(text: str) -> str | None:
    """The last letter that stands alone in the reply ('g' in 'It starts with "g".'), lowercased."""
    found = LETTER.findall(text)
    return found[-1].lower() if found else None


def named(option: str, text: str) -> bool:
    """Whether the reply names `option` as a whole word or number (case-insensitive)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w])", text, re.IGNORECASE) is not None


def quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def verdict_by_value(expected: str, got: object | None, what: str, reply: str) -> Verdict:
    """Reward 1 when the value read from the reply is the expected one; the feedback names both."""
    if got is not None and str(got) == expected:
        return Verdict(1.0, f"Correct: {expected}.")
    if got is None:
        return Verdict(0.0, f"Wrong. Expected {expected}; the reply gives no {what}: \"{quote(reply)}\".")
    return Verdict(0.0, f"Wrong. Expected {expected}; the reply's last {what} is {got}: \"{quote(reply)}\".")


def verdict_by_options(expected: str, options: list[str], reply: str) -> Verdict:
    """Reward 1 when the reply names the expected option and no other; the feedback says which it named."""
    said = [option for option in options if named(option, reply)]
    if said == [expected]:
        return Verdict(1.0, f"Correct: {expected}.")
    if not said:
        why = f"it names none of {' and '.join(options)}"
    elif expected in said:
        why = f"it names {' and '.join(said)}: the answer must be {expected} alone"
    else:
        why = f"it names {' and '.join(said)}"
    return Verdict(0.0, f"Wrong. Expected {expected}; {why}: \"{quote(reply)}\".")


class ArithmeticTask:
    """Add or subtract two numbers of `digits` digits (`ops`: "+", "-" or both)."""

    name = "arithmetic"
    seed_prompt = SEED_PROMPT
    instruction = "Compute the result. Reply with only the number."

    def __init__(self, digits: int = 2, ops: str = "+-"):
        if not 1 <= digits <= 6:
            raise FastSlowError(f"task.args.digits: expected 1 to 6, got {digits}")
        if not ops or set(ops) - {"+", "-"}:
            raise FastSlowError(f"task.args.ops: expected '+', '-' or '+-', got {ops!r}")
        self.digits, self.ops = digits, ops

    def sample(self, rng: random.Random) -> Problem:
        low, high = (0 if self.digits == 1 else 10 ** (self.digits - 1)), 10**self.digits - 1
        a, b, op = rng.randint(low, high), rng.randint(low, high), rng.choice(self.ops)
        prompt = rng.choice(questions()["arithmetic"]).format(a=a, b=b, op=op)
        return Problem("", prompt, str(a + b if op == "+" else a - b))

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return make_problems(f"{self.name}/{self.digits}/{self.ops}", split, n, seed, self.sample)

    def score(self, problem: Problem, completion: str) -> Verdict:
        return verdict_by_value(problem.answer, last_number(completion), "number", completion)

    def answer_of(self, completion: str) -> str:
        return str(last_number(completion))


class CompareTask:
    """Which of two different numbers of `digits` digits is larger."""

    name = "compare"
    seed_prompt = SEED_PROMPT
    instruction = "Reply with only the larger of the two numbers."

    def __init__(self, digits: int = 2):
        if not 1 <= digits <= 6:
            raise FastSlowError(f"task.args.digits: expected 1 to 6, got {digits}")
        self.digits = digits

    def sample(self, rng: random.Random) -> Problem:
        low, high = (0 if self.digits == 1 else 10 ** (self.digits - 1)), 10**self.digits - 1
        a, b = rng.sample(range(low, high + 1), 2)
        prompt = rng.choice(questions()["compare"]).format(a=a, b=b)
        return Problem("", prompt, str(max(a, b)), {"options": [str(a), str(b)]})

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return make_problems(f"{self.name}/{self.digits}", split, n, seed, self.sample)

    def score(self, problem: Problem, completion: str) -> Verdict:
        return verdict_by_options(problem.answer, problem.info["options"], completion)

    def answer_of(self, completion: str) -> str:
        """The numbers the reply names (what the verifier reads against the two options)."""
        return " and ".join(map(str, sorted(set(numbers_in(completion)))))


class LetterTask:
    """Questions about an English noun (`question`: first, last or count: its first letter, last letter, length)."""

    name = "letters"
    seed_prompt = SEED_PROMPT
    INSTRUCTIONS = {"first": "Reply with only the first letter of the word.",
                    "last": "Reply with only the last letter of the word.",
                    "count": "Count the letters of the word one by one. Reply with only the number."}

    def __init__(self, question: str = "first"):
        if question not in self.INSTRUCTIONS:
            raise FastSlowError(f"task.args.question: expected one of {sorted(self.INSTRUCTIONS)}, got {question!r}")
        self.question = question
        self.instruction = self.INSTRUCTIONS[question]

    def sample(self, rng: random.Random) -> Problem:
        word = rng.choice(words())
        prompt = rng.choice(questions()["letters"][self.question]).format(word=word)
        answer = {"first": word[0], "last": word[-1], "count": str(len(word))}[self.question]
        return Problem("", prompt, answer, {"word": word})

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return make_problems(f"{self.name}/{self.question}", split, n, seed, self.sample)

    def score(self, problem: Problem, completion: str) -> Verdict:
        if self.question == "count":
            return verdict_by_value(problem.answer, last_number(completion), "number", completion)
        return verdict_by_value(problem.answer, last_letter(completion), "single letter", completion)

    def answer_of(self, completion: str) -> str:
        return str(last_number(completion) if self.question == "count" else last_letter(completion))


class SentimentTask:
    """A one-sentence review, labelled positive or negative; `ask`: the problem asks the question, else it is the
    review alone."""

    name = "sentiment"
    seed_prompt = SEED_PROMPT
    instruction = "Classify the review's sentiment. Reply with one word: positive or negative."
    LABELS = ["positive", "negative"]

    def __init__(self, ask: bool = True):
        self.ask = ask

    def sample(self, rng: random.Random) -> Problem:
        data, label = reviews(), rng.choice(self.LABELS)
        review = rng.choice(data["templates"]).format(subject=rng.choice(data["subjects"]),
                                                      phrase=rng.choice(data["phrases"][label]))
        template = rng.choice(questions()["sentiment"]["ask" if self.ask else "plain"])
        return Problem("", template.format(review=review), label)

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return make_problems(f"{self.name}/{'ask' if self.ask else 'plain'}", split, n, seed, self.sample)

    def score(self, problem: Problem, completion: str) -> Verdict:
        return verdict_by_options(problem.answer, self.LABELS, completion)

    def answer_of(self, completion: str) -> str:
        """The labels the reply names."""
        return " and ".join(label for label in self.LABELS if named(label, completion))
