"""The micro world's instruction language: string programs and the words that describe them.

A program is a short sequence of ops on a lowercase string (reverse, sort, rotate, shift, ...). Every op
has one canonical English phrase; a program's instruction is its phrases joined by ", then ". The micro
model learns to follow these instructions and to write them (reflection), so prompts are real fast weights.

Programs are written as specs: "reverse,shift:2" (op names, ":arg" for parameterised ops).
"""

from __future__ import annotations

import itertools
import random
import string
import zlib
from typing import NamedTuple

from fastslow.errors import FastSlowError

VOWELS = set("aeiouAEIOU")
GENERIC_PROMPT = "Transform the text."  # the task-agnostic seed prompt of every micro family
# Other prompts that say nothing about the program: the model answers them with its base behaviour.
GENERIC_PROMPTS = (GENERIC_PROMPT, "Solve the task.", "Answer.", "You are a helpful assistant.", "Do it.")


class Op(NamedTuple):
    name: str
    arg: int = 0

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.arg}" if self.name in PARAMETERISED else self.name


def _shift(text: str, k: int) -> str:
    def one(c: str) -> str:
        base = ord("a") if c.islower() else ord("A")
        return chr(base + (ord(c) - base + k) % 26) if c.isalpha() else c

    return "".join(one(c) for c in text)


def _swap_pairs(text: str) -> str:
    chars = list(text)
    for i in range(0, len(chars) - 1, 2):
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


# name -> (function(text, arg), phrase(arg))
OPS = {
    "reverse": (lambda s, k: s[::-1], lambda k: "reverse the letters"),
    "sort": (lambda s, k: "".join(sorted(s)), lambda k: "sort the letters"),
    "rotate": (lambda s, k: s[k:] + s[:k], lambda k: "move the first letter to the end" if k == 1 else f"move the first {k} letters to the end"),
    "shift": (_shift, lambda k: f"shift each letter forward by {k}"),
    "double": (lambda s, k: "".join(c + c for c in s), lambda k: "double each letter"),
    "swap": (lambda s, k: _swap_pairs(s), lambda k: "swap each pair of letters"),
    "upper": (lambda s, k: s.upper(), lambda k: "write in capitals"),
    "novowels": (lambda s, k: "".join(c for c in s if c not in VOWELS), lambda k: "remove the vowels"),
    "alternate": (lambda s, k: s[::2], lambda k: "keep every other letter"),
}
PARAMETERISED = {"rotate": (1, 2, 3), "shift": (1, 2, 3)}
ALL_OPS = tuple(
    Op(name, arg) for name in OPS for arg in (PARAMETERISED.get(name) or (0,))
)  # 13 ops


def parse_program(spec: str) -> tuple[Op, ...]:
    """'reverse,shift:2' -> (Op('reverse'), Op('shift', 2))."""
    ops = []
    for part in spec.split(","):
        name, _, arg = part.strip().partition(":")
        if name not in OPS:
            raise FastSlowError(f"task.args.program: unknown op {name!r} in {spec!r}; expected ops from {sorted(OPS)}")
        if name in PARAMETERISED:
            if not arg.isdigit() or int(arg) not in PARAMETERISED[name]:
                raise FastSlowError(f"task.args.program: {name} needs an argument in {PARAMETERISED[name]}, e.g. '{name}:1'")
            ops.append(Op(name, int(arg)))
        elif arg:
            raise FastSlowError(f"task.args.program: {name} takes no argument (got {part!r})")
        else:
            ops.append(Op(name))
    if not 1 <= len(ops) <= 3:
        raise FastSlowError(f"task.args.program: expected 1 to 3 ops, got {len(ops)} in {spec!r}")
    return tuple(ops)


def program_spec(program: tuple[Op, ...]) -> str:
    return ",".join(op.spec for op in program)


def run_program(program: tuple[Op, ...], text: str) -> str:
    for op in program:
        text = OPS[op.name][0](text, op.arg)
    return text


def describe(program: tuple[Op, ...]) -> str:
    """The canonical instruction for a program, e.g. 'Reverse the letters, then shift each letter forward by 2.'"""
    sentence = ", then ".join(OPS[op.name][1](op.arg) for op in program)
    return sentence[0].upper() + sentence[1:] + "."


def _valid(program: tuple[Op, ...]) -> bool:
    names = [op.name for op in program]
    return len(set(names)) == len(names)  # each op kind at most once: no 'shift, then shift'


def all_programs() -> list[tuple[Op, ...]]:
    """Every program of 1-3 ops with distinct op kinds, in a fixed order."""
    return [p for n in (1, 2, 3) for p in itertools.product(ALL_OPS, repeat=n) if _valid(p)]


def is_held_out(program: tuple[Op, ...]) -> bool:
    """About 1 in 8 compositions of 2-3 ops never appear in pretraining; single ops always do."""
    return len(program) > 1 and zlib.crc32(program_spec(program).encode()) % 8 == 0


_PROGRAMS = all_programs()
TRAIN_PROGRAMS = [p for p in _PROGRAMS if not is_held_out(p)]
HELD_OUT_PROGRAMS = [p for p in _PROGRAMS if is_held_out(p)]
_BY_INSTRUCTION = {describe(p): p for p in _PROGRAMS}


def program_of(instruction: str) -> tuple[Op, ...] | None:
    """The program an instruction names, if it is one of the language's instructions (surrounding whitespace
    ignored), else None."""
    return _BY_INSTRUCTION.get(instruction.strip())


def held_out_program(program_seed: int) -> tuple[Op, ...]:
    """A held-out composition picked by a seed (the same seed gives the same program)."""
    return random.Random(program_seed).choice(HELD_OUT_PROGRAMS)


def random_program(rng: random.Random, lengths=(1, 2, 3), weights=(0.25, 0.4, 0.35)) -> tuple[Op, ...]:
    """A pretraining program: never a held-out composition."""
    while True:
        n = rng.choices(lengths, weights)[0]
        program = tuple(rng.sample(ALL_OPS, n))
        if _valid(program) and not is_held_out(program):
            return program


def random_word(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(low, high)))


def input_length(program: tuple[Op, ...]) -> tuple[int, int]:
    """Input lengths for a program: shorter when letters get doubled, so answers stay short."""
    return (3, 6) if any(op.name == "double" for op in program) else (4, 8)
