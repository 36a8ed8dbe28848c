"""CodeIO: predict what a Python function returns (or, optionally, find an input giving a known output).

Problems come from either
- a generator (offline, the default): several dozen small, meaningful function templates with random
  constants and inputs, deterministic from the seed; the expected output is computed by running the function
  in the sandbox; or
- CodeI/O-style data (`path`), a JSONL/JSON/CSV/parquet file or a Hugging Face dataset, in one of two layouts:
    raw CodeI/O (PyEdu-R): {"refcode", "funcname", "ios": [{"input": {...}, "output": ...}],
                            "problem_description"?, "io_requirements"?}  -> one problem per io pair
    flat:                  {"code" (or "refcode"), "funcname"?, "input", "output", "id"?, "problem_description"?}
  `input` holds the keyword arguments as an object (or a JSON string of one); `output` is the returned value
  (a string holding JSON is decoded once). `funcname` defaults to `main_solution` if the code defines it,
  else to the code's last top-level function.

Verification: in "output" mode the predicted value is parsed (JSON, else a Python literal) and compared with
the expected one (tuples equal lists, dict keys compared as text, floats to 1e-6); no code runs. In "input"
mode the function is run on the predicted arguments, in the sandbox only, and its result compared the same way.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import random
import re
import textwrap
from collections.abc import Callable
from typing import Any

from fastslow.errors import FastSlowError
from fastslow.tasks.answers import extract_answer
from fastslow.tasks.base import SPLITS, Problem, Verdict
from fastslow.tasks.loading import ProblemSet, assign_splits, content_id, load_records
from fastslow.tasks.sandbox import Limits, run_python

OUTPUT_PROMPT = (
    "You predict what Python code returns, without running it. Trace the execution step by step, "
    "then give the exact returned value as a Python literal on the last line, as 'Answer: <value>'."
)
INPUT_PROMPT = (
    "You find an input for which a Python function returns a given output. Reason about the code step by "
    "step, then give the arguments as a JSON object mapping parameter names to values, on the last line, "
    "as 'Answer: <object>'."
)
MAX_PREDICTION_CHARS = 20_000  # longer predictions are not parsed
MAX_OUTPUT_CHARS = 300  # generated problems with longer outputs are skipped
UNPARSED = object()

# --------------------------------------------------------------------------- value comparison


def parse_value(text: str) -> Any:
    """A predicted value: JSON, else a Python literal; UNPARSED when it is neither."""
    text = text.strip()
    if not text or len(text) > MAX_PREDICTION_CHARS:
        return UNPARSED
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return UNPARSED


def same_value(a: Any, b: Any) -> bool:
    """Equal up to representation: tuples = lists, sets = sorted lists, dict keys as text, floats to 1e-6."""
    a, b = _canonical(a), _canonical(b)
    return _equal(a, b)


def _canonical(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_canonical(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted((_canonical(x) for x in v), key=repr)
    if isinstance(v, dict):
        return {k if isinstance(k, str) else repr(k): _canonical(x) for k, x in v.items()}
    return v


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) or (a != a and b != b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _unwrap(value: Any, key: str) -> Any:
    # CodeI/O's own answer format is {"output": value} / {"input": {...}}.
    return value[key] if isinstance(value, dict) and list(value) == [key] else value


def format_call(funcname: str, kwargs: dict[str, Any]) -> str:
    return f"{funcname}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


# --------------------------------------------------------------------------- running code in the sandbox

# Runs one function on given arguments; prints only repr(result) (the program's own prints are swallowed).
CALL_PROGRAM = """
import ast, contextlib, io
source, funcname, arguments = {source!r}, {funcname!r}, {arguments!r}
namespace = {{"__name__": "program"}}
with contextlib.redirect_stdout(io.StringIO()):
    exec(compile(source, "program.py", "exec"), namespace)
    args = ast.literal_eval(arguments)
    result = namespace[funcname](**args) if isinstance(args, dict) else namespace[funcname](*args)
print(repr(result))
"""

# Runs many (source, kwargs) cases in one process: one JSON line per case, null when the case failed.
BATCH_PROGRAM = """
import contextlib, io, json, sys
for case in json.loads(sys.stdin.read()):
    namespace = {"__name__": "program"}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(case["source"], namespace)
            result = repr(namespace[case["funcname"]](**case["kwargs"]))
    except Exception:
        result = None
    print(json.dumps(result))
