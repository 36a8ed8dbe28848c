"""The micro world: small verifiable task families for the embedded micro model (fastslow.micro).

- `strings`   (StringProgramTask): a hidden program of 1-3 string ops; problems are input strings.
- `cipher`    (CipherTask): a program plus a secret letter substitution that no instruction can express,
              so prompts plateau and only the weights can learn the rest.
- `stargraph` (StarGraphTask): path finding in a star graph; the seed prompt scores ~0, the right
              instruction makes the model do it (it works back from the goal, then writes the path).
- `counting`  (CountingTask): count letters of a kind; the answer is a number.
- `code`      (CodeTask): the problem states a program and an input (like CodeIO shows the code); the answer is
              the output. The prompt cannot name the task, only add strategy: working one step per line helps.

All share the task-agnostic seed prompt "Transform the text.". Rewards are binary exact match.
Problems are deterministic from (split, seed); splits never share an input (chosen by a hash of the prompt).
"""

from __future__ import annotations

import difflib
import random
import string

from fastslow.errors import FastSlowError
from fastslow.tasks.micro_language import (
    GENERIC_PROMPT,
    HELD_OUT_PROGRAMS,
    TRAIN_PROGRAMS,
    VOWELS,
    describe,
    held_out_program,
    input_length,
    parse_program,
    program_spec,
    random_word,
    run_program,
)
from fastslow.tasks.base import Problem, Verdict, split_of  # noqa: F401 (micro.corpus takes split_of from here)
from fastslow.tasks.base import make_problems as _make_problems

STARGRAPH_INSTRUCTION = "Find the path from the start to the goal."
STEP_STRATEGY = "Write the result of each step on its own line."  # the code family's strategy (micro model v4)
COUNT_RULES = ("letters", "vowels") + tuple(f"letter:{c}" for c in string.ascii_lowercase)


def text_feedback(answer: str, got: str) -> str:
    """What was expected and what went wrong, for a string answer."""
    got = got.strip()
    if got == answer:
        return "Correct."
    if not got:
        why = "The output is empty."
    elif len(got) != len(answer):
        why = f"The answer has {len(answer)} characters, the output {len(got)}."
    elif sorted(got) == sorted(answer):
        why = "Right letters, wrong order."
    else:
        first = next(i for i, (a, b) in enumerate(zip(answer, got)) if a != b)
        why = f"First wrong character at position {first + 1}."
    return f"Wrong. Expected '{answer}'. {why}"


class StringProgramTask:
    """One hidden program (given as `program`, or a held-out composition picked by `program_seed`)."""

    name = "strings"
    seed_prompt = GENERIC_PROMPT

    def __init__(self, program: str | None = None, program_seed: int = 0, partial_credit: bool = False):
        self.program = parse_program(program) if program else held_out_program(program_seed)
        self.partial_credit = partial_credit
        self.instruction = describe(self.program)  # the prompt that solves the task (not shown to the loop)

    def answer(self, text: str) -> str:
        return run_program(self.program, text)

    def sample(self, rng: random.Random) -> Problem:
        """One random problem (any split); the corpus uses this to build pretraining examples."""
        text = random_word(rng, *input_length(self.program))
        return Problem("", text, self.answer(text), {"program": program_spec(self.program)})

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return _make_problems(f"{self.name}/{program_spec(self.program)}", split, n, seed, self.sample)

    def score(self, problem: Problem, completion: str) -> Verdict:
        """1 for the exact answer. Otherwise 0, or with `partial_credit` half the character similarity
        (difflib's ratio), so that near misses rank above far ones: RL then gets a signal on tasks whose
        exact answer the base model never hits, and GEPA sees a prompt that gets one op of three right."""
        got = completion.strip()
        if got == problem.answer:
            reward = 1.0
        elif self.partial_credit:
            reward = 0.5 * difflib.SequenceMatcher(None, problem.answer, got).ratio()
        else:
            reward = 0.0
        return Verdict(reward, text_feedback(problem.answer, completion))


def substitution(seed: int, pairs: int) -> dict[str, str]:
    """A secret letter map swapping `pairs` random letter pairs (both cases)."""
    letters = random.Random(f"cipher/{seed}").sample(string.ascii_lowercase, 2 * pairs)
    table = {}
    for a, b in zip(letters[::2], letters[1::2]):
        table.update({a: b, b: a, a.upper(): b.upper(), b.upper(): a.upper()})
    return table


