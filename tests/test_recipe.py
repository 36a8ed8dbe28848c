"""The Qwen3 recipe's wiring, on a tiny random Qwen3 with a Qwen3-style chat template (thinking switch)."""

import json
from pathlib import Path

from doubles import ScriptedReflectionLM
from tiny_model import build_tiny_model

from fastslow.config import load_config
from fastslow.loop import run
from fastslow.policy import load_tokenizer

RECIPE = Path(__file__).parent.parent / "configs" / "qwen3-math.yaml"

# The part of Qwen3's template that matters here: with enable_thinking false the assistant turn starts with an
# empty think block, so the model answers directly.
QWEN3_STYLE_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\n\n</think>\n\n' }}{% endif %}{% endif %}"
)


def test_qwen3_math_recipe_runs_on_a_tiny_qwen3(tmp_path, monkeypatch):
    model_dir = build_tiny_model(tmp_path / "qwen3")
    tokenizer = load_tokenizer(model_dir)
    tokenizer.chat_template = QWEN3_STYLE_TEMPLATE
    tokenizer.save_pretrained(model_dir)
    data = tmp_path / "polaris.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(60)))

    config = load_config(RECIPE, {
        "output_dir": str(tmp_path / "runs"), "model.path": model_dir, "model.dtype": "float32",
        "model.lora": {"r": 4, "alpha": 8}, "model.max_new_tokens": 8, "task.args": {"path": str(data)},
        "task.train_size": 8, "task.val_size": 2, "loop.steps": 2, "loop.steps_per_cycle": 2,
        "loop.problems_per_step": 2, "loop.rollouts_per_problem": 4, "loop.population_size": 2,
        "rl.bf16": False, "eval.kl_prompts": 2, "eval.samples": 1, "report_to": [],
    })
    assert config.model.chat_template_kwargs == {"enable_thinking": False}
    seen = []
    import fastslow.policy as policy

    original = policy.sample

    def spy(model, tok, conversations, sampling, **kw):
        seen.append(tok.apply_chat_template(conversations[0], tokenize=False, add_generation_prompt=True,
                                            **(sampling.chat_template_kwargs or {})))
        return original(model, tok, conversations, sampling, **kw)

    monkeypatch.setattr("fastslow.fast.adapter.sample", spy)
    path = run(config, reflection_lm=ScriptedReflectionLM())
    rows = [json.loads(line) for line in (Path(path) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2] and rows[-1]["val_accuracy"] is not None
    assert seen and seen[0].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # thinking off reached the template
    assert "\\boxed{}" in seen[0]  # the recipe's seed prompt is the system message