"""


def run_call(source: str, funcname: str, kwargs: Any, limits: Limits) -> tuple[Any, str]:
    """(returned value, "") from running `funcname(**kwargs)` in the sandbox, or (UNPARSED, what went wrong)."""
    program = CALL_PROGRAM.format(source=source, funcname=funcname, arguments=repr(kwargs))
    result = run_python(program, limits=limits)
    if not result.ok:
        return UNPARSED, result.error or "the program failed"
    lines = result.stdout.strip().splitlines()
    value = parse_value(lines[-1]) if lines else UNPARSED
    return value, "" if value is not UNPARSED else "its result could not be read back"


# --------------------------------------------------------------------------- the generator's templates

Template = Callable[[random.Random], tuple[str, dict[str, Any]]]
TEMPLATES: list[Template] = []
WORDS = (
    "apple banana cherry delta echo falcon garden harbor island jungle kettle lemon mango nectar orbit "
    "pepper quartz river stone tiger umbra velvet willow xenon yellow zebra level radar civic noon "
    "listen silent enlist stone tones notes night thing"
).split()


def template(fn: Template) -> Template:
    TEMPLATES.append(fn)
    return fn


def fill(code: str, **constants: Any) -> str:
    """The code with each UPPERCASE placeholder replaced by its value's repr."""
    code = textwrap.dedent(code).strip() + "\n"
    for name, value in constants.items():
        code = re.sub(rf"\b{name}\b", lambda _: repr(value), code)
    return code


def ints(rng: random.Random, lo: int, hi: int, n_lo: int, n_hi: int) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(n_lo, n_hi))]


def words(rng: random.Random, n_lo: int, n_hi: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(n_lo, n_hi))]


@template
def running_total_with_reset(rng):
    code = """
    def f(xs):
        total, resets = 0, 0
        for x in xs:
            total += x
            if total > LIMIT:
                total = 0
                resets += 1
        return total, resets
    """
    return fill(code, LIMIT=rng.randint(5, 20)), {"xs": ints(rng, 1, 9, 4, 9)}


@template
def collatz_steps(rng):
    code = """
    def f(n):
        steps = 0
        while n != 1:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            steps += 1
        return steps
    """
    return fill(code), {"n": rng.randint(2, 60)}


@template
def caesar_shift(rng):
    code = """
    def f(text):
        out = []
        for ch in text:
            if ch.isalpha():
                out.append(chr((ord(ch) - ord("a") + SHIFT) % 26 + ord("a")))
            else:
                out.append(ch)
        return "".join(out)
    """
    return fill(code, SHIFT=rng.randint(1, 25)), {"text": " ".join(words(rng, 1, 3))}


@template
def run_length_encode(rng):
    code = """
    def f(s):
        out = ""
        i = 0
        while i < len(s):
            j = i
            while j < len(s) and s[j] == s[i]:
                j += 1
            out += s[i] + str(j - i)
            i = j
        return out
    """
    s = "".join(rng.choice("ab") * rng.randint(1, 4) for _ in range(rng.randint(2, 5)))
    return fill(code), {"s": s}


@template
def vowels_per_word(rng):
    code = """
    def f(words):
        counts = {}
        for w in words:
            counts[w] = sum(1 for c in w if c in "aeiou")
        return counts
    """
    return fill(code), {"words": words(rng, 2, 4)}


@template
def fizzbuzz_variant(rng):
    code = """
    def f(n):
        out = []
        for i in range(1, n + 1):
            s = ""
            if i % FIZZ == 0:
                s += "Fizz"
            if i % BUZZ == 0:
                s += "Buzz"
            out.append(s or str(i))
        return out
    """
    a = rng.randint(2, 4)
    return fill(code, FIZZ=a, BUZZ=rng.randint(a + 1, 7)), {"n": rng.randint(5, 12)}


@template
def digital_root_in_base(rng):
    code = """
    def f(n):
        while n >= BASE:
            total = 0
            while n:
                total += n % BASE
                n //= BASE
            n = total
        return n
    """
    return fill(code, BASE=rng.choice([2, 3, 5, 8, 10])), {"n": rng.randint(10, 5000)}


@template
def transpose(rng):
    code = """
    def f(matrix):
        return [[row[i] for row in matrix] for i in range(len(matrix[0]))]
    """
    rows, cols = rng.randint(2, 3), rng.randint(2, 4)
    return fill(code), {"matrix": [[rng.randint(0, 9) for _ in range(cols)] for _ in range(rows)]}


@template
def bubble_sort_swaps(rng):
    code = """
    def f(xs):
        xs = list(xs)
        swaps = 0
        for i in range(len(xs)):
            for j in range(len(xs) - 1 - i):
                if xs[j] > xs[j + 1]:
                    xs[j], xs[j + 1] = xs[j + 1], xs[j]
                    swaps += 1
        return xs, swaps
    """
    return fill(code), {"xs": ints(rng, 0, 20, 3, 6)}


