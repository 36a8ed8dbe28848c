"""What the micro model can do, measured on programs and problems it never saw in pretraining.

- with_instruction: exact match on held-out compositions when the system prompt is the right instruction.
- with_seed_prompt: the same problems under the generic seed prompt (should be low: prompts must matter).
- reflection_improves: the model as reflection LM, given the seed prompt and 3 failures with feedback
  (its own completions, scored by the task), writes a new instruction; the fraction of proposals that raise
  the reward on those 3 problems (what GEPA's acceptance test checks).
- zero_reward_family_seed_prompt: star-graph path finding under the seed prompt (should be ~0).
- answer_entropy: the mean next-token entropy (nats/token) of answers sampled at temperature 1 under the right
  instruction, on held-out programs: how uncertain the policy is where RL has to learn (the paper's LLMs: 0.15-0.45).
- near_miss_varied: the share of problems whose 4 samples at temperature 1 differ in reward under a near-miss
  instruction (one op dropped, or two neighbouring ops swapped): where RL has a signal from a valid but weak prompt.
- reflector_improves: `reflection_improves` with a separate reflection model writing the proposals (the policy still
  makes the failures and follows the proposal); None when no reflector is given.
- reflection_copies, reflector_copies: the share of those proposals that copy the instruction shown (the seed prompt).
- near_miss_reflection_improves, near_miss_reflector_improves (and their copies and near_copies): the same, shown a near
  miss of a held-out program instead of the seed prompt, with 3 problems on which the near miss itself is wrong and the
  policy fails: GEPA's situation once a population holds a wrong but close instruction. A copy repeats the shown
  instruction verbatim; a near copy is another instruction of the language that computes the same outputs as the shown
  one on the shown inputs. Neither can raise the reward of an exact executor there.
- reflection_cases, near_miss_reflection_cases: how many reflection cases each of those fractions is over.
- code_seed_prompt, code_strategy, code_seed_varied: the code family (the problem states a held-out 3-op program),
  mean@4 at temperature 1 under the seed prompt and under the strategy prompt (STEP_STRATEGY: an instruction-only
  gain when it is higher), and the share of problems whose samples differ in reward under the seed prompt.
Decoding is greedy except for the two uncertainty measurements, which sample with a fixed torch seed, so every
number is deterministic for a model, seed and machine.
"""

from __future__ import annotations

import random

import torch

from fastslow.probe import prompt_signal
from fastslow.fast.records import extract_instruction, reflective_record, render_reflection_prompt
from fastslow.tasks.micro_language import TRAIN_PROGRAMS, describe, program_of, program_spec, run_program
from fastslow.policy import Sampling, chat_messages, generate, load_model, load_tokenizer, sample
from fastslow.tasks.micro import (
    COUNT_RULES,
    STEP_STRATEGY,
    CipherTask,
    CodeTask,
    CountingTask,
    StarGraphTask,
    StringProgramTask,
)

GREEDY = Sampling(max_new_tokens=40, temperature=0)
REFLECT = Sampling(max_new_tokens=160, temperature=0)
SAMPLED = Sampling(max_new_tokens=40, temperature=1.0)
PROGRAMS = 20  # held-out programs per measurement; problems are spread over them
SAMPLES = 4  # samples per problem in the uncertainty measurements (the paper's regime needs G > 1 to vary)
CODE_TOKENS = 48  # a worked answer: up to 3 lines of up to 16 letters


def accuracy(model, tokenizer, cases: list[tuple], prompt_of) -> float:
    """Mean reward over (task, problem) cases with system prompt `prompt_of(task)`."""
    outputs = generate(model, tokenizer, [chat_messages(prompt_of(task), p.prompt) for task, p in cases], GREEDY)
    return sum(task.score(p, out).reward for (task, p), out in zip(cases, outputs)) / max(1, len(cases))


