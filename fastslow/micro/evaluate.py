"""What the micro model can do, measured on programs and problems it never saw in pretraining.

- with_instruction: exact match on held-out compositions when the system prompt is the right instruction.
- with_seed_prompt: the same problems under the generic seed prompt (should be low: prompts must matter).
- reflection_improves: the model as reflection LM, given the seed prompt and 3 failures with feedback
  (its own completions, scored by the task), writes a new instruction; the fraction of proposals that raise
  the reward on those 3 problems (what GEPA's acceptance test checks).
- zero_reward_family_seed_prompt: star-graph path finding under the seed prompt (should be ~0).
All decoding is greedy, so the numbers are deterministic for a model and seed.
"""

from __future__ import annotations

import random

import torch

from fastslow.fast.records import extract_instruction, reflective_record, render_reflection_prompt
from fastslow.micro.language import GENERIC_PROMPT, TRAIN_PROGRAMS, program_spec
from fastslow.policy import Sampling, chat_messages, generate, load_model, load_tokenizer
from fastslow.tasks.micro import COUNT_RULES, CipherTask, CountingTask, StarGraphTask, StringProgramTask

GREEDY = Sampling(max_new_tokens=40, temperature=0)
REFLECT = Sampling(max_new_tokens=160, temperature=0)
PROGRAMS = 20  # held-out programs per measurement; problems are spread over them


def accuracy(model, tokenizer, cases: list[tuple], prompt_of) -> float:
    """Mean reward over (task, problem) cases with system prompt `prompt_of(task)`."""
    outputs = generate(model, tokenizer, [chat_messages(prompt_of(task), p.prompt) for task, p in cases], GREEDY)
    return sum(task.score(p, out).reward for (task, p), out in zip(cases, outputs)) / max(1, len(cases))


def cases_for(tasks: list, n: int, seed: int) -> list[tuple]:
    """`n` validation problems spread evenly over `tasks`."""
    per_task = [n // len(tasks) + (i < n % len(tasks)) for i in range(len(tasks))]
    return [(task, p) for task, k in zip(tasks, per_task) for p in task.problems("val", k, seed)]


def reflection_trials(model, tokenizer, tasks: list, seed: int, minibatch: int = 3) -> list[dict]:
    """One reflection per task: seed prompt -> 3 failures with feedback -> new instruction -> re-scored."""
    trials = []
    for task in tasks:
        problems = task.problems("val", 4 * minibatch, seed)
        outputs = generate(model, tokenizer, [chat_messages(task.seed_prompt, p.prompt) for p in problems], GREEDY)
        failures = [(p, o) for p, o in zip(problems, outputs) if task.score(p, o).reward == 0][:minibatch]
        if len(failures) == minibatch:
            trials.append({"task": task, "failures": failures})
    prompts = [
        render_reflection_prompt(
            GENERIC_PROMPT, [reflective_record(p.prompt, o, t["task"].score(p, o).feedback) for p, o in t["failures"]]
        )
        for t in trials
    ]
    proposals = generate(model, tokenizer, [chat_messages(None, prompt) for prompt in prompts], REFLECT)
    for trial, proposal in zip(trials, proposals):
        trial["proposal"] = extract_instruction(proposal)
    rescored = generate(
        model, tokenizer, [chat_messages(t["proposal"], p.prompt) for t in trials for p, _ in t["failures"]], GREEDY
    )
    for i, trial in enumerate(trials):
        outs = rescored[i * minibatch : (i + 1) * minibatch]
        trial["reward"] = sum(trial["task"].score(p, o).reward for (p, _), o in zip(trial["failures"], outs)) / minibatch
        trial["improved"] = trial["reward"] > 0  # the seed prompt scored 0 on these failures
        trial["exact"] = trial["proposal"] == getattr(trial["task"], "instruction", None)
    return trials


def evaluate_micro(model_path: str = "micro", n: int = 100, seed: int = 0, device: str | None = None) -> dict:
    """All measurements; `summary` holds the four headline fractions, `rows` the full table."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_model(model_path, dtype="float32", device=device), load_tokenizer(model_path)
    model.eval()
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
    by_length = {k: [c for c in held_cases if len(c[0].program) == k] for k in (2, 3)}
    summary = {
        "with_instruction": accuracy(model, tokenizer, held_cases, instruction),
        "with_seed_prompt": accuracy(model, tokenizer, held_cases, seed_prompt),
        "reflection_improves": None,
        "zero_reward_family_seed_prompt": accuracy(model, tokenizer, star_cases, seed_prompt),
    }
    reflection_tasks = [StringProgramTask(program_seed=seed * 1000 + 500 + i) for i in range(max(1, n // 2))]
    trials = reflection_trials(model, tokenizer, reflection_tasks, seed)
    k = max(1, n // 20)  # other families' reflection cases grow with n
    other_trials = reflection_trials(model, tokenizer, counting[:k] + star + ciphers[:k], seed)
    summary["reflection_improves"] = sum(t["improved"] for t in trials) / max(1, len(trials))
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
    ]
    examples = [{"program": program_spec(t["task"].program), "proposal": t["proposal"], "reward": t["reward"]}
                for t in trials[:5]]
    return {"summary": summary, "rows": rows, "reflection_examples": examples, "model": model_path, "n": n, "seed": seed}


def format_table(results: dict) -> str:
    """A Markdown table of every measurement (also pasted into docs/MICRO.md)."""
    lines = ["| ability | prompt | score | cases |", "|---|---|---|---|"]
    lines += [f"| {name} | {prompt} | {score:.2f} | {count} |" for name, prompt, score, count in results["rows"]]
    lines += ["", "Reflection examples (held-out programs):"]
    lines += [f"- `{e['program']}` -> \"{e['proposal']}\" (reward {e['reward']:.2f})" for e in results["reflection_examples"]]
    return "\n".join(lines)