@template
def binary_search_steps(rng):
    code = """
    def f(xs, target):
        lo, hi, steps = 0, len(xs) - 1, 0
        while lo <= hi:
            steps += 1
            mid = (lo + hi) // 2
            if xs[mid] == target:
                return mid, steps
            if xs[mid] < target:
                lo = mid + 1
            else:
                hi = mid - 1
        return -1, steps
    """
    xs = sorted(set(ints(rng, 0, 40, 5, 12)))
    target = rng.choice(xs) if rng.random() < 0.7 else rng.randint(0, 40)
    return fill(code), {"xs": xs, "target": target}


@template
def gcd_of_list(rng):
    code = """
    def f(xs):
        g = 0
        for x in xs:
            a, b = g, x
            while b:
                a, b = b, a % b
            g = a
        return g
    """
    k = rng.randint(2, 6)
    return fill(code), {"xs": [k * rng.randint(1, 12) for _ in range(rng.randint(2, 4))]}


@template
def count_primes(rng):
    code = """
    def f(n):
        sieve = [True] * (n + 1)
        sieve[0:2] = [False, False]
        for i in range(2, int(n ** 0.5) + 1):
            if sieve[i]:
                for j in range(i * i, n + 1, i):
                    sieve[j] = False
        return sum(sieve)
    """
    return fill(code), {"n": rng.randint(10, 120)}


@template
def fibonacci_mod(rng):
    code = """
    def f(n):
        a, b = 0, 1
        for _ in range(n):
            a, b = b, (a + b) % MOD
        return a
    """
    return fill(code, MOD=rng.choice([7, 10, 13, 100])), {"n": rng.randint(5, 30)}


@template
def keep_palindromes(rng):
    code = """
    def f(words):
        return [w for w in words if w == w[::-1] and len(w) > MIN_LEN]
    """
    return fill(code, MIN_LEN=rng.randint(1, 4)), {"words": words(rng, 3, 6)}


@template
def words_by_length(rng):
    code = """
    def f(words):
        groups = {}
        for w in words:
            groups.setdefault(len(w), []).append(w)
        return groups
    """
    return fill(code), {"words": words(rng, 3, 5)}


@template
def bracket_depth(rng):
    code = """
    def f(s):
        depth = best = 0
        for ch in s:
            if ch == "(":
                depth += 1
                best = max(best, depth)
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    return -1
        return best if depth == 0 else -1
    """
    chars, left, depth = [], rng.randint(2, 5), 0
    while left or depth:  # a random balanced string ...
        opening = left and (depth == 0 or rng.random() < 0.5)
        chars.append("(" if opening else ")")
        left, depth = (left - 1, depth + 1) if opening else (left, depth - 1)
    if rng.random() < 0.3:  # ... sometimes broken
        chars[rng.randrange(len(chars))] = rng.choice("()")
    return fill(code), {"s": "".join(chars)}


@template
def merge_intervals(rng):
    code = """
    def f(intervals):
        merged = []
        for start, end in sorted(intervals):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return merged
    """
    intervals = []
    for _ in range(rng.randint(2, 5)):
        a = rng.randint(0, 15)
        intervals.append([a, a + rng.randint(1, 5)])
    return fill(code), {"intervals": intervals}


@template
def two_sum(rng):
    code = """
    def f(xs, target):
        seen = {}
        for i, x in enumerate(xs):
            if target - x in seen:
                return [seen[target - x], i]
            seen[x] = i
        return []
    """
    xs = ints(rng, 1, 15, 4, 7)
    target = rng.choice(xs) + rng.choice(xs) if rng.random() < 0.8 else 40
    return fill(code), {"xs": xs, "target": target}


@template
def longest_increasing_run(rng):
    code = """
    def f(xs):
        best = cur = 1
        for a, b in zip(xs, xs[1:]):
            cur = cur + 1 if b > a else 1
            best = max(best, cur)
        return best
    """
    return fill(code), {"xs": ints(rng, 0, 9, 4, 10)}


@template
def edit_distance(rng):
    code = """
    def f(a, b):
        prev = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            cur = [i]
            for j, cb in enumerate(b, 1):
                cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
            prev = cur
        return prev[-1]
    """
    return fill(code), {"a": rng.choice(WORDS), "b": rng.choice(WORDS)}


@template
def dedupe_keep_order(rng):
    code = """
    def f(xs):
        seen, out = set(), []
        for x in xs:
            if x % MOD not in seen:
                seen.add(x % MOD)
                out.append(x)
        return out
    """
    return fill(code, MOD=rng.randint(3, 6)), {"xs": ints(rng, 0, 20, 4, 8)}


@template
def rotate_list(rng):
    code = """
    def f(xs, k):
        if not xs:
            return xs
        k %= len(xs)
        return xs[-k:] + xs[:-k]
    """
    return fill(code), {"xs": ints(rng, 0, 9, 3, 7), "k": rng.randint(-3, 9)}


