"""fastslow.export on fake run directories holding a tiny model (full weights and LoRA), reloaded with
transformers alone."""

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from clirun import assert_user_error, fastslow
from transformers import AutoModelForCausalLM, AutoTokenizer

from fastslow.checkpoint import save_checkpoint
from fastslow.config import Config, LoraConfig, ModelConfig, TaskConfig
from fastslow.errors import FastSlowError
from fastslow.export import export_run
from fastslow.policy import Sampling, chat_messages, generate
from fastslow.serve import ChatModel

# Quotes, newlines, Jinja syntax and non-ASCII: all must survive being embedded in the chat template.
BEST_PROMPT = 'Think step by step.\nQuote "exactly", it\'s {{ x }} %} {# no #} \\n ünï 🚀'
POPULATION = [{"id": "c0-1", "text": BEST_PROMPT, "parent": "seed"}, {"id": "seed", "text": "Solve it.", "parent": None}]
USER = [{"role": "user", "content": "abc"}]


@pytest.fixture(scope="module")
def base_dir(tiny_model_path):
    return tiny_model_path


def logits(model, text="hello world"):
    ids = torch.tensor([[ord(c) % 90 + 4 for c in text]])  # any valid ids; the same for every model compared
    with torch.no_grad():
        return model(input_ids=ids).logits


def write_checkpoint(run_dir: Path, step: int, model, population=POPULATION):
    state = {"step": step, "cycle": step // 6, "population": population,
             "best_prompt": population[0]["text"] if population else None, "counters": {}}
    save_checkpoint(run_dir / "checkpoints", step, model, None, state)


