"""What the reflection LM reads and writes.

A reflective record is one rollout as GEPA shows it to the reflection LM: the problem's input, the
policy's output and the task's feedback. The prompt is rendered by GEPA's own renderer with one of our
templates, so the micro model's reflection corpus (fastslow.micro) is built from exactly the text the
engine sends at run time.
"""

from __future__ import annotations

from collections.abc import Sequence

from gepa.strategies.instruction_proposal import InstructionProposalSignature

# Compact template for small local reflection models: half the length of GEPA's, same placeholders.
COMPACT_TEMPLATE = """Instruction:
```
<curr_param>
```
Results:
<side_info>
Write a better instruction in ``` blocks."""

TEMPLATES = {"compact": COMPACT_TEMPLATE, "gepa": InstructionProposalSignature.default_prompt_template}


def reflective_record(problem_prompt: str, completion: str, feedback: str) -> dict[str, str]:
    """One rollout as the reflection LM sees it (GEPA's canonical record keys)."""
    return {"Inputs": problem_prompt, "Generated Outputs": completion, "Feedback": feedback}


def resolve_template(template: str) -> str:
    """A template name ("compact", "gepa") or a literal template containing <curr_param> and <side_info>."""
    return TEMPLATES.get(template, template)


def render_reflection_prompt(instruction: str, records: Sequence[dict[str, str]], template: str = "compact") -> str:
    """The exact prompt GEPA sends to the reflection LM for `instruction` and these records."""
    return InstructionProposalSignature.prompt_renderer(
        {
            "current_instruction_doc": instruction,
            "dataset_with_feedback": list(records),
            "prompt_template": resolve_template(template),
        }
    )


def extract_instruction(lm_output: str) -> str:
    """The new instruction GEPA takes from a reflection LM's answer (the text inside ``` fences)."""
    return InstructionProposalSignature.output_extractor(lm_output.strip())["new_instruction"]