@template
def sliding_window_max(rng):
    code = """
    def f(xs):
        return [max(xs[i:i + WIDTH]) for i in range(len(xs) - WIDTH + 1)]
    """
    return fill(code, WIDTH=rng.randint(2, 3)), {"xs": ints(rng, 0, 20, 4, 7)}


@template
def pascal_row(rng):
    code = """
    def f(n):
        row = [1]
        for _ in range(n):
            row = [a + b for a, b in zip([0] + row, row + [0])]
        return row
    """
    return fill(code), {"n": rng.randint(2, 8)}


@template
def to_base(rng):
    code = """
    def f(n):
        digits = "0123456789ABCDEF"
        if n == 0:
            return "0"
        out = ""
        while n:
            out = digits[n % BASE] + out
            n //= BASE
        return out
    """
    return fill(code, BASE=rng.choice([2, 3, 5, 7, 8, 16])), {"n": rng.randint(0, 500)}


@template
def roman_numeral(rng):
    code = """
    def f(n):
        table = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
                 (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
        out = ""
        for value, symbol in table:
            while n >= value:
                out += symbol
                n -= value
        return out
    """
    return fill(code), {"n": rng.randint(1, 3000)}


@template
def flatten_nested(rng):
    code = """
    def f(nested):
        out = []
        for item in nested:
            if isinstance(item, list):
                out.extend(f(item))
            else:
                out.append(item)
        return out
    """

    def nest(depth):
        size = rng.randint(1, 3)
        return [nest(depth - 1) if depth and rng.random() < 0.4 else rng.randint(0, 9) for _ in range(size)]

    return fill(code), {"nested": nest(3)}


@template
def group_by_remainder(rng):
    code = """
    def f(xs):
        groups = {}
        for x in xs:
            groups.setdefault(x % MOD, []).append(x)
        return {k: sum(v) for k, v in sorted(groups.items())}
    """
    return fill(code, MOD=rng.randint(2, 5)), {"xs": ints(rng, 0, 30, 4, 8)}


@template
def stack_machine(rng):
    code = """
    def f(program):
        stack = []
        for op in program.split():
            if op == "+":
                stack.append(stack.pop() + stack.pop())
            elif op == "*":
                stack.append(stack.pop() * stack.pop())
            elif op == "dup":
                stack.append(stack[-1])
            elif op == "swap":
                stack[-1], stack[-2] = stack[-2], stack[-1]
            elif op == "-":
                b, a = stack.pop(), stack.pop()
                stack.append(a - b)
            else:
                stack.append(int(op))
        return stack
    """
    ops, depth = [], 0
    for _ in range(rng.randint(4, 9)):
        choices = ["num"] + (["dup"] if depth >= 1 else []) + (["+", "*", "-", "swap"] if depth >= 2 else [])
        op = rng.choice(choices)
        if op == "num":
            ops.append(str(rng.randint(1, 9)))
            depth += 1
        else:
            ops.append(op)
            depth += {"dup": 1, "swap": 0}.get(op, -1)
    return fill(code), {"program": " ".join(ops)}


@template
def range_sum_queries(rng):
    code = """
    def f(xs, queries):
        prefix = [0]
        for x in xs:
            prefix.append(prefix[-1] + x)
        return [prefix[r + 1] - prefix[l] for l, r in queries]
    """
    xs = ints(rng, -5, 9, 5, 8)
    queries = []
    for _ in range(rng.randint(1, 3)):
        left = rng.randint(0, len(xs) - 1)
        queries.append([left, rng.randint(left, len(xs) - 1)])
    return fill(code), {"xs": xs, "queries": queries}


@template
def invert_mapping(rng):
    code = """
    def f(d):
        out = {}
        for key, value in d.items():
            out.setdefault(value, []).append(key)
        return out
    """
    keys = rng.sample(WORDS[:26], rng.randint(3, 5))
    return fill(code), {"d": {k: rng.randint(1, 3) for k in keys}}


@template
def popcounts(rng):
    code = """
    def f(xs):
        return [bin(x).count("1") for x in xs if x % 2 == PARITY]
    """
    return fill(code, PARITY=rng.randint(0, 1)), {"xs": ints(rng, 0, 64, 4, 7)}


@template
def best_profit(rng):
    code = """
    def f(prices):
        best, low = 0, prices[0]
        for p in prices[1:]:
            best = max(best, p - low)
            low = min(low, p)
        return best
    """
    return fill(code), {"prices": ints(rng, 1, 20, 4, 8)}