def cases_for(tasks: list, n: int, seed: int) -> list[tuple]:
    """`n` validation problems spread evenly over `tasks`."""
    per_task = [n // len(tasks) + (i < n % len(tasks)) for i in range(len(tasks))]
    return [(task, p) for task, k in zip(tasks, per_task) for p in task.problems("val", k, seed)]


def answer_entropy(model, tokenizer, cases: list[tuple]) -> float:
    """Mean next-token entropy per answer token of SAMPLES answers per case, sampled under the right instruction."""
    completions = sample(model, tokenizer, [chat_messages(task.instruction, p.prompt) for task, p in cases
                                            for _ in range(SAMPLES)], SAMPLED)
    return sum(c.entropy for c in completions) / max(1, sum(len(c.ids) for c in completions))


def near_misses(program: tuple) -> list[tuple]:
    """The programs one slip away: one op dropped, or two neighbouring ops swapped."""
    dropped = [program[:i] + program[i + 1:] for i in range(len(program))]
    swapped = [program[:i] + (program[i + 1], program[i]) + program[i + 2:] for i in range(len(program) - 1)]
    return [p for p in dropped + swapped if p and p != program]


def near_miss_cases(tasks: list, n: int, seed: int) -> list[tuple]:
    """(task, problem, near-miss instruction): `n` problems spread over the tasks' near misses, leaving out a near
    miss that computes the task's own answer on 20 probe problems (commuting ops: not a miss)."""
    pairs = [(task, near) for task in tasks for near in near_misses(task.program)
             if any(run_program(near, p.prompt) != p.answer for p in task.problems("val", 20, seed + 1))]
    per_pair = [n // len(pairs) + (i < n % len(pairs)) for i in range(len(pairs))]
    return [(task, p, describe(near)) for (task, near), k in zip(pairs, per_pair) for p in task.problems("val", k, seed)]


def near_miss_varied(model, tokenizer, cases: list[tuple]) -> float:
    """Share of near-miss cases whose SAMPLES sampled answers differ in reward (RL's group advantage is non-zero)."""
    completions = generate(model, tokenizer, [chat_messages(near, p.prompt) for _, p, near in cases
                                              for _ in range(SAMPLES)], SAMPLED)
    rewards = [task.score(p, c).reward for (task, p, _), c in
               zip([case for case in cases for _ in range(SAMPLES)], completions)]
    return varied_share(rewards, SAMPLES)


def varied_share(rewards: list[float], group: int) -> float:
    """The share of consecutive groups of `group` rewards that are not all equal."""
    groups = [rewards[i:i + group] for i in range(0, len(rewards), group)]
    return sum(len(set(g)) > 1 for g in groups) / max(1, len(groups))


def failure_sets(model, tokenizer, tasks: list, seed: int, minibatch: int = 3) -> list[dict]:
    """Per task, `minibatch` validation problems the policy gets wrong under the seed prompt (tasks with fewer
    failures are left out): what a reflection is shown."""
    return failures_under(model, tokenizer, [(task, task.seed_prompt, task.problems("val", 4 * minibatch, seed))
                                             for task in tasks], minibatch)


def near_miss_failure_sets(model, tokenizer, tasks: list, seed: int, minibatch: int = 3) -> list[dict]:
    """Per held-out string task, its first near miss (`near_misses`) that is itself wrong on at least `minibatch` of
    4 x `minibatch` validation problems, and `minibatch` of those the policy gets wrong under it (tasks with fewer
    are left out): a reflection shown a wrong but close instruction, where copying it cannot help."""
    shown = []
    for task in tasks:
        problems = task.problems("val", 4 * minibatch, seed)
        for near in near_misses(task.program):
            wrong = [p for p in problems if run_program(near, p.prompt) != p.answer]
            if len(wrong) >= minibatch:
                shown.append((task, describe(near), wrong))
                break
    return failures_under(model, tokenizer, shown, minibatch)


def failures_under(model, tokenizer, shown: list[tuple], minibatch: int) -> list[dict]:
    """For each (task, instruction, problems): the first `minibatch` problems the policy gets wrong under the
    instruction (greedy, all in one batch), as a set {task, shown, failures}; fewer failures: left out."""
    rows = [(task, instruction, p) for task, instruction, problems in shown for p in problems]
    outputs = iter(generate(model, tokenizer, [chat_messages(instruction, p.prompt) for _, instruction, p in rows], GREEDY))
    sets = []
    for task, instruction, problems in shown:
        answered = [(p, next(outputs)) for p in problems]
        failures = [(p, o) for p, o in answered if task.score(p, o).reward == 0][:minibatch]
        if len(failures) == minibatch:
            sets.append({"task": task, "shown": instruction, "failures": failures})
    return sets


def is_copy(proposal: str, shown: str) -> bool:
    """The proposal repeats the instruction it was shown (surrounding whitespace ignored)."""
    return proposal.strip() == shown.strip()


def is_near_copy(proposal: str, shown: str, inputs: list[str]) -> bool:
    """Not a copy, but another instruction of the language that computes what the shown one computes on `inputs`:
    on those problems it changes nothing an exact executor would answer."""
    new, old = program_of(proposal), program_of(shown)
    return (not is_copy(proposal, shown) and new is not None and old is not None
            and all(run_program(new, x) == run_program(old, x) for x in inputs))


def share(trials: list[dict], key: str) -> float:
    return sum(t[key] for t in trials) / max(1, len(trials))


def reflect(model, tokenizer, sets: list[dict], reflector: tuple | None = None) -> list[dict]:
    """One reflection per failure set: its shown instruction and failures with feedback -> new instruction ->
    re-scored by the policy. `reflector` (model, tokenizer) writes the proposals; by default the policy reflects on
    itself."""
    reflect_model, reflect_tokenizer = reflector or (model, tokenizer)
    prompts = [
        render_reflection_prompt(
            t["shown"], [reflective_record(p.prompt, o, t["task"].score(p, o).feedback) for p, o in t["failures"]]
        )
        for t in sets
    ]
    proposals = generate(reflect_model, reflect_tokenizer, [chat_messages(None, prompt) for prompt in prompts], REFLECT)
    trials = [{**t, "proposal": extract_instruction(proposal)} for t, proposal in zip(sets, proposals)]
    rescored = generate(
        model, tokenizer, [chat_messages(t["proposal"], p.prompt) for t in trials for p, _ in t["failures"]], GREEDY
    )
    for i, trial in enumerate(trials):
        minibatch = len(trial["failures"])
        outs = rescored[i * minibatch : (i + 1) * minibatch]
        trial["reward"] = sum(trial["task"].score(p, o).reward for (p, _), o in zip(trial["failures"], outs)) / minibatch
        trial["improved"] = trial["reward"] > 0  # the shown instruction scored 0 on these failures
        trial["exact"] = trial["proposal"] == getattr(trial["task"], "instruction", None)
        trial["copy"] = is_copy(trial["proposal"], trial["shown"])
        trial["near_copy"] = is_near_copy(trial["proposal"], trial["shown"], [p.prompt for p, _ in trial["failures"]])
    return trials


def evaluate_micro(model_path: str = "micro", n: int = 100, seed: int = 0, device: str | None = None,
                   reflector_path: str | None = None) -> dict:
    """All measurements; `summary` holds the headline numbers, `rows` the full table."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_model(model_path, dtype="float32", device=device), load_tokenizer(model_path)
    model.eval()
    reflector = None
    if reflector_path is not None:
        reflector = load_model(reflector_path, dtype="float32", device=device), load_tokenizer(reflector_path)
        reflector[0].eval()
    torch.manual_seed(seed)  # the sampled measurements
    rng = random.Random(seed)
    held_out = [StringProgramTask(program_seed=seed * 1000 + i) for i in range(PROGRAMS)]
    seen = [StringProgramTask(program=program_spec(p)) for p in rng.sample([p for p in TRAIN_PROGRAMS if len(p) > 1], PROGRAMS)]
    counting = [CountingTask(rule) for rule in ("letters", "vowels") + tuple(rng.sample(COUNT_RULES[2:], 3))]
    ciphers = [CipherTask(program=program_spec(rng.choice(TRAIN_PROGRAMS[:13])), substitution_seed=i) for i in range(5)]
    star = [StarGraphTask()]

    def instruction(task):
        return task.instruction

    def seed_prompt(task):
        return task.seed_prompt

    held_cases, star_cases = cases_for(held_out, n, seed), cases_for(star, n, seed)
    near_cases = near_miss_cases(held_out, n, seed)
    by_length = {k: [c for c in held_cases if len(c[0].program) == k] for k in (2, 3)}
    summary = {
        "with_instruction": accuracy(model, tokenizer, held_cases, instruction),
        "with_seed_prompt": accuracy(model, tokenizer, held_cases, seed_prompt),
        "reflection_improves": None,
        "zero_reward_family_seed_prompt": accuracy(model, tokenizer, star_cases, seed_prompt),
        "answer_entropy": answer_entropy(model, tokenizer, held_cases),
        "near_miss_varied": near_miss_varied(model, tokenizer, near_cases),
        "reflector_improves": None,
    }
    code = CodeTask(ops=3)
    seed_signal = prompt_signal(model, tokenizer, code, code.seed_prompt, n, SAMPLES, max_new_tokens=CODE_TOKENS)
    strategy_signal = prompt_signal(model, tokenizer, code, STEP_STRATEGY, n, SAMPLES, max_new_tokens=CODE_TOKENS)
    summary.update(code_seed_prompt=seed_signal["accuracy"], code_strategy=strategy_signal["accuracy"],
                   code_seed_varied=seed_signal["problems_with_variance"])
    reflection_tasks = [StringProgramTask(program_seed=seed * 1000 + 500 + i) for i in range(max(1, n // 2))]
    failures = failure_sets(model, tokenizer, reflection_tasks, seed)  # the same cases for both reflection LMs
    near_failures = near_miss_failure_sets(model, tokenizer, reflection_tasks, seed)
    trials, near_trials = reflect(model, tokenizer, failures), reflect(model, tokenizer, near_failures)
    summary.update(reflection_copies=share(trials, "copy"), near_miss_reflection_improves=share(near_trials, "improved"),
                   near_miss_reflection_copies=share(near_trials, "copy"),
                   near_miss_reflection_near_copies=share(near_trials, "near_copy"),
                   reflector_copies=None, near_miss_reflector_improves=None, near_miss_reflector_copies=None,
                   near_miss_reflector_near_copies=None)
    if reflector is not None:
        reflected, near_reflected = reflect(model, tokenizer, failures, reflector), reflect(model, tokenizer, near_failures, reflector)
        summary.update(reflector_improves=share(reflected, "improved"), reflector_copies=share(reflected, "copy"),
                       near_miss_reflector_improves=share(near_reflected, "improved"),
                       near_miss_reflector_copies=share(near_reflected, "copy"),
                       near_miss_reflector_near_copies=share(near_reflected, "near_copy"))
    summary.update(reflection_cases=len(trials), near_miss_reflection_cases=len(near_trials))
    k = max(1, n // 20)  # other families' reflection cases grow with n
    other_trials = reflect(model, tokenizer, failure_sets(model, tokenizer, counting[:k] + star + ciphers[:k], seed))
    summary["reflection_improves"] = share(trials, "improved")
    rows = [
        ("strings, held-out programs", "instruction", summary["with_instruction"], len(held_cases)),
        *[(f"strings, held-out programs of {k} ops", "instruction", accuracy(model, tokenizer, c, instruction), len(c))
          for k, c in by_length.items() if c],
        ("strings, held-out programs", "seed prompt", summary["with_seed_prompt"], len(held_cases)),
        ("strings, pretraining programs (2-3 ops)", "instruction", accuracy(model, tokenizer, cases_for(seen, n, seed), instruction), n),
        ("counting", "instruction", accuracy(model, tokenizer, cases_for(counting, n, seed), instruction), n),
        ("counting", "seed prompt", accuracy(model, tokenizer, cases_for(counting, n, seed), seed_prompt), n),
        ("cipher (best expressible instruction)", "instruction", accuracy(model, tokenizer, cases_for(ciphers, n, seed), instruction), n),
        ("stargraph", "instruction", accuracy(model, tokenizer, star_cases, instruction), n),
        ("stargraph", "seed prompt", summary["zero_reward_family_seed_prompt"], n),
        ("reflection on held-out programs: proposal raises minibatch reward", "seed prompt + 3 failures",
         summary["reflection_improves"], len(trials)),
        ("reflection on held-out programs: proposal is the exact instruction", "seed prompt + 3 failures",
         sum(t["exact"] for t in trials) / max(1, len(trials)), len(trials)),
        ("reflection on counting, stargraph, cipher: raises reward", "seed prompt + 3 failures",
         sum(t["improved"] for t in other_trials) / max(1, len(other_trials)), len(other_trials)),
        ("strings, held-out programs: answer entropy (nats/token, T=1)", "instruction", summary["answer_entropy"],
         len(held_cases) * SAMPLES),
        (f"strings, held-out programs: problems whose {SAMPLES} samples differ in reward (T=1)", "near miss",
         summary["near_miss_varied"], len(near_cases)),
        ("reflection on held-out programs by the reflector: raises reward", "seed prompt + 3 failures",
         summary["reflector_improves"], len(trials) if reflector is not None else 0),
        ("reflection on held-out programs: proposal copies the shown instruction", "seed prompt + 3 failures",
         summary["reflection_copies"], len(trials)),
        ("reflection on held-out programs by the reflector: proposal copies the shown instruction",
         "seed prompt + 3 failures", summary["reflector_copies"], len(trials) if reflector is not None else 0),
        *[(f"reflection on held-out programs{by}: {what}", "near miss + 3 failures", summary[key],
           len(near_trials) if summary[key] is not None else 0)
          for by, who in (("", "reflection"), (" by the reflector", "reflector"))
          for what, key in (("raises reward", f"near_miss_{who}_improves"),
                            ("proposal copies the shown instruction", f"near_miss_{who}_copies"),
                            ("proposal computes what the shown one does (near copy)", f"near_miss_{who}_near_copies"))],
        (f"code, held-out 3-op programs stated in the problem (mean@{SAMPLES}, T=1)", "seed prompt",
         summary["code_seed_prompt"], n),
        (f"code, held-out 3-op programs stated in the problem (mean@{SAMPLES}, T=1)", "strategy (one line per step)",
         summary["code_strategy"], n),
        (f"code: problems whose {SAMPLES} samples differ in reward (T=1)", "seed prompt", summary["code_seed_varied"], n),
    ]
    rows = [row for row in rows if row[2] is not None]  # the reflector's rows only with --reflector
    examples = [{"program": program_spec(t["task"].program), "proposal": t["proposal"], "reward": t["reward"]}
                for t in trials[:5]]
    return {"summary": summary, "rows": rows, "reflection_examples": examples, "model": model_path, "n": n, "seed": seed}


def format_table(results: dict) -> str:
    """A Markdown table of every measurement (also pasted into docs/MICRO.md)."""
    lines = ["| ability | prompt | score | cases |", "|---|---|---|---|"]
    lines += [f"| {name} | {prompt} | {_number(score)} | {count} |" for name, prompt, score, count in results["rows"]]
    lines += ["", "Reflection examples (held-out programs):"]
    lines += [f"- `{e['program']}` -> \"{e['proposal']}\" (reward {e['reward']:.2f})" for e in results["reflection_examples"]]
    return "\n".join(lines)


def _number(score: float) -> str:
    return f"{score:.3f}" if 0 < score < 0.1 else f"{score:.2f}"
