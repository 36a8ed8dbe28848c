"""Screen candidate tasks for the suite of the paper's regime (issue 13) with the base model, then apply the rule
of fastslow.experiments.presets.SUITE_RULE: a valid but weak seed prompt (2-34%) under which RL has a signal from
the first step (>= 10% of problems whose samples differ in reward).

    python benchmarks/task_suite.py                  # micro model, every candidate family (~10 min on 2 cores)
    python benchmarks/task_suite.py --model PATH --programs 40 --json suite.json

Candidates, fixed before anything is measured:
- strings: held-out programs (program_seed 0..P-1) under their own instruction and under each near miss of it
  (one op dropped, two neighbouring ops swapped; fastslow.micro.evaluate.near_misses);
- cipher: a program and a secret substitution of 1-4 letter pairs, under the program's instruction;
- counting: a letter rule under the instruction of a neighbouring rule (a near miss);
- stargraph: shapes at and past the edge of pretraining (degree 2-4, arms 2-3) under the path-finding instruction;
- code (micro model v4's family: the problem states the program): 2 and 3 ops, held-out and pretraining programs,
  under the seed prompt and under the strategy prompt.
Prints one row per candidate, then the suite and what it lacks; `--json` writes both.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def candidates(programs: int) -> list[dict]:
    """Task configs with their seed prompt, in a fixed order."""
    from fastslow.micro.evaluate import near_misses
    from fastslow.tasks.micro_language import GENERIC_PROMPT, describe, held_out_program, parse_program
    from fastslow.tasks.micro import STARGRAPH_INSTRUCTION, STEP_STRATEGY, count_instruction

    found = []
    for seed in range(programs):
        program = held_out_program(seed)
        prompts = [describe(program)] + [describe(near) for near in near_misses(program)]
        found += [{"name": "strings", "args": {"program_seed": seed}, "seed_prompt": p} for p in dict.fromkeys(prompts)]
    for pairs, program in zip((1, 2, 3, 4), ("reverse", "sort", "shift:1", "rotate:2")):
        found.append({"name": "cipher", "args": {"program": program, "substitution_seed": pairs, "pairs": pairs},
                      "seed_prompt": describe(parse_program(program))})
    for rule, near in (("letter:e", "letter:a"), ("letter:a", "vowels"), ("vowels", "letters"), ("letter:o", "letter:e")):
        found.append({"name": "counting", "args": {"rule": rule}, "seed_prompt": count_instruction(near)})
    for degree, arm in ((4, 3), (5, 2), (5, 3), (2, 4), (3, 4), (4, 4)):
        found.append({"name": "stargraph", "args": {"degree": degree, "arm_length": arm},
                      "seed_prompt": STARGRAPH_INSTRUCTION})
    for ops in (2, 3):
        for pool in ("held_out", "train"):
            for prompt in (GENERIC_PROMPT, STEP_STRATEGY):
                found.append({"name": "code", "args": {"ops": ops, "programs": pool}, "seed_prompt": prompt})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="micro")
    parser.add_argument("--programs", type=int, default=40, help="held-out string programs screened")
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48, help="room for a worked answer of 3 lines")
    parser.add_argument("--json", type=Path, default=None, help="write the measurements and the suite here")
    args = parser.parse_args()
    import torch  # after the arguments: --help answers at once

    from fastslow.probe import prompt_signal
    from fastslow.experiments.presets import SUITE_RULE, select_suite
    from fastslow.policy import load_model, load_tokenizer
    from fastslow.tasks import load_task

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else None
    model, tokenizer = load_model(args.model, device=device), load_tokenizer(args.model)
    print(f"| task | seed prompt | accuracy (mean@{args.samples}, T=1, {args.problems} problems) "
          "| problems with reward variance |\n|---|---|---|---|")
    started, measured = time.perf_counter(), []
    for task in candidates(args.programs):
        row = prompt_signal(model, tokenizer, load_task(task["name"], **task["args"]), task["seed_prompt"],
                            args.problems, args.samples, args.max_new_tokens)
        measured.append({"task": task, **row})
        print(f"| {task['name']} {json.dumps(task['args'])} | {task['seed_prompt']} | {100 * row['accuracy']:.1f}% "
              f"| {100 * row['problems_with_variance']:.0f}% |", flush=True)
    suite, lacking = select_suite(measured)
    print(f"\n{len(measured)} candidates in {time.perf_counter() - started:.0f} s on {torch.get_num_threads()} threads; "
          f"rule {json.dumps(SUITE_RULE)}")
    print(f"suite ({len(suite)}): " + json.dumps(suite))
    print(f"lacking: {lacking}" if lacking else "the suite meets the rule")
    if args.json:
        args.json.write_text(json.dumps({"rule": SUITE_RULE, "measured": measured, "suite": suite, "lacking": lacking},
                                        indent=1))


if __name__ == "__main__":
    main()