@template
def grid_paths(rng):
    code = """
    def f(rows, cols, blocked):
        ways = [[0] * cols for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                if [r, c] in blocked:
                    continue
                if r == 0 and c == 0:
                    ways[r][c] = 1
                else:
                    ways[r][c] = (ways[r - 1][c] if r else 0) + (ways[r][c - 1] if c else 0)
        return ways[-1][-1]
    """
    rows, cols = rng.randint(2, 4), rng.randint(2, 4)
    blocked = [[rng.randint(0, rows - 1), rng.randint(0, cols - 1)] for _ in range(rng.randint(0, 2))]
    blocked = [b for b in blocked if b not in ([0, 0], [rows - 1, cols - 1])]
    return fill(code), {"rows": rows, "cols": cols, "blocked": blocked}


@template
def anagram_groups(rng):
    code = """
    def f(words):
        groups = {}
        for w in words:
            groups.setdefault("".join(sorted(w)), []).append(w)
        return [g for g in groups.values() if len(g) > 1]
    """
    pool = ["listen", "silent", "enlist", "stone", "tones", "notes", "night", "thing", "apple", "radar"]
    return fill(code), {"words": rng.sample(pool, rng.randint(4, 7))}


@template
def reverse_long_words(rng):
    code = """
    def f(sentence):
        return " ".join(w[::-1] if len(w) > MIN_LEN else w.upper() for w in sentence.split())
    """
    return fill(code, MIN_LEN=rng.randint(3, 5)), {"sentence": " ".join(words(rng, 2, 4))}


@template
def count_inversions(rng):
    code = """
    def f(xs):
        count = 0
        for i in range(len(xs)):
            for j in range(i + 1, len(xs)):
                if xs[i] > xs[j]:
                    count += 1
        return count
    """
    return fill(code), {"xs": ints(rng, 0, 9, 4, 7)}


@template
def knapsack(rng):
    code = """
    def f(weights, values, capacity):
        best = [0] * (capacity + 1)
        for w, v in zip(weights, values):
            for c in range(capacity, w - 1, -1):
                best[c] = max(best[c], best[c - w] + v)
        return best[capacity]
    """
    n = rng.randint(2, 4)
    return fill(code), {
        "weights": [rng.randint(1, 6) for _ in range(n)],
        "values": [rng.randint(1, 10) for _ in range(n)],
        "capacity": rng.randint(4, 10),
    }


@template
def spiral_order(rng):
    code = """
    def f(matrix):
        out = []
        while matrix:
            out += matrix.pop(0)
            matrix = [list(row) for row in zip(*matrix)][::-1]
        return out
    """
    rows, cols = rng.randint(2, 3), rng.randint(2, 3)
    return fill(code), {"matrix": [[rng.randint(0, 9) for _ in range(cols)] for _ in range(rows)]}


@template
def histogram_bars(rng):
    code = """
    def f(counts):
        return [SYMBOL * c + "." * (MAX - c) for c in counts]
    """
    top = rng.randint(3, 5)
    return fill(code, SYMBOL=rng.choice("*#="), MAX=top), {"counts": ints(rng, 0, top, 2, 4)}


@template
def interleave_strings(rng):
    code = """
    def f(a, b):
        out = []
        for i in range(max(len(a), len(b))):
            if i < len(a):
                out.append(a[i])
            if i < len(b):
                out.append(b[i])
        return "".join(out)
    """
    return fill(code), {"a": rng.choice(WORDS)[:5], "b": rng.choice(WORDS)[:4]}


@template
def second_largest(rng):
    code = """
    def f(xs):
        distinct = sorted(set(xs), reverse=True)
        return distinct[1] if len(distinct) > 1 else None
    """
    return fill(code), {"xs": ints(rng, 0, 9, 2, 7)}


@template
def bank_account(rng):
    code = """
    def f(operations):
        balance, rejected = START, 0
        for kind, amount in operations:
            if kind == "deposit":
                balance += amount
            elif amount <= balance:
                balance -= amount
            else:
                rejected += 1
        return balance, rejected
    """
    ops = [[rng.choice(["deposit", "withdraw"]), rng.randint(5, 50)] for _ in range(rng.randint(3, 6))]
    return fill(code, START=rng.randint(0, 40)), {"operations": ops}


@template
def shift_by_position(rng):
    code = """
    def f(word):
        return "".join(chr((ord(c) - 97 + i * STEP) % 26 + 97) for i, c in enumerate(word))
    """
    return fill(code, STEP=rng.randint(1, 3)), {"word": rng.choice(WORDS)[:6]}