class CipherTask(StringProgramTask):
    """A program followed by a secret letter substitution: the best prompt is the program's instruction,
    which is right only on inputs whose answer avoids the swapped letters."""

    name = "cipher"

    def __init__(self, program: str = "reverse", substitution_seed: int = 0, pairs: int = 3,
                 partial_credit: bool = False):
        if not 1 <= pairs <= 13:
            raise FastSlowError(f"task.args.pairs: expected 1 to 13 swapped letter pairs, got {pairs}")
        super().__init__(program=program, partial_credit=partial_credit)
        self.substitution_seed, self.pairs = substitution_seed, pairs
        self.table = str.maketrans(substitution(substitution_seed, pairs))

    def answer(self, text: str) -> str:
        return run_program(self.program, text).translate(self.table)

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        name = f"{self.name}/{program_spec(self.program)}/{self.substitution_seed}/{self.pairs}"
        return _make_problems(name, split, n, seed, self.sample)


def star_graph(rng: random.Random, degree: int, arm_length: int) -> tuple[str, str]:
    """A star graph as 'edges\\nstart S goal G' (edges 'a>b', shuffled) and the path 'S>..>G'."""
    nodes = rng.sample(string.ascii_lowercase, 1 + degree * arm_length)
    center, arms = nodes[0], [nodes[1 + i * arm_length : 1 + (i + 1) * arm_length] for i in range(degree)]
    edges = [f"{a}>{b}" for arm in arms for a, b in zip([center] + arm, arm)]
    rng.shuffle(edges)
    goal_arm = rng.choice(arms)
    prompt = f"{' '.join(edges)}\nstart {center} goal {goal_arm[-1]}"
    return prompt, ">".join([center] + goal_arm)


def worked_path(path: str) -> str:
    """A worked answer: the chain back from the goal ('g<f<a', one edge lookup per step), then the path.

    Next-token training on forward paths alone cannot learn star graphs (the first step needs a look-ahead,
    Bachmann & Nagarajan 2024); walking back from the goal needs none. The task scores the last line."""
    return f"{path[::-1].replace('>', '<')}\n{path}"


class StarGraphTask:
    """Path finding from the centre of a star graph to the leaf of one arm. The answer is 'a>f>g'; the
    output's last line is scored, so a worked answer (see `worked_path`) counts."""

    name = "stargraph"
    seed_prompt = GENERIC_PROMPT
    instruction = STARGRAPH_INSTRUCTION

    def __init__(self, degree: int = 3, arm_length: int = 3):
        if not 2 <= degree <= 5 or not 1 <= arm_length <= 4:
            raise FastSlowError(f"task.args: expected degree in 2..5 and arm_length in 1..4, got {degree}, {arm_length}")
        self.degree, self.arm_length = degree, arm_length

    def sample(self, rng: random.Random) -> Problem:
        """One random problem (any split); the corpus uses this to build pretraining examples."""
        prompt, path = star_graph(rng, self.degree, self.arm_length)
        return Problem("", prompt, path)

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return _make_problems(f"{self.name}/{self.degree}/{self.arm_length}", split, n, seed, self.sample)

    def score(self, problem: Problem, completion: str) -> Verdict:
        got, path = (completion.strip().splitlines() or [""])[-1].strip(), problem.answer
        if got == path:
            return Verdict(1.0, "Correct.")
        start, goal = path[0], path[-1]
        if got == path[::-1]:
            why = "The output goes from the goal back to the start."
        elif not got.startswith(start):
            why = f"The path must begin at the start {start}."
        elif not got.endswith(goal):
            why = f"The path must end at the goal {goal}."
        else:
            why = "The path uses a wrong node."
        return Verdict(0.0, f"Wrong. Expected the path '{path}' from {start} to {goal}. {why}")


def count(rule: str, text: str) -> int:
    if rule == "letters":
        return len(text)
    if rule == "vowels":
        return sum(c in VOWELS for c in text)
    return text.count(rule.split(":")[1])


def count_instruction(rule: str) -> str:
    return "Count the letters." if rule == "letters" else ("Count the vowels." if rule == "vowels" else f"Count the letter {rule[-1]}.")


