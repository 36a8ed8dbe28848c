"""`fastslow export RUN_DIR OUT_DIR`: a run's newest checkpoint as a plain Hugging Face model directory.

Both channels travel: the slow weights (LoRA merged into the base, if the run used LoRA) and the fast
weights (the best evolved prompt becomes the chat template's default system message, or with model.prompt_placement
user the head of the first user message; the whole final population is in population.json). The result loads with
transformers or vLLM, without fastslow.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from fastslow.checkpoint import WRITE_ERRORS, latest_checkpoint
from fastslow.config import Config, load_config
from fastslow.errors import FastSlowError, write_failure
from fastslow.models import hub_id, resolve_model_path

METRICS_IN_CARD = ["val_accuracy", "val_accuracy_seed_prompt", "reward_mean", "kl_base", "entropy"]


def with_default_prompt(chat_template: str, prompt: str, placement: str = "system") -> str:
    """A chat template that puts `prompt` where training put it (model.prompt_placement) when a conversation has no
    system message: system: as the system message; user: at the head of the first user message, a blank line before
    it (fastslow.policy.chat_messages)."""
    if placement == "user":
        literal = json.dumps(prompt + "\n\n", ensure_ascii=False)  # a valid Jinja string literal, quotes and newlines escaped
        prefix = (
            "{%- if messages and messages[0]['role'] == 'user' -%}"
            f"{{%- set messages = [{{'role': 'user', 'content': {literal} + messages[0]['content']}}] + messages[1:] -%}}"
            "{%- endif -%}\n"
        )
    else:
        literal = json.dumps(prompt, ensure_ascii=False)
        prefix = (
            "{%- if not messages or messages[0]['role'] != 'system' -%}"
            f"{{%- set messages = [{{'role': 'system', 'content': {literal}}}] + messages -%}}"
            "{%- endif -%}\n"
        )
    return prefix + chat_template


def load_merged_model(model_dir: Path, base_path: str):
    """Full weights as saved, or (LoRA) the base model with the adapter merged in."""
    from transformers import AutoModelForCausalLM

    if not model_dir.is_dir():  # gepa mode trains no weights: the base weights travel with the evolved prompt
        return AutoModelForCausalLM.from_pretrained(resolve_model_path(base_path), dtype="auto")
    if not (model_dir / "adapter_config.json").is_file():
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(resolve_model_path(base_path), dtype="auto")
    return PeftModel.from_pretrained(base, model_dir).merge_and_unload()


def final_metrics(metrics_file: Path) -> dict[str, tuple[int, float]]:
    """For each metric, its last measured value and the step it was measured at."""
    found: dict[str, tuple[int, float]] = {}
    if not metrics_file.is_file():
        return found
    for line in metrics_file.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            found.update({key: (row.get("step"), row[key]) for key in METRICS_IN_CARD if row.get(key) is not None})
    return found


def deployed_prompt(state: dict) -> str | None:
    """The prompt a checkpoint's weights are used with: the best evolved prompt, or for fst-distill the seed
    prompt (checkpoints before fst-distill record only the best)."""
    return state.get("deployed_prompt", state.get("best_prompt"))


def model_card(config: Config, state: dict, metrics: dict[str, tuple[int, float]], path: str) -> str:
    base = config.model.path
    front = "---\n" + (f"base_model: {hub_id(base)}\n" if hub_id(base) else "") + "library_name: transformers\n"
    front += "tags:\n- fastslow\n- fast-slow-training\n---\n\n"
    rows = "\n".join(f"| {key} | {value:.4g} | {step} |" for key, (step, value) in metrics.items())
    table = f"| metric | value | at step |\n|---|---|---|\n{rows}" if rows else "No metrics were recorded."
    best = deployed_prompt(state) or ""
    where = ("as the system message when a conversation has none" if config.model.prompt_placement == "system" else
             "at the head of the first user message, a blank line before it, when a conversation has no system message "
             "(model.prompt_placement: user)")
    distilled = (" This run (fst-distill) distilled the best evolved prompt into the weights, which are used under "
                 "the seed prompt shown here." if config.mode == "fst-distill" else "")
    return front + f"""# {config.name}

Trained with fastslow's Fast-Slow Training (mode `{config.mode}`): RL on the weights
and GEPA on a population of system prompts, interleaved.

- base model: `{base}`{" (LoRA merged)" if config.model.lora else ""}
- task: `{config.task.name}`
- RL steps: {state.get("step")} (cycle {state.get("cycle")})

## Final metrics
{table}

## Best evolved prompt
The chat template puts it {where}; `population.json` holds the
whole final population.{distilled}

```text
{best}
```

## Use
```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("{path}")
model = AutoModelForCausalLM.from_pretrained("{path}")
inputs = tokenizer.apply_chat_template([{{"role": "user", "content": "..."}}], add_generation_prompt=True,
                                       return_tensors="pt", return_dict=True)
print(tokenizer.decode(model.generate(**inputs, max_new_tokens=256)[0]))
```
"""


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the run's newest checkpoint to `out_dir` as a Hugging Face model directory; returns out_dir."""
    from transformers import AutoTokenizer

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FastSlowError(f"{run_dir}: not a run directory (no config.yaml)")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FastSlowError(f"{out_dir}: already exists and is not empty; choose a new output directory")
    config = load_config(run_dir / "config.yaml")
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is None:
        raise FastSlowError(f"{run_dir}: no checkpoint to export (checkpoints/LATEST not found)")
    state = json.loads((checkpoint / "state.json").read_text())

    model = load_merged_model(checkpoint / "model", config.model.path)
    has_tokenizer = (checkpoint / "model" / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint / "model" if has_tokenizer else resolve_model_path(config.model.path))
    prompt, placement = deployed_prompt(state), config.model.prompt_placement
    if prompt:
        if isinstance(tokenizer.chat_template, dict):  # named templates: patch each
            tokenizer.chat_template = {
                name: with_default_prompt(t, prompt, placement) for name, t in tokenizer.chat_template.items()
            }
        elif tokenizer.chat_template:
            tokenizer.chat_template = with_default_prompt(tokenizer.chat_template, prompt, placement)
        else:
            raise FastSlowError(f"{config.model.path}: the tokenizer has no chat template to put the prompt in")
    population = {
        "step": state.get("step"),
        "cycle": state.get("cycle"),
        "best_prompt": state.get("best_prompt"),
        "prompt_placement": placement,
        "members": state.get("population", []),
    }

    # Write everything next to out_dir, then rename: a crash or a full disk never leaves a half-written model behind.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "population.json").write_text(json.dumps(population, indent=2, ensure_ascii=False) + "\n")
        (tmp / "README.md").write_text(model_card(config, state, final_metrics(run_dir / "metrics.jsonl"), str(out_dir)))
        readable_as_usual(tmp)
        os.replace(tmp, out_dir)  # also replaces an empty out_dir
    except WRITE_ERRORS as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FastSlowError(f"{out_dir}: cannot export ({write_failure(exc, out_dir.parent)}); nothing was written") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def readable_as_usual(directory: Path) -> None:
    """Give `directory` and its files the modes a new directory and file get here (0755 and 0644 under the usual
    umask 022): mkdtemp makes the directory private (0700), and safetensors (0.8) creates model.safetensors private
    (0600), which would leave the weights unreadable to the other users of a shared model directory."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