@template
def count_islands(rng):
    code = """
    def f(grid):
        rows, cols = len(grid), len(grid[0])
        seen = set()
        islands = 0
        for r in range(rows):
            for c in range(cols):
                if grid[r][c] == 1 and (r, c) not in seen:
                    islands += 1
                    stack = [(r, c)]
                    while stack:
                        i, j = stack.pop()
                        if (i, j) in seen or not (0 <= i < rows and 0 <= j < cols) or grid[i][j] == 0:
                            continue
                        seen.add((i, j))
                        stack += [(i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)]
        return islands
    """
    rows, cols = rng.randint(3, 4), rng.randint(3, 5)
    return fill(code), {"grid": [[int(rng.random() < 0.4) for _ in range(cols)] for _ in range(rows)]}


@template
def runs_of_equal_values(rng):
    code = """
    def f(xs):
        runs = []
        for x in xs:
            if runs and runs[-1][0] == x:
                runs[-1] = (x, runs[-1][1] + 1)
            else:
                runs.append((x, 1))
        return runs
    """
    xs = [v for _ in range(rng.randint(2, 4)) for v in [rng.randint(0, 3)] * rng.randint(1, 3)]
    return fill(code), {"xs": xs}


@template
def multiplicative_persistence(rng):
    code = """
    def f(n):
        steps = 0
        while n >= 10:
            product = 1
            for d in str(n):
                product *= int(d)
            n = product
            steps += 1
        return steps, n
    """
    return fill(code), {"n": rng.randint(10, 9999)}


@template
def first_pair_divisible(rng):
    code = """
    def f(xs):
        for i in range(len(xs)):
            for j in range(i + 1, len(xs)):
                if (xs[i] + xs[j]) % DIVISOR == 0:
                    return i, j
        return None
    """
    return fill(code, DIVISOR=rng.randint(3, 9)), {"xs": ints(rng, 1, 20, 3, 6)}


@template
def parse_key_values(rng):
    code = """
    def f(text):
        totals = {}
        for part in text.split(SEP):
            key, _, value = part.partition("=")
            totals[key.strip()] = totals.get(key.strip(), 0) + int(value)
        return totals
    """
    sep = rng.choice([";", ","])
    parts = [f"{rng.choice('xyz')}={rng.randint(1, 9)}" for _ in range(rng.randint(2, 5))]
    return fill(code, SEP=sep), {"text": sep.join(parts)}


@template
def matrix_power_fib(rng):
    code = """
    def f(n):
        def mul(a, b):
            return [[sum(a[i][k] * b[k][j] for k in range(2)) for j in range(2)] for i in range(2)]
        result, base = [[1, 0], [0, 1]], [[1, 1], [1, 0]]
        while n:
            if n & 1:
                result = mul(result, base)
            base = mul(base, base)
            n >>= 1
        return result[0][1]
    """
    return fill(code), {"n": rng.randint(1, 25)}


@template
def char_frequency_top(rng):
    code = """
    def f(text):
        counts = {}
        for ch in text.replace(" ", ""):
            counts[ch] = counts.get(ch, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[:TOP]
    """
    return fill(code, TOP=rng.randint(1, 3)), {"text": " ".join(words(rng, 2, 3))}


@template
def josephus(rng):
    code = """
    def f(n):
        people = list(range(1, n + 1))
        i = 0
        while len(people) > 1:
            i = (i + STEP - 1) % len(people)
            people.pop(i)
        return people[0]
    """
    return fill(code, STEP=rng.randint(2, 4)), {"n": rng.randint(3, 12)}


@template
def clamp_and_scale(rng):
    code = """
    def f(xs):
        return [min(max(x, LOW), HIGH) * FACTOR for x in xs]
    """
    low = rng.randint(0, 5)
    return fill(code, LOW=low, HIGH=low + rng.randint(2, 6), FACTOR=rng.randint(2, 4)), {"xs": ints(rng, -3, 12, 3, 6)}


@template
def string_score(rng):
    code = """
    def f(word):
        score = 0
        for i, ch in enumerate(word):
            value = ord(ch) - ord("a") + 1
            score += value if i % 2 == 0 else -value
        return score
    """
    return fill(code), {"word": rng.choice(WORDS)}


# --------------------------------------------------------------------------- CodeI/O-style rows


def _entry_point(source: str, funcname: str | None) -> str:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ValueError(f"code does not parse: {exc.msg}") from None
    names = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    if funcname:
        if funcname not in names:
            raise ValueError(f"code defines no function {funcname!r}")
        return funcname
    if not names:
        raise ValueError("code defines no function")
    return "main_solution" if "main_solution" in names else names[-1]


