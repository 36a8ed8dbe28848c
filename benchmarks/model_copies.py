"""The copies of the model's weights a run holds: a short FST run on CPU with the micro model (reflection `self`),
counted at its last metrics row, for LoRA, full fine-tuning with the KL term, and full fine-tuning without it.
Prints a table: every distinct set of weight tensors alive in the process, its size, and whether an optimizer
holds any of its parameters.

    python benchmarks/model_copies.py [--threads 2]

A copy is a PreTrainedModel whose parameter storages no other copy shares (LoRA's adapters live inside the policy,
so they count with it).
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile

RUNS = {
    "LoRA (r 8), kl_coef 0.001": {"model": {"lora": {"r": 8}}},
    "full weights, kl_coef 0.001": {},
    "full weights, kl_coef 0": {"rl": {"kl_coef": 0.0}},
}


def copies() -> list[dict]:
    """Every distinct set of weights alive now: class, parameters, MB, trains (an optimizer holds a parameter)."""
    import torch
    from transformers import PreTrainedModel

    gc.collect()
    found = []
    for obj in gc.get_objects():
        if isinstance(obj, PreTrainedModel):
            tensors = [*obj.parameters(), *obj.buffers()]
            storages = {t.untyped_storage().data_ptr() for t in tensors}
            found.append((obj, storages, tensors))
    distinct = []
    for obj, storages, tensors in sorted(found, key=lambda f: -len(f[1])):  # a submodule model shares its parent's
        if any(storages & seen for _, seen, _ in distinct):
            continue
        distinct.append((obj, storages, tensors))
    optimized = {id(p) for obj in gc.get_objects() if isinstance(obj, torch.optim.Optimizer)
                 for group in obj.param_groups for p in group["params"]}
    return [{"class": type(obj).__name__,
             "parameters": sum(p.numel() for p in obj.parameters()),
             "MB": sum(t.numel() * t.element_size() for t in tensors) / 2**20,
             "trains": any(id(p) in optimized for p in obj.parameters())} for obj, _, tensors in distinct]


def census(overrides: dict, out_dir: str) -> list[dict]:
    from fastslow.config import parse_config
    from fastslow.loop import run

    data = {
        "name": "copies", "mode": "fst", "output_dir": out_dir,
        "model": {"path": "micro", "max_new_tokens": 8},
        "task": {"name": "strings", "train_size": 16, "val_size": 4},
        "loop": {"steps": 2, "steps_per_cycle": 2, "problems_per_step": 2, "rollouts_per_problem": 4,
                 "population_size": 2},
        "rl": {"warmup_steps": 0},
        "gepa": {"budget_passes": 3, "reflection_minibatch_size": 2},
        "reflection": {"kind": "self", "max_new_tokens": 16},
        "eval": {"every": 2, "samples": 1, "kl_prompts": 2},
    }
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}
    seen: list[dict] = []

    def at_last_row(row: dict) -> None:
        if row["step"] == data["loop"]["steps"]:
            seen.extend(copies())

    run(parse_config(data), observer=at_last_row)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch  # after the arguments: --help answers at once

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    print("| run | copies of the weights | each: class, parameters, MB, trains | total MB |")
    print("|---|---|---|---|")
    for label, overrides in RUNS.items():
        with tempfile.TemporaryDirectory() as out_dir:
            found = census(overrides, out_dir)
        gc.collect()
        each = "; ".join(f"{c['class']} {c['parameters'] / 1e6:.1f}M {c['MB']:.1f} MB {'trains' if c['trains'] else 'frozen'}"
                         for c in found)
        print(f"| {label} | {len(found)} | {each} | {sum(c['MB'] for c in found):.1f} |", flush=True)


if __name__ == "__main__":
    main()
