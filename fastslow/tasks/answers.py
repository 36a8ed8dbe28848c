"""Final-answer extraction shared by the tasks.

A completion may carry a reasoning block (`<think>...</think>`, Qwen3's thinking mode), then an answer given
as `\\boxed{...}`, as an "Answer: ..." line, or just as its last line. These helpers find that answer.
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_ANSWER_LINE = re.compile(r"^\s*(?:\*\*)?(?:final\s+)?answer(?:\*\*)?\s*[:：]\s*(.*)$", re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def strip_thinking(text: str) -> str:
    """The completion without its reasoning: text after the last `</think>`; "" if thinking never ended."""
    if THINK_CLOSE in text:  # the opening tag may be part of the prompt (thinking-only chat templates)
        return text.rsplit(THINK_CLOSE, 1)[1]
    if THINK_OPEN in text:  # cut off while thinking: no answer was given
        return text.split(THINK_OPEN, 1)[0]
    return text


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (nested braces allowed), or None."""
    found = None
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found = text[start:i]
                break
    return found


def normalize(text: str) -> str:
    """Collapse whitespace; drop markdown emphasis/code quotes around the answer and one trailing period."""
    text = " ".join(text.split())
    if len(text) > 1 and text.endswith(".") and not text.endswith(".."):
        text = text[:-1].rstrip()
    for wrapper in ("**", "`", "$"):
        if len(text) > 2 * len(wrapper) and text.startswith(wrapper) and text.endswith(wrapper):
            text = text[len(wrapper) : -len(wrapper)].strip()
    return text


def extract_answer(completion: str) -> str:
    """The final answer: the last `\\boxed{}`, else the last "Answer: ..." line, else the last non-empty line.

    Thinking blocks are removed first; returns "" when there is no answer.
    """
    text = strip_thinking(completion)
    boxed = last_boxed(text)
    if boxed is not None:
        return normalize(boxed)
    lines = [line for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        match = _ANSWER_LINE.match(line)
        if match and match.group(1).strip():
            return normalize(match.group(1))
    return normalize(lines[-1]) if lines else ""
