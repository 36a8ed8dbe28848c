"""What a base model does on candidate tasks BEFORE any training: how the experiments' default tasks are chosen.

    python benchmarks/base_accuracy.py                       # the micro candidates below
    python benchmarks/base_accuracy.py --model smollm2 --candidates text --max-new-tokens 32 --problems 32 \
        --slice 0:6   # the real-text tasks, the first 6 of 11 (~100 s each on 1 busy core)
    python benchmarks/base_accuracy.py --model PATH --task '{"name": "stargraph", "args": {"degree": 4}}'

Prints, per (task, prompt): accuracy (mean@samples at temperature 1 on validation problems) and the share of
problems whose samples disagree (RL's group advantages are non-zero only there). The paper's tasks start from a
valid but weak prompt (2-34%) where RL has a signal from the first step.
"""

from __future__ import annotations

import argparse
import json
import time

from fastslow.tasks.text import SEED_PROMPT  # a text constant: --help stays light

AGNOSTIC = "Solve the task."
MICRO_CANDIDATES = [  # (task config, prompt; None = the task's own instruction)
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
# The real-text tasks (fastslow.tasks.text) for a small real LLM such as smollm2, under their task-agnostic seed prompt.
TEXT_CANDIDATES = [({"name": name, "args": args}, SEED_PROMPT) for name, args in (
    ("arithmetic", {"digits": 1, "ops": "+-"}), ("arithmetic", {"digits": 2, "ops": "+"}),
    ("arithmetic", {"digits": 2, "ops": "+-"}), ("arithmetic", {"digits": 3, "ops": "+"}),
    ("compare", {"digits": 2}), ("compare", {"digits": 3}),
    ("letters", {"question": "first"}), ("letters", {"question": "last"}), ("letters", {"question": "count"}),
    ("sentiment", {"ask": True}), ("sentiment", {"ask": False}))]
CANDIDATES = {"micro": MICRO_CANDIDATES, "text": TEXT_CANDIDATES}


def measure(model, tokenizer, spec: dict, prompt: str | None, n: int, samples: int, max_new_tokens: int) -> dict:
    from fastslow.probe import prompt_signal
    from fastslow.tasks import load_task

    task = load_task(spec["name"], **spec.get("args", {}))
    prompt = prompt if prompt is not None else getattr(task, "instruction", task.seed_prompt)
    return {"task": spec, "prompt": prompt, **prompt_signal(model, tokenizer, task, prompt, n, samples, max_new_tokens)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="micro")
    parser.add_argument("--task", action="append",
                        help="a task config as JSON (repeatable); default: the --candidates list")
    parser.add_argument("--candidates", choices=sorted(CANDIDATES), default="micro",
                        help="micro: the micro model's candidate tasks; text: the real-text tasks")
    parser.add_argument("--slice", default=":", help="START:END of the candidate list (to split it over several jobs)")
    parser.add_argument("--prompt", default=None,
                        help="with --task: the system prompt (default: the task's instruction)")
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()
    import torch  # after the arguments: --help answers at once

    from fastslow.policy import load_model, load_tokenizer

    torch.manual_seed(0)
    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    candidates = [(json.loads(t), args.prompt) for t in args.task] if args.task else CANDIDATES[args.candidates]
    start, _, end = args.slice.partition(":")
    candidates = candidates[int(start or 0): int(end) if end else None]
    print(f"| task | prompt | accuracy (mean@{args.samples}, T=1, {args.problems} problems) "
          "| problems with reward variance | answer entropy (nats) |")
    print("|---|---|---|---|---|")
    started = time.perf_counter()
    for spec, prompt in candidates:
        row = measure(model, tokenizer, spec, prompt, args.problems, args.samples, args.max_new_tokens)
        print(f"| {row['task']['name']} {json.dumps(row['task'].get('args', {}))} | {row['prompt']} | "
              f"{100 * row['accuracy']:.1f}% | {100 * row['problems_with_variance']:.0f}% | "
              f"{row['answer_entropy']:.2f} |", flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s on {torch.get_num_threads()} threads; model {args.model}, at most "
          f"{args.max_new_tokens} new tokens")


if __name__ == "__main__":
    main()
