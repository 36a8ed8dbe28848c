"""Atomic checkpoints: weights (safetensors), optimizer and scheduler, RNG states, loop state.

A checkpoint is written into a temporary directory and renamed into place, then `LATEST` is replaced
atomically; a crash at any point leaves the previous checkpoint intact and named by `LATEST`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from fastslow.errors import FastSlowError

KEEP = 2  # newest checkpoints kept; older ones are removed after a newer one is complete


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(root: Path, step: int, model, trainer_state: dict | None, state: dict[str, Any]) -> Path:
    """Write checkpoints/step-<step>/ atomically and point LATEST at it."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    tmp = root / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    if model is not None:
        model.save_pretrained(tmp / "model", safe_serialization=True)
    if trainer_state is not None:
        torch.save(trainer_state, tmp / "trainer.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    final = root / name
    if final.exists():  # a resumed run re-reaching a step it had saved before the crash
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text_atomic(root / "LATEST", name)
    for old in sorted(p for p in root.glob("step-*") if p.name < name)[:-(KEEP - 1) or None]:
        shutil.rmtree(old)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    pointer = root / "LATEST"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    if not (path / "state.json").is_file():
        raise FastSlowError(f"{pointer}: names {path.name}, which is missing or incomplete")
    return path


def load_weights(model, model_dir: Path) -> None:
    """Load saved weights into an already built model (full weights or a PEFT adapter)."""
    adapter = model_dir / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(adapter)))
        return
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        from transformers.modeling_utils import load_sharded_checkpoint

        load_sharded_checkpoint(model, str(model_dir))
        return
    weights = load_file(str(model_dir / "model.safetensors"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if unexpected or [k for k in missing if k not in tied and not k.endswith("lm_head.weight")]:
        raise FastSlowError(f"{model_dir}: checkpoint does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict | None, dict[str, Any]]:
    """(loop state, trainer state or None, rng state) of a checkpoint directory."""
    state = json.loads((path / "state.json").read_text())
    trainer = torch.load(path / "trainer.pt", weights_only=False) if (path / "trainer.pt").is_file() else None
    rng = torch.load(path / "rng.pt", weights_only=False)
    return state, trainer, rng