def _decoded(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _codeio_problems(row: dict, ios_per_row: int) -> list[dict]:
    """The (source, funcname, kwargs, output, description) cases of one CodeI/O row."""
    source = row.get("code") or row.get("refcode")
    if not isinstance(source, str) or not source.strip():
        raise ValueError("missing field 'code' (or 'refcode')")
    funcname = _entry_point(source, row.get("funcname"))
    pairs = row["ios"][:ios_per_row] if "ios" in row else [{"input": row["input"], "output": row["output"]}]
    if not pairs:
        raise ValueError("no input/output pairs")
    description = "\n\n".join(str(row[k]).strip() for k in ("problem_description", "io_requirements") if row.get(k))
    cases = []
    for pair in pairs:
        kwargs = _decoded(pair["input"])
        if not isinstance(kwargs, dict):
            raise ValueError("input must be an object of keyword arguments")
        cases.append({"source": source, "funcname": funcname, "kwargs": kwargs,
                      "output": _decoded(pair["output"]), "description": description})
    return cases


# --------------------------------------------------------------------------- the task


class CodeIOTask:
    """Predict a Python function's output (or an input giving its output); see the module docstring.

    Args (config `task.args`):
        path: CodeI/O-style data (file or dataset name); None (default): generated problems.
        predict: "output" (default) or "input".
        id_field: column with a unique id in the data; otherwise ids hash the code and input.
        ios_per_row: raw CodeI/O rows: how many of a row's input/output pairs become problems.
        timeout_s, memory_mb, site_packages: sandbox limits when code runs (answers of generated problems,
            and every check in "input" mode); site_packages lets the code import installed packages.
        hf_config, hf_split, val_fraction, test_fraction, split_seed: as in `fastslow.tasks.loading`.
    """

    name = "codeio"

    def __init__(
        self,
        path: str | None = None,
        predict: str = "output",
        id_field: str = "id",
        ios_per_row: int = 1,
        timeout_s: float = 5.0,
        memory_mb: int = 512,
        site_packages: bool = False,
        hf_config: str | None = None,
        hf_split: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
    ):
        if predict not in ("output", "input"):
            raise FastSlowError(f"task.args.predict: expected 'output' or 'input', got {predict!r}")
        if ios_per_row < 1:
            raise FastSlowError("task.args.ios_per_row: expected an integer >= 1")
        self.predict = predict
        self.seed_prompt = OUTPUT_PROMPT if predict == "output" else INPUT_PROMPT
        self.limits = Limits(timeout_s=timeout_s, cpu_s=max(1, math.ceil(timeout_s)), memory_mb=memory_mb,
                             site_packages=site_packages)
        self.split_fractions = (val_fraction, test_fraction)
        self._generated: dict[tuple[str, int, int], list[Problem]] = {}
        self.data: ProblemSet | None = None
        if path is not None:
            rows = load_records(
                path, lambda row: (row, _codeio_problems(row, ios_per_row)),
                "rows with 'code' (or 'refcode') and 'input'/'output' (or 'ios') fields",
                hf_config=hf_config, hf_split=hf_split,
            )
            labelled, seen = [], set()
            for (row, cases), split in rows:
                for j, case in enumerate(cases):
                    given = row.get(id_field)
                    pid = f"{given}-{j}" if given is not None and len(cases) > 1 else given
                    problem = self._problem(case, str(pid) if pid is not None else None)
                    if problem.id not in seen:  # the same code and input twice: one problem
                        seen.add(problem.id)
                        labelled.append((problem, split))
            self.data = ProblemSet(assign_splits(labelled, val_fraction, test_fraction, split_seed), source=path)

    # -- problems

    def _problem(self, case: dict, pid: str | None = None) -> Problem:
        pid = pid or content_id(case["source"], case["funcname"], case["kwargs"], prefix="codeio-")
        code = case["source"].strip()
        intro = f"{case['description']}\n\n" if case.get("description") else ""
        if self.predict == "output":
            call = format_call(case["funcname"], case["kwargs"])
            prompt = f"{intro}```python\n{code}\n```\n\nWhat does `{call}` return?"
            answer = repr(case["output"])
        else:
            prompt = (f"{intro}```python\n{code}\n```\n\nFind keyword arguments for which "
                      f"`{case['funcname']}` returns: {case['output']!r}")
            answer = json.dumps(case["kwargs"])  # one valid input; any input with the right output counts
        info = {"code": code, "funcname": case["funcname"], "input": case["kwargs"], "output": case["output"]}
        return Problem(id=pid, prompt=prompt, answer=answer, info=info)

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if self.data is not None:
            return self.data.problems(split, n, seed)
        if split not in SPLITS:
            raise FastSlowError(f"split: expected one of {SPLITS}, got {split!r}")
        if (split, n, seed) not in self._generated:
            self._generated[(split, n, seed)] = self._generate(split, n, seed)
        return list(self._generated[(split, n, seed)])

    def _split_of(self, problem_id: str) -> str:
        # A problem's split is a function of its content: train, val and test never share a problem.
        u = int(hashlib.sha256(problem_id.encode()).hexdigest()[:8], 16) / 2**32
        val, test = self.split_fractions
        return "val" if u < val else "test" if u < val + test else "train"

    def _generate(self, split: str, n: int, seed: int) -> list[Problem]:
        if split != "train" and not self.split_fractions[split == "test"]:
            raise FastSlowError(f"task.args.{split}_fraction is 0: the generator makes no {split} problems")
        rng = random.Random(f"codeio:{split}:{seed}")
        chosen: dict[str, dict] = {}
        for _ in range(200):  # rounds; each proposes candidates, then runs them in one sandbox call
            need = n - len(chosen)
            if need <= 0:
                break
            batch: dict[str, dict] = {}
            for _ in range(max(64, 20 * need)):
                source, kwargs = rng.choice(TEMPLATES)(rng)
                pid = content_id(source, "f", kwargs, prefix="codeio-")
                if pid not in chosen and self._split_of(pid) == split:
                    batch[pid] = {"source": source, "funcname": "f", "kwargs": kwargs}
                if len(batch) >= need + 8:  # a few spare: a case may fail or print too much
                    break
            for (pid, case), output in zip(batch.items(), self._run_batch(list(batch.values()))):
                if output is not UNPARSED and len(chosen) < n:
                    chosen[pid] = {**case, "output": output}
        if len(chosen) < n:
            raise FastSlowError(f"codeio: could only generate {len(chosen)} of {n} {split} problems")
        return [self._problem(case, pid) for pid, case in chosen.items()]

    def _run_batch(self, cases: list[dict]) -> list[Any]:
        """Outputs of generated cases, computed in the sandbox (UNPARSED for a case that failed)."""
        outputs: list[Any] = []
        for start in range(0, len(cases), 256):
            chunk = cases[start : start + 256]
            limits = Limits(timeout_s=60, cpu_s=60, memory_mb=self.limits.memory_mb)
            result = run_python(BATCH_PROGRAM, stdin=json.dumps(chunk), limits=limits)
            lines = result.stdout.splitlines() if result.ok else []
            if not result.ok or len(lines) != len(chunk):
                raise FastSlowError(f"codeio: computing answers in the sandbox failed: {result.error}")
            for line in lines:
                text = json.loads(line)
                ok = text is not None and len(text) <= MAX_OUTPUT_CHARS
                outputs.append(parse_value(text) if ok else UNPARSED)
        return outputs

    # -- scoring

    def score(self, problem: Problem, completion: str) -> Verdict:
        given = extract_answer(completion)
        if not given:
            return Verdict(0.0, f"No final answer found. Expected {self._expected(problem)}.")
        if self.predict == "output":
            return self._score_output(problem, given)
        return self._score_input(problem, given)

    def _expected(self, problem: Problem) -> str:
        info = problem.info
        if self.predict == "output":
            return f"`{format_call(info['funcname'], info['input'])}` to return {info['output']!r}"
        return f"an input for which `{info['funcname']}` returns {info['output']!r}, e.g. {problem.answer}"

    def _score_output(self, problem: Problem, given: str) -> Verdict:
        expected = problem.info["output"]
        predicted = _unwrap(parse_value(given), "output")
        if predicted is UNPARSED:
            correct = isinstance(expected, str) and given.strip("'\"") == expected
            note = "" if correct else " (it is not a valid Python or JSON value)"
        else:
            correct, note = same_value(predicted, expected), ""
        call = format_call(problem.info["funcname"], problem.info["input"])
        if correct:
            return Verdict(1.0, f"Correct: `{call}` returns {expected!r}.")
        return Verdict(0.0, f"Incorrect: `{call}` returns {expected!r}, but the prediction was {given}{note}.")

    def _score_input(self, problem: Problem, given: str) -> Verdict:
        info = problem.info
        kwargs = _unwrap(parse_value(given), "input")
        if not isinstance(kwargs, (dict, list)):
            return Verdict(0.0, f"The answer {given} is not a JSON object of arguments. "
                                f"Expected {self._expected(problem)}.")
        actual, error = run_call(info["code"], info["funcname"], kwargs, self.limits)
        if error:
            return Verdict(0.0, f"Running `{info['funcname']}` on {given} failed: {error}. "
                                f"Expected {self._expected(problem)}.")
        if same_value(actual, info["output"]):
            return Verdict(1.0, f"Correct: on {given}, `{info['funcname']}` returns {info['output']!r}.")
        return Verdict(0.0, f"Incorrect: on {given}, `{info['funcname']}` returns {actual!r}, "
                            f"not {info['output']!r}. One input that works: {problem.answer}.")