def counting_word(rng: random.Random, rule: str) -> str:
    """A word for a counting rule; for 'letter:x' the letter is mixed in 0-3 times so counts vary."""
    chars = list(random_word(rng, 3, 9))
    if rule.startswith("letter:"):
        for _ in range(rng.randint(0, 3)):
            chars.insert(rng.randint(0, len(chars)), rule[-1])
    return "".join(chars)


class CountingTask:
    """Count the letters, the vowels or one letter of a word (`rule`: 'letters', 'vowels', 'letter:x')."""

    name = "counting"
    seed_prompt = GENERIC_PROMPT

    def __init__(self, rule: str = "vowels"):
        if rule not in COUNT_RULES:
            raise FastSlowError(f"task.args.rule: expected 'letters', 'vowels' or 'letter:<a-z>', got {rule!r}")
        self.rule = rule
        self.instruction = count_instruction(rule)

    def sample(self, rng: random.Random) -> Problem:
        """One random problem (any split); the corpus uses this to build pretraining examples."""
        word = counting_word(rng, self.rule)
        return Problem("", word, str(count(self.rule, word)), {"rule": self.rule})

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return _make_problems(f"{self.name}/{self.rule}", split, n, seed, self.sample)

    def score(self, problem: Problem, completion: str) -> Verdict:
        got = completion.strip()
        if got == problem.answer:
            return Verdict(1.0, "Correct.")
        why = f"got {got}." if got.isdigit() else "the output is not a number."
        return Verdict(0.0, f"Wrong. Expected {problem.answer}, {why}")


def last_line(completion: str) -> str:
    return (completion.strip().splitlines() or [""])[-1].strip()


class CodeTask:
    """Each problem states a program of `ops` ops and an input, `program reverse,shift:2\ninput hello`; the answer is
    the output ('jgnnq'). Programs come from the held-out compositions (never in pretraining) or the pretraining ones
    (`programs`). The last line of the output is scored, so a worked answer (one line per step) counts."""

    name = "code"
    seed_prompt = GENERIC_PROMPT
    instruction = STEP_STRATEGY  # the best prompt there is: the task is in the problem, the prompt adds strategy

    def __init__(self, ops: int = 3, programs: str = "held_out"):
        if ops not in (1, 2, 3):
            raise FastSlowError(f"task.args.ops: expected 1, 2 or 3 ops per program, got {ops}")
        pool = {"held_out": HELD_OUT_PROGRAMS, "train": TRAIN_PROGRAMS}.get(programs)
        if pool is None:
            raise FastSlowError(f"task.args.programs: expected 'held_out' or 'train', got {programs!r}")
        self.ops, self.programs = ops, programs
        self.pool = [p for p in pool if len(p) == ops]
        if not self.pool:
            raise FastSlowError(f"task.args: no {programs} programs of {ops} op(s) (held-out programs have 2-3 ops)")

    def sample(self, rng: random.Random) -> Problem:
        """One random problem (any split); the corpus uses this to build pretraining examples."""
        program = rng.choice(self.pool)
        text = random_word(rng, *input_length(program))
        return Problem("", code_prompt(program, text), run_program(program, text), {"program": program_spec(program)})

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return _make_problems(f"{self.name}/{self.ops}/{self.programs}", split, n, seed, self.sample)

    def score(self, problem: Problem, completion: str) -> Verdict:
        got = last_line(completion)
        if got == problem.answer:
            return Verdict(1.0, "Correct.")
        steps = [line.strip() for line in completion.strip().splitlines()]
        program = parse_program(problem.info["program"])
        if len(steps) == len(program) > 1:  # a worked answer: name the first wrong step
            text = code_input(problem.prompt)
            for i, op in enumerate(program):
                text = run_program((op,), text)
                if steps[i] != text:
                    return Verdict(0.0, f"Wrong. Expected '{problem.answer}'. Step {i + 1} ({op.spec}) should give "
                                        f"'{text}', the output has '{steps[i]}'.")
        return Verdict(0.0, text_feedback(problem.answer, got))


def code_prompt(program: tuple, text: str) -> str:
    return f"program {program_spec(program)}\ninput {text}"


def code_input(prompt: str) -> str:
    return prompt.rsplit("\ninput ", 1)[1]


def worked_steps(program: tuple, text: str) -> str:
    """The exact worked answer of a stated program: one line per op."""
    return "\n".join(run_program(program[: i + 1], text) for i in range(len(program)))