def make_run(tmp_path: Path, base_dir: str, lora: bool, placement: str = "system") -> tuple[Path, torch.Tensor]:
    """A run dir whose newest checkpoint (step 4) holds trained weights; returns it and their logits."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model_config = ModelConfig(path=base_dir, lora=LoraConfig(r=4, alpha=8) if lora else None,
                               prompt_placement=placement)
    config = Config(name="demo", model=model_config, task=TaskConfig(name="strings"))
    (run_dir / "config.yaml").write_text(config.to_yaml())
    rows = [{"step": 0, "val_accuracy": 0.125, "reward_mean": None, "kl_base": None},
            {"step": 3, "val_accuracy": None, "reward_mean": 0.5, "kl_base": 0.01},
            {"step": 4, "val_accuracy": 0.375, "reward_mean": None, "kl_base": 0.0123}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    torch.manual_seed(1)
    write_checkpoint(run_dir, 2, AutoModelForCausalLM.from_pretrained(base_dir))  # an older checkpoint
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    if lora:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        # init_lora_weights=False: non-zero B, so the adapter really changes the model
        model = get_peft_model(model, PeftLoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                     init_lora_weights=False))
    else:
        with torch.no_grad():
            for param in model.parameters():
                param.add_(0.05 * torch.randn_like(param))
    write_checkpoint(run_dir, 4, model)
    return run_dir, logits(model)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_export_gives_a_plain_transformers_model_with_the_trained_weights(tmp_path, base_dir, lora):
    run_dir, trained_logits = make_run(tmp_path, base_dir, lora)
    out = export_run(run_dir, tmp_path / "exported")

    model = AutoModelForCausalLM.from_pretrained(out)
    assert torch.allclose(logits(model), trained_logits, atol=1e-5)
    base_logits = logits(AutoModelForCausalLM.from_pretrained(base_dir))
    assert (logits(model) - base_logits).abs().max() > 1e-3  # the export is not just the base model
    assert not (out / "adapter_config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported", "run"]  # no temp dir left behind

    population = json.loads((out / "population.json").read_text())
    assert population["members"] == POPULATION and population["best_prompt"] == BEST_PROMPT
    assert population["step"] == 4


def test_chat_template_defaults_to_the_best_prompt(tmp_path, base_dir):
    run_dir, _ = make_run(tmp_path, base_dir, lora=False)
    out = export_run(run_dir, tmp_path / "exported")
    exported, original = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(base_dir)
    render = lambda tok, msgs: tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)  # noqa: E731

    with_best = [{"role": "system", "content": BEST_PROMPT}] + USER
    assert render(exported, USER) == render(original, with_best)
    own_system = [{"role": "system", "content": "Be brief."}] + USER
    assert render(exported, own_system) == render(original, own_system)
    assert exported.eos_token == original.eos_token and exported.pad_token == original.pad_token


def test_user_placement_exports_the_prompt_at_the_head_of_the_first_user_turn_and_serve_applies_it(tmp_path, base_dir):
    run_dir, _ = make_run(tmp_path, base_dir, lora=False, placement="user")
    out = export_run(run_dir, tmp_path / "exported")
    exported, original = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(base_dir)
    render = lambda tok, msgs: tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)  # noqa: E731

    trained = chat_messages(BEST_PROMPT, "abc", "user")  # the conversation the run trained and evaluated on
    assert trained == [{"role": "user", "content": BEST_PROMPT + "\n\nabc"}]
    assert render(exported, USER) == render(original, trained)
    later = [{"role": "assistant", "content": "cba"}, {"role": "user", "content": "xyz"}]
    assert render(exported, USER + later) == render(original, trained + later)  # only the first user turn
    own_system = [{"role": "system", "content": "Be brief."}] + USER
    assert render(exported, own_system) == render(original, own_system)
    assert json.loads((out / "population.json").read_text())["prompt_placement"] == "user"
    assert "head of the first user message" in (out / "README.md").read_text()

    served = ChatModel(str(out), device="cpu")
    request = served.parse({"messages": USER, "max_tokens": 8, "temperature": 0})
    assert request.prompt_tokens == len(original(render(original, trained), add_special_tokens=False)["input_ids"])
    expected = generate(AutoModelForCausalLM.from_pretrained(out), original, [trained],
                        Sampling(max_new_tokens=request.max_tokens, temperature=0))[0]
    assert served.generate([request]) == [expected]


def test_model_card_names_base_task_steps_and_final_metrics(tmp_path, base_dir):
    run_dir, _ = make_run(tmp_path, base_dir, lora=True)
    card = (export_run(run_dir, tmp_path / "exported") / "README.md").read_text()
    assert f"base model: `{base_dir}` (LoRA merged)" in card
    assert "task: `strings`" in card and "RL steps: 4" in card
    assert "| val_accuracy | 0.375 | 4 |" in card  # last measured value, not the step-0 one
    assert "| reward_mean | 0.5 | 3 |" in card
    assert "| kl_base | 0.0123 | 4 |" in card
    assert BEST_PROMPT in card


def test_export_into_an_existing_empty_dir_works_but_a_non_empty_one_is_refused(tmp_path, base_dir):
    run_dir, _ = make_run(tmp_path, base_dir, lora=False)
    (tmp_path / "empty").mkdir()
    assert (export_run(run_dir, tmp_path / "empty") / "config.json").is_file()
    with pytest.raises(FastSlowError, match="empty: already exists and is not empty"):
        export_run(run_dir, tmp_path / "empty")


def test_run_dir_errors_are_clear(tmp_path, base_dir):
    with pytest.raises(FastSlowError, match="not a run directory"):
        export_run(tmp_path / "missing", tmp_path / "out")
    run_dir, _ = make_run(tmp_path, base_dir, lora=False)
    for checkpoint in (run_dir / "checkpoints").glob("step-*"):
        (checkpoint / "model" / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(FastSlowError, match="no intact checkpoint .*step-000004 is damaged .*model.safetensors"):
        export_run(run_dir, tmp_path / "out")
    shutil.rmtree(run_dir / "checkpoints")
    with pytest.raises(FastSlowError, match="no checkpoint to export"):
        export_run(run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_unwritable_target_is_one_line(tmp_path, base_dir):
    run_dir, _ = make_run(tmp_path, base_dir, lora=False)
    (tmp_path / "a-file").write_text("")
    result = fastslow("export", run_dir, tmp_path / "a-file" / "exported")
    assert_user_error(result, str(tmp_path / "a-file"))


def test_every_exported_file_gets_the_usual_modes_under_the_umask(tmp_path, base_dir):
    """safetensors creates model.safetensors 0600 and mkdtemp the folder 0700: the export is as readable as any new
    file (0644 and 0755 under umask 022), so that the other users of a shared model directory can load it."""
    run_dir, _ = make_run(tmp_path, base_dir, lora=False)
    previous = os.umask(0o022)
    try:
        out = export_run(run_dir, tmp_path / "exported")
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    assert modes.pop("exported") == 0o755 and "model.safetensors" in modes
    assert set(modes.values()) == {0o644}, modes
