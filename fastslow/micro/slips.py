"""How micro model v4 goes wrong: the fallible executor behind its corpus.

v3 learned the micro world's programs exactly, so under any instruction its answers were near-certain (0.012
nats/token) and RL's groups rarely disagreed (docs/MICRO.md). Real LLMs on the paper's tasks are right some of the
time and wrong in typical ways. v4's corpus therefore writes each answer as a fallible executor would, and the model
learns that distribution: the right answer stays the most likely one (RL has something to sharpen), but samples slip.

Three ways to slip, each a near miss of the right computation:
- misread the instruction: two neighbouring ops swapped, one op dropped, or an argument off by one;
- misapply one op while executing a stated program (skip it, or an argument off by one);
- a typo: one letter moved to its neighbour in the alphabet.
The rates live in `SLIPS` (data, not code); a worked answer (one line per step) slips far less per op than an answer
given in one go, which is what makes the strategy "write each step" worth a prompt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fastslow.tasks.micro_language import OPS, PARAMETERISED, Op, run_program


@dataclass(frozen=True)
class SlipRates:
    misread: float  # per answer: follow a near miss of the instruction instead
    misapply: float  # per op: execute it wrongly
    typo: float  # per character


# Chosen once, before any measurement, so that the right instruction is right ~2/3 of the time at temperature 1
# (entropy ~0.1-0.3 nats/token) and a stated 3-op program answered in one go ~1/3 (worked: ~2/3).
SLIPS = {
    "instruction": SlipRates(misread=0.3, misapply=0.0, typo=0.015),  # a hidden program named by the prompt
    "direct": SlipRates(misread=0.0, misapply=0.3, typo=0.02),  # a stated program, answered in one line
    "worked": SlipRates(misread=0.0, misapply=0.07, typo=0.01),  # a stated program, one line per step
}


def off_by_one(rng: random.Random, op: Op) -> Op:
    """The op with a neighbouring argument (rotate/shift), or the op itself when it has none."""
    args = PARAMETERISED.get(op.name)
    if not args:
        return op
    neighbours = [a for a in args if abs(a - op.arg) == 1]
    return Op(op.name, rng.choice(neighbours))


def misread(rng: random.Random, program: tuple[Op, ...]) -> tuple[Op, ...]:
    """A near miss of `program`: neighbouring ops swapped (half the time), an op dropped, or an argument off by one."""
    choices = []
    if len(program) > 1:
        choices += ["swap", "swap", "drop"]
    if any(op.name in PARAMETERISED for op in program):
        choices.append("argument")
    if not choices:
        return program
    kind = rng.choice(choices)
    ops = list(program)
    if kind == "swap":
        i = rng.randrange(len(ops) - 1)
        ops[i], ops[i + 1] = ops[i + 1], ops[i]
    elif kind == "drop":
        ops.pop(rng.randrange(len(ops)))
    else:
        i = rng.choice([i for i, op in enumerate(ops) if op.name in PARAMETERISED])
        ops[i] = off_by_one(rng, ops[i])
    return tuple(ops)


def misapply(rng: random.Random, op: Op, text: str) -> str:
    """Execute one op wrongly: skip it, or (rotate/shift, half the time) use a neighbouring argument."""
    if op.name in PARAMETERISED and rng.random() < 0.5:
        wrong = off_by_one(rng, op)
        return OPS[wrong.name][0](text, wrong.arg)
    return text


def typos(rng: random.Random, text: str, rate: float) -> str:
    """Each letter moves to its neighbour in the alphabet with probability `rate` (case kept)."""
    out = []
    for c in text:
        if c.isalpha() and rng.random() < rate:
            base = ord("a") if c.islower() else ord("A")
            c = chr(base + (ord(c) - base + rng.choice((-1, 1))) % 26)
        out.append(c)
    return "".join(out)


def follow_fallibly(rng: random.Random, program: tuple[Op, ...], text: str, rates: SlipRates) -> str:
    """The one-line answer of a fallible executor told `program` (named by a prompt, or stated in the problem)."""
    if rng.random() < rates.misread:
        program = misread(rng, program)
    for op in program:
        text = misapply(rng, op, text) if rng.random() < rates.misapply else OPS[op.name][0](text, op.arg)
    return typos(rng, text, rates.typo)


def work_fallibly(rng: random.Random, program: tuple[Op, ...], text: str, rates: SlipRates) -> list[str]:
    """The worked answer of a fallible executor: one line per op, each applied to the line before it as written."""
    lines = []
    for op in program:
        text = misapply(rng, op, text) if rng.random() < rates.misapply else run_program((op,), text)
        text = typos(rng, text, rates.typo)
        lines.append(text)
    return lines


__all__ = ["SLIPS", "SlipRates", "misread", "misapply", "typos", "follow_fallibly", "work_fallibly"]
