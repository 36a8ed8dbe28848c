"""What a base model does on candidate tasks BEFORE any training: how the experiments' default tasks are chosen.

    python benchmarks/base_accuracy.py                       # the micro candidates below
    python benchmarks/base_accuracy.py --model PATH --task '{"name": "stargraph", "args": {"degree": 4}}'

Prints, per (task, prompt): accuracy (mean@samples at temperature 1 on validation problems) and the share of
problems whose samples disagree (RL's group advantages are non-zero only there). The paper's tasks start from a
valid but weak prompt (2-34%) where RL has a signal from the first step.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from fastslow.probe import prompt_signal
from fastslow.policy import load_model, load_tokenizer
from fastslow.tasks import load_task

AGNOSTIC = "Solve the task."
CANDIDATES = [  # (task config, prompt; None = the task's own instruction)
    ({"name": "stargraph", "args": {"degree": 3, "arm_length": 2}}, "Find the path from the start to the goal."),
    ({"name": "stargraph", "args": {"degree": 3, "arm_length": 2}}, None),
    ({"name": "stargraph", "args": {"degree": 5, "arm_length": 4}}, None),
    ({"name": "stargraph", "args": {"degree": 3, "arm_length": 3}}, AGNOSTIC),
    ({"name": "strings", "args": {"program_seed": 0}}, None),
    ({"name": "strings", "args": {"program_seed": 2}}, None),
    ({"name": "cipher", "args": {}}, None),
    ({"name": "counting", "args": {"rule": "vowels"}}, None),
    ({"name": "counting", "args": {"rule": "vowels"}}, AGNOSTIC),
]


def measure(model, tokenizer, spec: dict, prompt: str | None, n: int, samples: int) -> dict:
    task = load_task(spec["name"], **spec.get("args", {}))
    prompt = prompt if prompt is not None else getattr(task, "instruction", task.seed_prompt)
    return {"task": spec, "prompt": prompt, **prompt_signal(model, tokenizer, task, prompt, n, samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="micro")
    parser.add_argument("--task", action="append",
                        help="a task config as JSON (repeatable); default: the micro candidates")
    parser.add_argument("--prompt", default=None,
                        help="with --task: the system prompt (default: the task's instruction)")
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    candidates = [(json.loads(t), args.prompt) for t in args.task] if args.task else CANDIDATES
    print(f"| task | prompt | accuracy (mean@{args.samples}, T=1, {args.problems} problems) "
          "| problems with reward variance |")
    print("|---|---|---|---|")
    started = time.perf_counter()
    for spec, prompt in candidates:
        row = measure(model, tokenizer, spec, prompt, args.problems, args.samples)
        print(f"| {row['task']['name']} {json.dumps(row['task'].get('args', {}))} | {row['prompt']} | "
              f"{100 * row['accuracy']:.1f}% | {100 * row['problems_with_variance']:.0f}% |", flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
